"""The study as data: plans merge and round-trip; seeds until decided follow the pilot."""

import dataclasses

import pytest

from harness import UserError
from harness.cli import run_all
from harness.core.config import Config
from harness.core.store import RunConditions
from harness.stats import design
from harness.study import runner
from harness.study.executor import Resources
from harness.study.factorial_design import DEFAULT_FACTORIAL
from harness.study.plan import (
    TRIAL_SEEDS_FROM,
    TUNED,
    Arm,
    Design,
    Plan,
    as_replication,
    load_plan,
    save_plan,
    update_plan,
)
from harness.study.runner import planned_after_pilot
from harness.study.settings import (
    DEFAULT_SEARCH_EPOCHS,
    DEFAULT_TRIALS,
    SearchSettings,
    StudySettings,
)
from harness.study.specs import REFERENCE, load_specs, spec_names

C1 = RunConditions("cpu1t", "avx512-aaaaaa")  # the conditions of this file's studies
REF = Arm(REFERENCE, "the reference", Config(), (0, 1))
NO_BN = Arm("no_batchnorm", "no BN", dataclasses.replace(Config(), batchnorm=False), (0, 1, 2))


def test_plan_round_trips_and_merges_with_the_saved_one(tmp_path):
    plan = Plan({REFERENCE: REF, "no_batchnorm": NO_BN}, C1).with_reference_seeds()
    assert plan.reference.seeds == (0, 1, 2)  # every seed any arm uses
    save_plan(plan, tmp_path)
    assert load_plan(tmp_path) == plan
    width = Arm("width_half", "half", dataclasses.replace(Config(), hidden_widths=(8, 4, 2)), (5,))
    merged = update_plan(Plan({REFERENCE: REF, "width_half": width}, C1), tmp_path)
    assert list(merged.arms) == [REFERENCE, "no_batchnorm", "width_half"]
    assert merged.reference.seeds == (0, 1, 2, 5)
    assert load_plan(tmp_path) == merged
    tasks = merged.tasks()
    assert [(t.label, t.seed) for t in tasks[:4]] == [(REFERENCE, s) for s in (0, 1, 2, 5)]
    assert len(tasks) == 4 + 3 + 1


def record(arm: Arm, seed: int, accuracy: float, status: str = "ok") -> dict:
    return {
        "config_hash": arm.config.hash(),
        "seed": seed,
        "engine": "cpu1t",
        "platform": C1.platform,
        "status": status,
        "metrics": {"test_accuracy": accuracy},
    }


def test_seeds_until_decided_follow_the_pilots_spread_not_its_effect():
    noisy = dataclasses.replace(NO_BN, seeds=(0, 1, 2, 3, 4))
    steady = Arm("width_double", "wide", dataclasses.replace(Config(), lr=2e-3), (0, 1, 2, 3, 4))
    plan = Plan(
        {REFERENCE: REF, noisy.label: noisy, steady.label: steady},
        C1,
        margin=0.001,
        design=Design(pilot_seeds=5, max_seeds=30),
    ).with_reference_seeds()
    reference = [0.985, 0.986, 0.984, 0.985, 0.986]
    records = [record(REF, s, a) for s, a in enumerate(reference)]
    noisy_d = [0.004, -0.003, 0.002, -0.004, 0.001]
    steady_d = [-0.0030, -0.0031, -0.0029, -0.0030, -0.0031]  # a big effect, tiny spread
    records += [record(noisy, s, reference[s] + d) for s, d in enumerate(noisy_d)]
    records += [record(steady, s, reference[s] + d) for s, d in enumerate(steady_d)]
    records.append(record(steady, 7, 0.5))  # beyond the pilot: ignored
    planned = planned_after_pilot(plan, records)
    import statistics

    expected_noisy = design.planned_seeds(statistics.stdev(noisy_d), 5, 0.001, 30, family_size=2)
    assert len(planned.arms["no_batchnorm"].seeds) == expected_noisy == 30  # capped
    assert len(planned.arms["width_double"].seeds) == 5  # its spread needs no more than the pilot
    assert planned.reference.seeds == tuple(range(30))
    pooled_plan = dataclasses.replace(plan, design=Design(5, 30, pooled=True))
    pooled = planned_after_pilot(pooled_plan, records)
    spread, df = design.pooled_sd([noisy_d, steady_d])
    expected = design.planned_seeds(spread, 5, 0.001, 30, family_size=2, df=df)
    assert df == 8 and expected > 5  # one spread: the steady arm gets the noisy one's seeds
    assert len(pooled.arms["no_batchnorm"].seeds) == len(pooled.arms["width_double"].seeds)
    assert len(pooled.arms["no_batchnorm"].seeds) == expected


