"""Trains a list of (label, config, seed) tasks into the store: here, or on Dask workers.

Workers return records and this process stores them (atomically), so no shared filesystem is
needed and every finished run is kept when the grid is interrupted: a rerun trains only what is
missing. Each pending run's lock is held while it is trained, so a second command started beside
this one skips it instead of training it twice. The thread count per run is set explicitly and
is part of the run's identity (its engine).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from distributed import Future, as_completed

from harness import UserError
from harness.core.config import Config
from harness.core.data import check_dataset, data_source, load_mnist, resolve_data_dir
from harness.core.model import INPUT_SIZE, NUM_CLASSES
from harness.core.record import RunRecord
from harness.core.store import RunConditions, RunKey, RunStore, StoreError, this_platform
from harness.core.training import engine, resolve_device, run_one
from harness.stacked.trainer import run_stacked, stack_size
from harness.study.executor import (
    KilledWorker,
    Resources,
    check_scheduler,
    cluster,
    cluster_conditions,
    dashboard,
    report_epoch,
    subscribe_epochs,
    worker_lost,
    worker_mnist,
)
from harness.study.plan import Task
from harness.study.progress import QUIET, Progress


def run_engine(resources: Resources) -> str:
    return engine(resolve_device(resources.device), resources.threads, resources.stacked)


def run_conditions(resources: Resources) -> RunConditions:
    """The conditions the runs of these resources train under: this process's platform and data
    set, or those of a given scheduler's workers (who read their own data folder)."""
    if resources.scheduler is not None:
        platform, data = cluster_conditions(resources)
    else:
        device, folder = resolve_device(resources.device), resolve_data_dir(resources.data_dir)
        check_dataset(folder)
        platform, data = this_platform(device), data_source(folder)
    return RunConditions(run_engine(resources), platform, data)


def task_key(task: Task, conditions: RunConditions) -> RunKey:
    return conditions.key(task.config.hash(), task.seed)


def pending_tasks(tasks: list[Task], store: RunStore, conditions: RunConditions) -> list[Task]:
    """Tasks not stored yet, each run once."""
    seen, pending = set(), []
    for task in tasks:
        key = task_key(task, conditions)
        if key not in seen and not store.has(key):
            seen.add(key)
            pending.append(task)
    return pending


def progress_counts(
    tasks: list[Task], store: RunStore, conditions: RunConditions
) -> tuple[int, int]:
    """How many distinct runs the tasks name, and how many of them are stored already."""
    total = len({task_key(task, conditions) for task in tasks})
    return total, total - len(pending_tasks(tasks, store, conditions))


def stack_key(config: Config) -> tuple:
    """What the members of one stack share (harness.stacked.mlp.stack_shape), and their split's
    size."""
    return (
        config.hidden_widths,
        config.batchnorm,
        config.activation,
        config.batch_size,
        config.val_size,
    )


def estimated_work(config: Config) -> int:
    """Multiply-adds per training image over the whole run: a run's relative cost."""
    widths = [INPUT_SIZE, *config.hidden_widths, NUM_CLASSES]
    return config.epochs * sum(a * b for a, b in zip(widths, widths[1:], strict=False))


def check_before_training(store: RunStore, resources: Resources) -> None:
    """Everything that would otherwise fail after hours of training fails here, in one line."""
    resolve_device(resources.device)
    if resources.scheduler is None:  # a remote cluster's workers read their own data folder
        check_dataset(resolve_data_dir(resources.data_dir))
    store.check_writable()
    check_scheduler(resources)


def train_tasks(
    tasks: list[Task],
    store: RunStore,
    resources: Resources,
    conditions: RunConditions,
    progress: Progress = QUIET,
) -> list[RunRecord]:
    """Trains and stores every pending task, longest first; returns the new records. Runs that
    another command is training are waited for (and trained here if it dies without them), so
    that what follows, a report, sees every run."""
    check_before_training(store, resources)
    store.set_aside_unreadable()
    store.remove_stale_locks()
    pending = pending_tasks(tasks, store, conditions)
    # Longest first, so that no worker sits idle at the end waiting for one long run.
    pending.sort(key=lambda task: estimated_work(task.config), reverse=True)
    grid = _Grid(store, resources, conditions, progress)
    records: list[RunRecord] = []
    while pending:
        with claimed(pending, store, conditions) as (mine, elsewhere):
            if mine:
                records += grid.train(mine)
        if not elsewhere:
            break
        locks = ", ".join(store.path(task_key(t, conditions)).stem for t in elsewhere[:3])
        progress.note(
            f"waiting for {len(elsewhere)} run(s) that another command is training "
            f"({locks}{', …' if len(elsewhere) > 3 else ''}: see their .lock files)"
        )
        with store.claim(task_key(elsewhere[0], conditions), wait=True):
            pass  # its holder let go: stored by it, or free for us on the next pass
        pending = pending_tasks(elsewhere, store, conditions)
        progress.advance(len(elsewhere) - len(pending))
    return records


@contextlib.contextmanager
def claimed(
    pending: list[Task], store: RunStore, conditions: RunConditions
) -> Iterator[tuple[list[Task], list[Task]]]:
    """Takes the lock of every pending run it can; yields (ours, held by another command)."""
    with contextlib.ExitStack() as locks:
        mine, elsewhere = [], []
        for task in pending:
            key = task_key(task, conditions)
            lock = contextlib.ExitStack()
            held = lock.enter_context(store.claim(key))
            if held and store.has(key):  # stored by the command that held it a moment ago
                lock.close()
                continue
            locks.enter_context(lock)
            (mine if held else elsewhere).append(task)
        yield mine, elsewhere


