"""Trains a plan: every arm over its seeds, or seeds until decided (a pilot, then the seeds the
pilot's spread says each arm needs). The plan is saved with the results before anything trains.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness import design
from harness.executor import Resources
from harness.grid import check_before_training, progress_counts, run_engine, run_tasks
from harness.plan import TUNED, Plan, update_plan
from harness.specs import REFERENCE
from harness.store import RunKey, RunStore


def engine_of(resources: Resources) -> str:
    return run_engine(resources)


def run(
    plan: Plan,
    results_dir: Path,
    resources: Resources,
    description: str,
    bar: tqdm | None = None,
) -> list[dict[str, Any]]:
    """Trains what the plan's arms miss (under one progress bar); returns the new records."""
    store = RunStore(results_dir)
    check_before_training(store, resources)
    if plan.design is not None:
        pilot = dataclasses.replace(plan, design=None)
        new = run(pilot, results_dir, resources, f"{description} (pilot)", bar)
        plan = planned_after_pilot(plan, store.records())
    else:
        new = []
    update_plan(plan, results_dir)
    tasks = plan.tasks()
    if bar is not None:
        return new + run_tasks(tasks, store, resources, bar)
    total, done = progress_counts(tasks, store, resources)
    with tqdm(total=total, initial=done, desc=description, unit="run", dynamic_ncols=True) as own:
        return new + run_tasks(tasks, store, resources, own)


def planned_after_pilot(plan: Plan, records: list[dict[str, Any]]) -> Plan:
    """Each arm's seeds from its pilot's spread of paired differences alone (never from the
    observed effect, which would bias the final test), capped by the design's max_seeds."""
    assert plan.design is not None
    n0 = plan.design.pilot_seeds
    reference = pilot_accuracies(plan, REFERENCE, records, n0)
    arms = dict(plan.arms)
    family = len([label for label in arms if label not in (REFERENCE, TUNED)])
    for label, arm in plan.arms.items():
        if label in (REFERENCE, TUNED):  # the tuned network is no planned ablation
            continue
        variant = pilot_accuracies(plan, label, records, n0)
        differences = [variant[s] - reference[s] for s in variant if s in reference]
        n = plan.design.max_seeds
        if len(differences) >= 2:
            n = design.planned_seeds(
                statistics.stdev(differences),
                n0,
                plan.margin,
                plan.design.max_seeds,
                family_size=family,
            )
        arms[label] = dataclasses.replace(arm, seeds=tuple(range(max(n, n0))))
    return dataclasses.replace(plan, arms=arms).with_reference_seeds()


def pilot_accuracies(
    plan: Plan, label: str, records: list[dict[str, Any]], n0: int
) -> dict[int, float]:
    """Test accuracy by seed of the arm's finished pilot runs (seeds below n0)."""
    config_hash = plan.arms[label].config.hash()
    return {
        r["seed"]: r["metrics"]["test_accuracy"]
        for r in records
        if r["config_hash"] == config_hash
        and RunKey.of(r).engine == plan.engine
        and r["status"] == "ok"
        and r["seed"] < n0
    }
