"""The searches a study runs: the hyperparameter search (one trial per worker here, on Dask
workers, or stacked trials on one device) with its summary saved, and --retune's small search
for each arm's own settings before the arms train on their seeds (harness.study.runner).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from harness import UserError
from harness.core.config import Config
from harness.core.data import Mnist, load_mnist, resolve_data_dir, split
from harness.core.record import RunRecord
from harness.core.store import RunStore, write_json_atomically
from harness.core.training import resolve_device
from harness.study import retune
from harness.study.executor import KilledWorker, Resources, cluster, worker_lost, worker_mnist
from harness.study.grid import check_before_training
from harness.study.plan import TUNED, Plan, is_tuned
from harness.study.runner import run
from harness.study.saved import (
    RETUNE_SUMMARY_FILE,
    load_retune_summaries,
    load_search_summary,
    summary_file,
)
from harness.study.settings import SearchSettings
from harness.study.stacked_search import TRIALS_PER_ROUND, optimize_stacked
from harness.study.tuning import (
    best_text,
    finished_count,
    open_study,
    optimize,
    start_from_reference,
    summarize,
)

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
    device = resolve_device(resources.device)
    common = (study, data, base, settings.trials, settings.epoch_cap, settings.seed, device)
    if resources.stacked:
        optimize_stacked(*common, resources.stack or TRIALS_PER_ROUND, settings.timeout, bar)
    else:
        optimize(*common, settings.timeout, bar)


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
