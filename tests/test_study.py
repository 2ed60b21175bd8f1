"""The study as data: plans merge and round-trip; seeds until decided follow the pilot."""

import dataclasses

import pytest

from harness import UserError
from harness.cli import run_all
from harness.core.config import Config
from harness.stats import design
from harness.study import runner
from harness.study.executor import Resources
from harness.study.factorial import DEFAULT_FACTORIAL
from harness.study.plan import (
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
    DEFAULT_RETRAIN_SEEDS,
    DEFAULT_TRIALS,
    SearchSettings,
    StudySettings,
)
from harness.study.specs import REFERENCE, load_specs, spec_names
from harness.study.tuning import DEFAULT_EPOCH_CAP, TRIAL_SEEDS_FROM

REF = Arm(REFERENCE, "the reference", Config(), (0, 1))
NO_BN = Arm("no_batchnorm", "no BN", dataclasses.replace(Config(), batchnorm=False), (0, 1, 2))


def test_plan_round_trips_and_merges_with_the_saved_one(tmp_path):
    plan = Plan({REFERENCE: REF, "no_batchnorm": NO_BN}, "cpu1t").with_reference_seeds()
    assert plan.reference.seeds == (0, 1, 2)  # every seed any arm uses
    save_plan(plan, tmp_path)
    assert load_plan(tmp_path) == plan
    width = Arm("width_half", "half", dataclasses.replace(Config(), hidden_widths=(8, 4, 2)), (5,))
    merged = update_plan(Plan({REFERENCE: REF, "width_half": width}, "cpu1t"), tmp_path)
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
        "status": status,
        "metrics": {"test_accuracy": accuracy},
    }


def test_seeds_until_decided_follow_the_pilots_spread_not_its_effect():
    noisy = dataclasses.replace(NO_BN, seeds=(0, 1, 2, 3, 4))
    steady = Arm("width_double", "wide", dataclasses.replace(Config(), lr=2e-3), (0, 1, 2, 3, 4))
    plan = Plan(
        {REFERENCE: REF, noisy.label: noisy, steady.label: steady},
        "cpu1t",
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
        {REFERENCE: REF, TUNED: tuned}, "cpu1t", design=Design(pilot_seeds=2, max_seeds=10)
    ).with_reference_seeds()
    planned = planned_after_pilot(plan, [])
    assert planned.arms[TUNED].seeds == (0, 1, 2)


def test_merging_keeps_seeds_and_refuses_runs_that_would_not_compare(tmp_path):
    import pytest

    from harness.study.plan import PlanError

    update_plan(Plan({REFERENCE: REF, NO_BN.label: NO_BN}, "cpu1t"), tmp_path)
    fewer = dataclasses.replace(NO_BN, seeds=(0,))
    merged = update_plan(Plan({REFERENCE: REF, NO_BN.label: fewer}, "cpu1t"), tmp_path)
    assert merged.arms[NO_BN.label].seeds == (0, 1, 2)  # a subset asked later narrows nothing
    with pytest.raises(PlanError, match="engine cpu1t, this command's is cpu2t"):
        update_plan(Plan({REFERENCE: REF}, "cpu2t"), tmp_path)
    short = dataclasses.replace(REF, config=dataclasses.replace(Config(), epochs=3))
    with pytest.raises(PlanError, match="epochs 15 → 3"):
        update_plan(Plan({REFERENCE: short}, "cpu1t"), tmp_path)
    assert load_plan(tmp_path) == merged  # a refused command changes nothing


def test_run_all_settings_are_the_preset_with_what_the_command_line_gives(tmp_path):
    full = run_all.settings_for(run_all.parse_args(["--results-dir", str(tmp_path)]))
    default = StudySettings(factorial=DEFAULT_FACTORIAL, replications=1)  # replicated
    assert full == (default, SearchSettings(), DEFAULT_RETRAIN_SEEDS)
    assert (full[1].trials, full[1].epoch_cap) == (DEFAULT_TRIALS, DEFAULT_EPOCH_CAP)
    args = run_all.parse_args(["--quick", "--seeds", "3", "--trials", "4", "--margin", "0.2"])
    study, search, retrain_seeds = run_all.settings_for(args)
    assert (study.seeds, study.epochs, study.margin) == (3, 2, 0.002)  # epochs: the preset's
    assert (search.trials, search.epoch_cap, retrain_seeds) == (4, 2, 2)


def test_study_settings_give_each_arm_its_seeds():
    specs = load_specs(["no_dropout"])
    assert StudySettings().plan(specs, "cpu1t").arms["no_dropout"].seeds == tuple(range(5))
    listed = StudySettings(seed_list=(3, 7)).plan(specs, "cpu1t")
    assert listed.arms["no_dropout"].seeds == listed.reference.seeds == (3, 7)
    pilot = StudySettings(until_decided=True, pilot_seeds=3).plan(specs, "cpu1t")
    assert pilot.arms["no_dropout"].seeds == (0, 1, 2) and pilot.design.max_seeds == 30
    with pytest.raises(UserError, match="at least 2 seeds"):
        StudySettings(until_decided=True, pilot_seeds=1).plan(specs, "cpu1t")


def test_no_evaluation_seed_is_ever_a_search_trial_seed(tmp_path):
    """The default study (its replication and seeds until decided included) evaluates on
    seeds that no repeat of the search trains its trials or seeds its samplers with."""
    args = run_all.parse_args(["--results-dir", str(tmp_path), "--repeats", "5"])
    study, searching, retrain_seeds = run_all.settings_for(args)
    plan = study.plan(load_specs(spec_names()), "cpu1t")
    replicated = as_replication(plan, plan, resume=False)
    until_decided = dataclasses.replace(study, until_decided=True).plan([], "cpu1t")
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
        StudySettings(seed_list=(0, TRIAL_SEEDS_FROM)).plan(load_specs(["no_dropout"]), "cpu1t")
    arm = dataclasses.replace(REF, seeds=(TRIAL_SEEDS_FROM,))
    with pytest.raises(UserError, match="reserved for the search's trials"):
        runner.run(Plan({REFERENCE: arm}, "cpu1t"), tmp_path, Resources(workers=1, threads=1), "x")
    assert not (tmp_path / "plan.json").exists()  # refused before anything was written