def test_tuned_arm_is_not_part_of_the_planned_family():
    tuned = Arm(TUNED, "best", dataclasses.replace(Config(), lr=3e-3), (0, 1, 2))
    plan = Plan(
        {REFERENCE: REF, TUNED: tuned}, C1, design=Design(pilot_seeds=2, max_seeds=10)
    ).with_reference_seeds()
    planned = planned_after_pilot(plan, [])
    assert planned.arms[TUNED].seeds == (0, 1, 2)


def test_merging_keeps_seeds_and_refuses_runs_that_would_not_compare(tmp_path):
    import pytest

    from harness.study.plan import PlanError

    update_plan(Plan({REFERENCE: REF, NO_BN.label: NO_BN}, C1), tmp_path)
    fewer = dataclasses.replace(NO_BN, seeds=(0,))
    merged = update_plan(Plan({REFERENCE: REF, NO_BN.label: fewer}, C1), tmp_path)
    assert merged.arms[NO_BN.label].seeds == (0, 1, 2)  # a subset asked later narrows nothing
    with pytest.raises(PlanError, match="engine cpu1t, this command's is cpu2t"):
        update_plan(Plan({REFERENCE: REF}, C1._replace(engine="cpu2t")), tmp_path)
    with pytest.raises(PlanError, match="trained on data mnist, this command's data folder"):
        update_plan(Plan({REFERENCE: REF}, C1._replace(data="idx-0123456789")), tmp_path)
    short = dataclasses.replace(REF, config=dataclasses.replace(Config(), epochs=3))
    with pytest.raises(PlanError, match="epochs 15 → 3"):
        update_plan(Plan({REFERENCE: short}, C1), tmp_path)
    assert load_plan(tmp_path) == merged  # a refused command changes nothing
    # the study copied to a machine of another platform is that machine's from now on
    elsewhere = C1._replace(platform="avx2-bbbbbb")
    moved = update_plan(Plan({REFERENCE: REF}, elsewhere), tmp_path)
    assert moved.conditions == elsewhere and moved.arms[NO_BN.label].seeds == (0, 1, 2)


def test_run_all_settings_are_the_preset_with_what_the_command_line_gives(tmp_path):
    full = run_all.settings_for(run_all.parse_args(["--results-dir", str(tmp_path)]))
    default = StudySettings(factorial=DEFAULT_FACTORIAL, replications=1)  # replicated
    assert full == (default, SearchSettings())
    assert (full[1].trials, full[1].search_epochs) == (DEFAULT_TRIALS, DEFAULT_SEARCH_EPOCHS)
    args = run_all.parse_args(["--quick", "--seeds", "3", "--trials", "4", "--margin", "0.2"])
    study, search = run_all.settings_for(args)
    assert (study.seeds, study.epochs, study.margin) == (3, 2, 0.002)  # epochs: the preset's
    assert (search.trials, search.search_epochs, search.retrain_seeds) == (4, 2, 2)
    args = run_all.parse_args(["--set", "lr=0.002", "--budgets", "3,6", "--search-epochs", "9"])
    study, search = run_all.settings_for(args)
    assert (study.base, study.budgets, search.search_epochs) == (Config(lr=0.002), (3, 6), 9)


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"until_decided": True, "seeds": 3}, "until_decided"),
        ({"replicate": True, "factorial": "components", "seed_list": (3, 4)}, "replicate"),
        ({"replicate": True}, "replicate"),
        ({"factorial": "components", "specs": ("no_dropout",)}, "factorial"),
        ({"retune": ("lr",), "factorial": "components"}, "retune"),
        ({"retune": ("momentum",)}, "retune"),
        ({"until_decided": True, "pilot_seeds": 1}, "pilot_seeds"),
        ({"until_decided": True, "pilot_seeds": 5, "max_seeds": 3}, "max_seeds"),
        ({"budgets": (0,)}, "budgets"),
    ],
)
def test_options_that_do_not_go_together_are_refused_naming_the_setting(settings, setting):
    with pytest.raises(UserError) as error:
        StudySettings(**settings)
    assert error.value.setting == setting