@dataclasses.dataclass
class _Grid:
    """Trains claimed tasks here, stacked, or on Dask workers, storing each record as it ends."""

    store: RunStore
    resources: Resources
    conditions: RunConditions
    progress: Progress

    def train(self, tasks: list[Task]) -> list[RunRecord]:
        if self.resources.stacked:
            return self._stacks(tasks)
        if self.resources.distributed:
            return self._on_cluster(tasks)
        return self._here(tasks)

    def _here(self, tasks: list[Task]) -> list[RunRecord]:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.resources.threads)
        try:
            mnist = load_mnist(resolve_data_dir(self.resources.data_dir))
            device = resolve_device(self.resources.device)
            records = []
            for task in tasks:

                def on_epoch(epoch: dict[str, Any], task: Task = task) -> None:
                    self._show_epoch(task.describe(), epoch["epoch"], task.config.epochs)

                record = run_one(task.config, task.seed, mnist, task.label, device, on_epoch)
                records.append(self._store(record))
            return records
        finally:
            torch.set_num_threads(previous)

    def _stacks(self, tasks: list[Task]) -> list[RunRecord]:
        """The pending runs of one network shape (a factorial's cells of one width and
        BatchNorm, or an arm's seeds), K at a time, as one stacked model on this process's
        device: each member its own config and seed."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.resources.threads)
        device = resolve_device(self.resources.device)
        try:
            mnist = load_mnist(resolve_data_dir(self.resources.data_dir))
            shapes: dict[tuple, list[Task]] = {}
            for task in tasks:
                shapes.setdefault(stack_key(task.config), []).append(task)
            records = []
            for group in shapes.values():
                size = self.resources.stack or stack_size(group[0].config, device, len(group))
                for start in range(0, len(group), size):
                    chunk = group[start : start + size]
                    arms = sorted({task.label for task in chunk})
                    self.progress.status(f"{len(chunk)} runs stacked ({', '.join(arms)[:60]})")
                    stack = run_stacked(
                        [task.config for task in chunk],
                        [task.seed for task in chunk],
                        mnist,
                        [task.label for task in chunk],
                        device,
                    )
                    records += self._keep_all(stack)
            return records
        finally:
            torch.set_num_threads(previous)

    def _on_cluster(self, tasks: list[Task]) -> list[RunRecord]:
        records = []
        resources = self.resources
        needed = dataclasses.replace(resources, workers=min(resources.workers, len(tasks)))
        with cluster(needed) as client:  # no idle worker started: each holds ~1 GB
            if link := dashboard(client):
                self.progress.note(f"Dask dashboard: {link}")
            subscribe_epochs(client, self._show_epoch)
            futures = [
                # The key names the run: two clients of one cluster share a task, not train
                # it twice.
                client.submit(_train_on_worker, task, resources, key=self._dask_key(task))
                for task in tasks
            ]
            try:
                for future in as_completed(futures):
                    records.append(self._store(future.result()))
            except KilledWorker as error:
                raise worker_lost("a run", error) from error
            except StoreError:
                # runs that finished meanwhile are kept before the workers go: stored, or
                # rescued (not on Ctrl-C: a result fetched from a worker can wait forever, and a
                # run cancelled is only trained again)
                finished = _finished_results(futures)
                records += self._keep_all([r for r in finished if not self.store.has(RunKey.of(r))])
                raise
            except KeyboardInterrupt:
                self.progress.note(f"\ninterrupted: {len(records)} run(s) finished and stored now")
                raise
        return records

    def _dask_key(self, task: Task) -> str:
        return f"run-{task_key(task, self.conditions).file_name().removesuffix('.json')}"

    def _keep_all(self, records: list[RunRecord]) -> list[RunRecord]:
        """Stores each record; once the store fails, the rest go to the rescue folder (each on
        its own), and the first failure is raised when every record is saved somewhere."""
        kept, failure = [], None
        for record in records:
            try:
                if failure is None:
                    kept.append(self._store(record))
                else:
                    self.store.rescue(record)
            except StoreError as error:
                failure = failure or error
        if failure is not None:
            raise failure
        return kept

    def _store(self, record: RunRecord) -> RunRecord:
        self.store.save(record)
        if RunKey.of(record).conditions != self.conditions:
            raise UserError(
                f"{record['label']} seed {record['seed']} was trained under "
                f"{RunKey.of(record).conditions}, not the study's {self.conditions}: every "
                "worker must share one machine type and data set (the run is stored apart)"
            )
        self.progress.advance()
        if record["status"] != "ok":
            self.progress.note(
                f"{record['label']} seed {record['seed']}: diverged at epoch "
                f"{record['diverged_epoch']} ({record['divergence']}); stored as diverged"
            )
        return record

    def _show_epoch(self, what: str, epoch: int, epochs: int) -> None:
        self.progress.status(f"{what}, epoch {epoch}/{epochs}")


def _train_on_worker(task: Task, resources: Resources) -> RunRecord:
    mnist = worker_mnist(resources.data_dir, resources.threads)

    def on_epoch(epoch: dict[str, Any]) -> None:
        report_epoch(task.describe(), epoch["epoch"], task.config.epochs)

    return run_one(
        task.config, task.seed, mnist, task.label, resolve_device(resources.device), on_epoch
    )


def _finished_results(futures: list[Future]) -> list[RunRecord]:
    """The records of the futures that finished, each fetched within a minute; one whose worker
    is gone is skipped (its run is trained again next time)."""
    records = []
    for future in futures:
        if future.status == "finished":
            try:
                records.append(future.result(timeout=60))
            except Exception:  # TimeoutError, or the connection to its worker lost
                continue
    return records
