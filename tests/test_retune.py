"""--retune on tiny synthetic data: the same search per arm, on validation data only."""

import dataclasses

import optuna
import torch

from harness.core.data import Mnist
from harness.core.store import RunConditions
from harness.study.plan import TRIAL_SEEDS_FROM, Arm, Plan
from harness.study.search import RETUNE_SEED, RETUNE_SUMMARY_FILE, load_retune_summaries
from harness.study.search._retune import retune_arms, retuned_arm, retuned_params, study_name
from harness.study.settings import RETUNE_TRIALS, SearchSettings, StudySettings
from harness.study.specs import REFERENCE
from tests.helpers import TINY, synthetic_mnist

NO_WD = dataclasses.replace(TINY, weight_decay=0.0)
LR = StudySettings(retune=("lr",))
LR_AND_WD = StudySettings(retune=("lr", "weight_decay"))


def tiny_plan() -> Plan:
    return Plan(
        {
            REFERENCE: Arm(REFERENCE, "the reference", TINY, (0, 1)),
            "no_weight_decay": Arm("no_weight_decay", "no WD", NO_WD, (0, 1)),
        },
        RunConditions("cpu1t", "avx512-aaaaaa"),
    )


def test_an_arm_without_weight_decay_keeps_it_off():
    plan = tiny_plan()
    both = ("lr", "weight_decay")
    assert retuned_params(plan.arms[REFERENCE], both) == both
    assert retuned_params(plan.arms["no_weight_decay"], both) == ("lr",)


def test_each_arm_gets_the_same_search_starting_from_its_own_values_and_resumes(tmp_path):
    plan = tiny_plan()
    mnist = synthetic_mnist()
    chosen = retune_arms(plan, LR_AND_WD, mnist, tmp_path, "cpu")
    reference, no_wd = chosen[REFERENCE], chosen["no_weight_decay"]
    assert reference.trials == no_wd.trials == RETUNE_TRIALS
    assert set(reference.values) == {"lr", "weight_decay"} and set(no_wd.values) == {"lr"}
    assert reference.own_values == {"lr": TINY.lr, "weight_decay": TINY.weight_decay}
    assert RETUNE_SEED >= TRIAL_SEEDS_FROM and reference.trial_seed == RETUNE_SEED
    assert (tmp_path / RETUNE_SUMMARY_FILE).is_file()
    assert load_retune_summaries(tmp_path) == chosen
    arm = retuned_arm(plan.arms["no_weight_decay"], no_wd)
    assert arm.label == "no_weight_decay-retuned" and arm.seeds == (0, 1)
    assert arm.config == dataclasses.replace(NO_WD, lr=no_wd.values["lr"])
    again = retune_arms(plan, LR_AND_WD, mnist, tmp_path, "cpu")
    assert again == chosen  # a finished search trains nothing more and chooses the same


def test_the_choice_reads_validation_data_only(tmp_path):
    """The same training images with another test set (random labels, other images) choose
    exactly the same values with exactly the same validation accuracies."""
    plan = tiny_plan()
    clean = synthetic_mnist()
    generator = torch.Generator().manual_seed(7)
    scrambled = Mnist(
        clean.train_images,
        clean.train_labels,
        torch.randn(clean.test_images.shape, generator=generator),
        torch.randint(0, 10, clean.test_labels.shape, generator=generator),
        clean.source,
    )
    (tmp_path / "clean").mkdir(), (tmp_path / "scrambled").mkdir()
    first = retune_arms(plan, LR, clean, tmp_path / "clean", "cpu")
    second = retune_arms(plan, LR, scrambled, tmp_path / "scrambled", "cpu")
    assert first == second


def test_every_arm_is_tried_at_the_same_values(tmp_path):
    """Within TPE's random startup trials, arms that retune the same parameters differ only in
    what they score: a paired comparison of their searches, not two different draws."""
    retune_arms(tiny_plan(), LR, synthetic_mnist(), tmp_path, "cpu")
    storage = SearchSettings(storage=None).storage_url(tmp_path)
    reference, no_wd = (
        [t.params["lr"] for t in optuna.load_study(study_name=name, storage=storage).trials]
        for name in (study_name(label, ("lr",)) for label in (REFERENCE, "no_weight_decay"))
    )
    assert reference == no_wd and len(set(no_wd)) == RETUNE_TRIALS