def test_study_settings_give_each_arm_its_seeds():
    specs = load_specs(["no_dropout"])
    assert StudySettings().plan(specs, C1).arms["no_dropout"].seeds == tuple(range(5))
    listed = StudySettings(seed_list=(3, 7)).plan(specs, C1)
    assert listed.arms["no_dropout"].seeds == listed.reference.seeds == (3, 7)
    pilot = StudySettings(until_decided=True, pilot_seeds=3).plan(specs, C1)
    assert pilot.arms["no_dropout"].seeds == (0, 1, 2) and pilot.design.max_seeds == 30
    with pytest.raises(UserError, match="at least 2 seeds"):
        StudySettings(until_decided=True, pilot_seeds=1)


def test_no_evaluation_seed_is_ever_a_search_trial_seed(tmp_path):
    """The default study (its replication and seeds until decided included) evaluates on
    seeds that no repeat of the search trains its trials or seeds its samplers with."""
    args = run_all.parse_args(["--results-dir", str(tmp_path), "--repeats", "5"])
    study, searching = run_all.settings_for(args)
    retrain_seeds = searching.retrain_seeds
    plan = study.plan(load_specs(spec_names()), C1)
    replicated = as_replication(plan, plan, resume=False)
    until_decided = dataclasses.replace(study, until_decided=True).plan([], C1)
    evaluation = {s for p in (plan, replicated) for arm in p.arms.values() for s in arm.seeds}
    evaluation |= set(replicated.factorial.seeds) | set(range(retrain_seeds))
    evaluation |= set(range(until_decided.design.max_seeds))
    repeats = [searching.repeat(number) for number in range(searching.repeats)]
    trial_seeds = [r.seed for r in repeats]
    sampler_seeds = {r.sampler_seed(worker) for r in repeats for worker in range(16)}
    assert len(set(trial_seeds)) == len({r.study for r in repeats}) == 5
    assert max(evaluation) < TRIAL_SEEDS_FROM <= min(trial_seeds)
    assert evaluation.isdisjoint(sampler_seeds) and len(sampler_seeds) == 5 * 16


def test_a_search_seed_or_an_evaluation_seed_on_the_wrong_side_is_refused(tmp_path):
    with pytest.raises(UserError, match="trial seeds start at 1,000,000"):
        SearchSettings(seed=3)
    with pytest.raises(UserError, match="seed 1,000,000 is reserved"):
        StudySettings(seed_list=(0, TRIAL_SEEDS_FROM))
    with pytest.raises(UserError, match="seed 1,000,000 is reserved"):
        SearchSettings(retrain_seeds=TRIAL_SEEDS_FROM + 1)
    arm = dataclasses.replace(REF, seeds=(TRIAL_SEEDS_FROM,))
    with pytest.raises(UserError, match="reserved for the search's trials"):
        runner.run_study(Plan({REFERENCE: arm}, C1), tmp_path, Resources(workers=1, threads=1))
    assert not (tmp_path / "plan.json").exists()  # refused before anything was written
