"""Runs a study: a plan's arms over their seeds, or seeds until decided (a pilot, then the seeds
the pilot's spread says each arm needs); and the search, here or on Dask workers. The plan is
saved with the results before anything trains.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState
from tqdm import tqdm

from harness import UserError
from harness.core.config import Config
from harness.core.data import Mnist, load_mnist, resolve_data_dir, split
from harness.core.record import RunRecord
from harness.core.store import RunKey, RunStore, write_json_atomically
from harness.core.training import resolve_device
from harness.stats import design
from harness.stats.factorial import planned_replicates
from harness.study import retune
from harness.study.executor import KilledWorker, Resources, cluster, worker_lost, worker_mnist
from harness.study.factorial import factorial_runs
from harness.study.grid import check_before_training, progress_counts, run_tasks
from harness.study.plan import (
    RETUNE_SUMMARY_FILE,
    TUNED,
    Plan,
    as_replication,
    check_evaluation_seeds,
    is_tuned,
    load_plan,
    load_retune_summaries,
    load_search_summary,
    summary_file,
    update_plan,
)
from harness.study.settings import SearchSettings
from harness.study.specs import REFERENCE
from harness.study.stacked_search import TRIALS_PER_ROUND, optimize_stacked
from harness.study.tuning import (
    best_text,
    finished_count,
    open_study,
    optimize,
    start_from_reference,
    summarize,
)


def run(
    plan: Plan,
    results_dir: Path,
    resources: Resources,
    description: str,
    bar: tqdm | None = None,
) -> list[RunRecord]:
    """Trains what the plan's arms miss (under one progress bar); returns the new records."""
    check_evaluation_seeds(seed for arm in plan.arms.values() for seed in arm.seeds)
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
    total, done = progress_counts(tasks, store, resources)
    if bar is not None:  # a caller's bar (run_all's): what is left to train is added to it
        bar.total = bar.n + total - done
        bar.refresh()
        return new + run_tasks(tasks, store, resources, bar)
    with tqdm(total=total, initial=done, desc=description, unit="run", dynamic_ncols=True) as own:
        return new + run_tasks(tasks, store, resources, own)


def run_replications(
    plan: Plan,
    results_dir: Path,
    resources: Resources,
    count: int | None = None,
    bar: tqdm | None = None,
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
            and _unfinished(as_replication(plan, saved, resume=True), results_dir, resources)
        )
        finished = len(saved.replications) - unfinished if saved else 0
        if count is None:
            count = finished + 1
        if not unfinished and finished >= count:
            return new
        replication = as_replication(plan, saved, resume=unfinished)
        seeds = replication.factorial.seeds
        new += run(replication, results_dir, resources, f"replication on seeds {seeds}", bar)


def _unfinished(plan: Plan, results_dir: Path, resources: Resources) -> bool:
    total, done = progress_counts(plan.tasks(), RunStore(results_dir), resources)
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
                "config_hash": r["config_hash"],
                "seed": r["seed"],
                "engine": RunKey.of(r).engine,
                "status": r["status"],
                "test_accuracy": r["metrics"].get("test_accuracy", math.nan),
            }
            for r in records
        ]
    )
    runs = factorial_runs(pilot, plan.reference.config, plan.engine, frame)
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
        and RunKey.of(r).engine == plan.engine
        and r["status"] == "ok"
        and r["seed"] < n0
    }


# ---------------------------------------------------------------- running a search


def run_searches(
    settings: SearchSettings,
    results_dir: Path,
    resources: Resources,
    base: Config,
    bar: tqdm | None = None,
) -> dict[str, dict[str, Any]]:
    """The search, and with settings.repeats > 1 as many independent ones (SearchSettings.repeat),
    one after the other; their summaries by tuned arm label."""
    return {
        label: run_search(settings.repeat(number), results_dir, resources, base, bar, label)
        for number, label in enumerate(settings.labels())
    }


def run_search(
    settings: SearchSettings,
    results_dir: Path,
    resources: Resources,
    base: Config,
    bar: tqdm | None = None,
    label: str = TUNED,
) -> dict[str, Any]:
    """Searches until the study holds settings.trials finished trials and saves its summary,
    which names the tuned config (in <label>.json). A rerun of a finished search starts no
    worker; its saved summary is enough, so a study copied without its database (reports/data)
    resumes too."""
    saved = load_search_summary(results_dir, label)
    if saved is not None and _summary_covers(saved, settings):
        return saved
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a Ctrl-C'd trial is no traceback
    if resources.scheduler and not settings.storage:
        raise UserError(
            "a search on a Dask cluster needs --storage postgresql://… that every worker can "
            "reach (the default SQLite file lives on this machine only)"
        )
    check_before_training(RunStore(results_dir), resources)
    storage = settings.storage_url(results_dir)
    study = open_study(settings.study, storage, settings.sampler_seed(), settings.epoch_cap)
    finished = finished_count(study)
    if finished < settings.trials:
        own = bar is None
        bar = bar or tqdm(total=settings.trials, initial=finished, desc="search", unit="trial")
        try:
            if resources.distributed:
                _optimize_on_cluster(study, storage, settings, resources, base, bar)
            else:
                mnist = load_mnist(resolve_data_dir(resources.data_dir))
                _optimize(study, mnist, settings, resources, base, bar)
        finally:
            if own:
                bar.close()
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {settings.study!r} has no complete trial yet")
    summary = summarize(study, storage) | {"trial_seed": settings.seed}
    if resources.stacked:  # how its trials ran, for the search page
        summary["trials_per_round"] = resources.stack or TRIALS_PER_ROUND
    write_json_atomically(Path(results_dir) / summary_file(label), summary)
    return summary


