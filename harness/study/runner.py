"""Runs a study: a plan's arms over their seeds, or seeds until decided (a pilot, then the seeds
the pilot's spread says each arm needs). The plan is saved with the results before anything
trains. The searches that choose an arm's settings are harness.study.searching's.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import pandas as pd

from harness.core.record import RunRecord
from harness.core.store import RunKey, RunStore
from harness.stats import design
from harness.stats.factorial_model import planned_replicates
from harness.study.executor import Resources
from harness.study.factorial_design import factorial_runs
from harness.study.grid import check_before_training, progress_counts, train_tasks
from harness.study.plan import (
    Plan,
    as_replication,
    check_evaluation_seeds,
    is_tuned,
    load_plan,
    update_plan,
)
from harness.study.progress import QUIET, Progress
from harness.study.specs import REFERENCE


def run_study(
    plan: Plan, results_dir: Path, resources: Resources, progress: Progress = QUIET
) -> list[RunRecord]:
    """Trains what the plan's arms and cells miss; returns the new records. The plan is merged
    into the saved one first; with seeds until decided, the pilot trains before the rest is
    planned."""
    check_evaluation_seeds(seed for arm in plan.arms.values() for seed in arm.seeds)
    store = RunStore(results_dir)
    check_before_training(store, resources)
    if plan.design is not None:
        pilot = dataclasses.replace(plan, design=None)
        new = run_study(pilot, results_dir, resources, progress)
        plan = planned_after_pilot(plan, store.records())
    else:
        new = []
    saved = load_plan(results_dir)
    if saved is not None and saved.conditions.platform not in ("", plan.conditions.platform):
        progress.note(
            f"{results_dir}: its runs were trained on platform {saved.conditions.platform}, "
            f"this machine's is {plan.conditions.platform}: the study's runs train here, the "
            "others stay apart (the report names both)"
        )
    update_plan(plan, results_dir)
    tasks = plan.tasks()
    progress.add(*progress_counts(tasks, store, plan.conditions))
    return new + train_tasks(tasks, store, resources, plan.conditions, progress)


def run_replications(
    plan: Plan,
    results_dir: Path,
    resources: Resources,
    count: int | None = None,
    progress: Progress = QUIET,
) -> list[RunRecord]:
    """Replications of the saved factorial study (plan.as_replication: new seeds, after every
    seed it used) until it holds `count` finished ones; None: one more than it has finished.
    An unfinished last replication (an interrupted one) is resumed first, and counts."""
    new: list[RunRecord] = []
    while True:
        saved = load_plan(results_dir)
        unfinished = (
            saved is not None
            and bool(saved.replications)
            and _unfinished(as_replication(plan, saved, resume=True), results_dir)
        )
        finished = len(saved.replications) - unfinished if saved else 0
        if count is None:
            count = finished + 1
        if not unfinished and finished >= count:
            return new
        replication = as_replication(plan, saved, resume=unfinished)
        progress.status(f"replication on seeds {replication.factorial.seeds}")
        new += run_study(replication, results_dir, resources, progress)


def _unfinished(plan: Plan, results_dir: Path) -> bool:
    total, done = progress_counts(plan.tasks(), RunStore(results_dir), plan.conditions)
    return done < total


def planned_after_pilot(plan: Plan, records: list[RunRecord]) -> Plan:
    """Each arm's seeds from the pilot's spread of paired differences alone (never from the
    observed effect, which would bias the final test), capped by the design's max_seeds: the
    spread pooled over the planned ablations' pilots (one count for all), or each arm's own."""
    assert plan.design is not None
    if plan.factorial is not None:
        return replicates_after_pilot(plan, records)
    n0, max_seeds = plan.design.pilot_seeds, plan.design.max_seeds
    pilots = pilot_differences(plan, records)
    arms = dict(plan.arms)
    pooled = design.pooled_sd(list(pilots.values())) if plan.design.pooled else None
    for label, differences in pilots.items():
        spread, df = pooled or (
            (statistics.stdev(differences), n0 - 1) if len(differences) >= 2 else (None, 0)
        )
        n = max_seeds
        if spread is not None and df > 0:
            n = design.planned_seeds(
                spread, n0, plan.margin, max_seeds, family_size=len(pilots), df=df
            )
        arms[label] = dataclasses.replace(arms[label], seeds=tuple(range(max(n, n0))))
    return dataclasses.replace(plan, arms=arms).with_reference_seeds()


def replicates_after_pilot(plan: Plan, records: list[RunRecord]) -> Plan:
    """The factorial's replicates from its pilot (stats.factorial.planned_replicates), every
    arm on the same seeds as the cells."""
    assert plan.design is not None and plan.factorial is not None
    n0 = plan.design.pilot_seeds
    pilot = plan.factorial.with_seeds(range(n0))
    frame = pd.DataFrame(
        [
            {
                **RunKey.of(r)._asdict(),
                "status": r["status"],
                "test_accuracy": r.get("metrics", {}).get("test_accuracy", math.nan),
            }
            for r in records
        ]
    )
    runs = factorial_runs(pilot, plan.reference.config, plan.conditions, frame)
    factors = plan.factorial.factor_names
    n = plan.design.max_seeds
    if len(runs) == len(pilot.cells()) * n0:  # a diverged cell: the cap, as for an arm
        n = planned_replicates(runs, factors, plan.margin, n)
    seeds = range(max(n, n0))
    factorial = plan.factorial.with_seeds(seeds)
    return dataclasses.replace(plan, factorial=factorial).with_arm_seeds(list(seeds))


def pilot_differences(plan: Plan, records: list[RunRecord]) -> dict[str, list[float]]:
    """Per planned ablation (not the tuned network, which no design plans), the paired test
    accuracy differences with the reference on the pilot's seeds, in seed order."""
    n0 = plan.design.pilot_seeds if plan.design else 0
    reference = pilot_accuracies(plan, REFERENCE, records, n0)
    pilots = {}
    for label in plan.arms:
        if label == REFERENCE or is_tuned(label):
            continue
        variant = pilot_accuracies(plan, label, records, n0)
        pilots[label] = [variant[s] - reference[s] for s in sorted(variant) if s in reference]
    return pilots


def pilot_accuracies(plan: Plan, label: str, records: list[RunRecord], n0: int) -> dict[int, float]:
    """Test accuracy by seed of the arm's finished pilot runs (seeds below n0)."""
    config_hash = plan.arms[label].config.hash()
    return {
        r["seed"]: r["metrics"]["test_accuracy"]
        for r in records
        if r["config_hash"] == config_hash
        and RunKey.of(r).conditions == plan.conditions
        and r["status"] == "ok"
        and r["seed"] < n0
    }
