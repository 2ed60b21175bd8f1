"""Running a search: one trial at a time here, one per Dask worker, or stacked trials on one
device, until the study holds the asked trials; then its summary saved beside the study."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness import UserError
from harness.core.config import Config
from harness.core.data import Mnist, load_mnist, resolve_data_dir, split
from harness.core.store import RunStore
from harness.core.training import resolve_device
from harness.study.executor import KilledWorker, Resources, cluster, worker_lost, worker_mnist
from harness.study.grid import check_before_training
from harness.study.plan import TUNED, Plan
from harness.study.progress import QUIET, Progress
from harness.study.search._stacked import TRIALS_PER_ROUND, optimize_stacked
from harness.study.search._study import (
    best_text,
    fail_running_trials,
    finished_count,
    open_study,
    optimize,
    start_from_reference,
    summarize,
    this_process,
)
from harness.study.search._summary import (
    SearchSummary,
    load_search_summary,
    save_search_summary,
)
from harness.study.settings import SearchSettings


def run_searches(
    settings: SearchSettings,
    results_dir: Path,
    resources: Resources,
    reference: Config,
    progress: Progress = QUIET,
) -> dict[str, SearchSummary]:
    """The search, and with settings.repeats > 1 as many independent ones (SearchSettings.repeat),
    one after the other; their summaries by tuned arm label."""
    return {
        label: run_search(
            settings.repeat(number), results_dir, resources, reference, progress, label
        )
        for number, label in enumerate(settings.labels())
    }


def with_tuned_arms(
    plan: Plan, settings: SearchSettings, summaries: dict[str, SearchSummary]
) -> Plan:
    """The plan with each search's choice as an arm (tuned, tuned-repeat2, ...) re-trained on
    the settings' seeds, beside the reference on the same seeds, and the search's settings."""
    seeds = list(range(settings.retrain_seeds))
    plan = dataclasses.replace(plan, search=settings.describe())
    for label, summary in summaries.items():
        plan = plan.with_arm(summary.arm(seeds, label))
    return plan


def run_search(
    settings: SearchSettings,
    results_dir: Path,
    resources: Resources,
    reference: Config,
    progress: Progress = QUIET,
    label: str = TUNED,
) -> SearchSummary:
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
            "a search on a Dask cluster needs a database every worker can reach, such as "
            "postgresql://… (the default SQLite file lives on this machine only)",
            "storage",
        )
    check_before_training(RunStore(results_dir), resources)
    storage = settings.storage_url(results_dir)
    study = open_study(settings.study, storage, settings.sampler_seed(), settings.search_epochs)
    finished = finished_count(study)
    if finished < settings.trials:
        progress.add(settings.trials, finished)
        if resources.distributed:
            _optimize_on_cluster(study, storage, settings, resources, reference, progress)
        else:
            mnist = load_mnist(resolve_data_dir(resources.data_dir))
            _optimize(study, mnist, settings, resources, reference, progress)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {settings.study!r} has no complete trial yet")
    summary = summarize(study, storage, settings.seed)
    if resources.stacked:  # how its trials ran, for the search page
        summary = dataclasses.replace(summary, trials_per_round=resources.stack or TRIALS_PER_ROUND)
    save_search_summary(summary, results_dir, label)
    return summary


def _summary_covers(summary: SearchSummary, settings: SearchSettings) -> bool:
    """Whether a saved search is this one (its study and trial seed) with enough finished trials."""
    return (
        summary.study == settings.study
        and summary.trial_seed == settings.seed
        and summary.finished >= settings.trials
    )


def _optimize_on_cluster(study, storage, settings, resources, reference, progress) -> None:
    """One long task per worker, all sharing the study through its storage, as separate machines
    would. Trial order then depends on timing: a parallel search is not reproducible trial for
    trial, a serial one is. Stopped (Ctrl-C, an error), a local cluster's workers are killed and
    the trials they were running are told failed at once, rather than after the heartbeat's
    grace period."""
    seen = min(finished_count(study), settings.trials)
    start_from_reference(study, reference, settings.search_epochs)  # once, before the race
    workers: set[str] = set()
    try:
        with cluster(resources) as client:
            workers = set(client.run(this_process).values())
            futures = [
                client.submit(
                    _search_on_worker,
                    settings,
                    storage,
                    settings.sampler_seed(worker),
                    resources,
                    reference,
                    key=f"search-{settings.study}-worker{worker}-{time.time_ns()}",
                )
                for worker in range(resources.workers)
            ]
            while not all(f.done() for f in futures):
                time.sleep(1.0)
                now = min(finished_count(study), settings.trials)  # one in flight may add one
                progress.advance(now - seen)
                seen = now
                progress.status(f"search, {resources.workers} workers, {best_text(study)}")
            for future in futures:
                future.result()  # a worker's error is raised here
    except BaseException as error:
        if resources.scheduler is None:  # a local cluster's workers are killed, not waited for
            with contextlib.suppress(Exception):  # the stop itself is what the user sees
                # a study in this command's own SQLite file has no other process's trials
                fail_running_trials(study, workers if settings.storage else None)
        if isinstance(error, KilledWorker):
            raise worker_lost("a search worker", error) from error
        raise


def _search_on_worker(
    settings: SearchSettings,
    storage: str,
    sampler_seed: int | None,
    resources: Resources,
    reference: Config,
) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(settings.study, storage, sampler_seed, settings.search_epochs)
    mnist = worker_mnist(resources.data_dir, resources.threads)
    _optimize(study, mnist, settings, resources, reference)


def _optimize(
    study: optuna.Study,
    mnist: Mnist,
    settings: SearchSettings,
    resources: Resources,
    reference: Config,
    progress: Progress = QUIET,
) -> None:
    """Trials on the settings' seed's split until the study holds settings.trials: one at a
    time, or stacked K at a time (a GPU's way), by shape."""
    data = split(mnist, reference.val_size, settings.seed)
    device = resolve_device(resources.device)
    common = (study, data, reference, settings.trials, settings.search_epochs, settings.seed)
    if resources.stacked:
        per_round = resources.stack or TRIALS_PER_ROUND
        optimize_stacked(*common, device, per_round, settings.timeout, progress)
    else:
        optimize(*common, device, settings.timeout, progress)