def _summary_covers(summary: dict[str, Any], settings: SearchSettings) -> bool:
    """Whether a saved search is this one (its study and trial seed) with enough finished trials."""
    finished = summary["counts"].get("complete", 0) + summary["counts"].get("pruned", 0)
    return (
        summary["study"] == settings.study
        and summary.get("trial_seed") == settings.seed
        and finished >= settings.trials
    )


def _optimize_on_cluster(study, storage, settings, resources, base, bar) -> None:
    """One long task per worker, all sharing the study through its storage, as separate machines
    would. Trial order then depends on timing: a parallel search is not reproducible trial for
    trial, a serial one is."""
    seen = min(finished_count(study), settings.trials)
    start_from_reference(study, base, settings.epoch_cap)  # once, before the workers race
    with cluster(resources) as client:
        futures = [
            client.submit(
                _search_on_worker,
                settings,
                storage,
                settings.sampler_seed(worker),
                resources,
                base,
                key=f"search-{settings.study}-worker{worker}-{time.time_ns()}",
            )
            for worker in range(resources.workers)
        ]
        try:
            while not all(f.done() for f in futures):
                time.sleep(1.0)
                now = min(finished_count(study), settings.trials)  # one in flight may add one
                bar.update(now - seen)
                seen = now
                bar.set_postfix_str(f"search, {resources.workers} workers, {best_text(study)}")
            for future in futures:
                future.result()  # a worker's error is raised here
        except KilledWorker as error:
            raise worker_lost("a search worker", error) from error


def _search_on_worker(
    settings: SearchSettings,
    storage: str,
    sampler_seed: int | None,
    resources: Resources,
    base: Config,
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(settings.study, storage, sampler_seed, settings.epoch_cap)
    mnist = worker_mnist(resources.data_dir, resources.threads)
    _optimize(study, mnist, settings, resources, base)


def _optimize(study, mnist, settings, resources, base, bar=None) -> None:
    """Trials on the settings' seed's split until the study holds settings.trials: one at a
    time, or with --stack K (a GPU's way) K at a time, stacked by shape."""
    data = split(mnist, base.val_size, settings.seed)
    if resources.stacked:
        device = resolve_device(resources.device)
        round_size = resources.stack or TRIALS_PER_ROUND
        optimize_stacked(
            study,
            data,
            base,
            settings.trials,
            settings.epoch_cap,
            settings.seed,
            device,
            round_size,
            settings.timeout,
            bar,
        )
        return
    optimize(
        study,
        data,
        base,
        settings.trials,
        settings.epoch_cap,
        settings.seed,
        resolve_device(resources.device),
        settings.timeout,
        bar,
    )


# ---------------------------------------------------------------- each arm's own settings


def run_retuned(
    plan: Plan, params: tuple[str, ...], trials: int, results_dir: Path, resources: Resources
) -> list[RunRecord]:
    """--retune: each of the plan's arms at its own values of params (retune_arms), trained on
    its seeds beside the retuned reference."""
    check_before_training(RunStore(results_dir), resources)
    mnist = load_mnist(resolve_data_dir(resources.data_dir))
    device = resolve_device(resources.device)
    summaries = retune_arms(plan, params, mnist, results_dir, device, trials)
    retuned = plan
    for label, summary in summaries.items():
        retuned = retuned.with_arm(retune.retuned_arm(plan.arms[label], summary))
    return run(retuned, results_dir, resources, "retuned arms")


def retune_arms(
    plan: Plan,
    params: tuple[str, ...],
    mnist: Mnist,
    results_dir: Path,
    device: Any,
    trials: int = retune.RETUNE_TRIALS,
) -> dict[str, dict[str, Any]]:
    """The same small search for each of the plan's arms (retune.retune_arm, here, one trial at
    a time) on the trial seed's train/validation split: the test images are not in it. The
    summaries are saved to retuned.json as each arm finishes."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = SearchSettings(storage=None).storage_url(results_dir)
    data = split(mnist, plan.reference.config.val_size, retune.RETUNE_SEED)
    path = Path(results_dir) / RETUNE_SUMMARY_FILE
    saved = load_retune_summaries(results_dir)
    arms = [arm for arm in plan.arms.values() if not is_tuned(arm.label)]
    chosen = {}
    with tqdm(arms, desc=f"retuning {'+'.join(params)}", unit="arm", dynamic_ncols=True) as bar:
        for arm in bar:
            bar.set_postfix_str(arm.label)
            chosen[arm.label] = retune.retune_arm(arm, params, storage, data, device, trials)
            write_json_atomically(path, saved | chosen)
    return chosen
