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
import sys
from collections.abc import Iterator
from typing import Any

import torch
from distributed import Future, as_completed
from tqdm import tqdm

from harness.core.config import Config
from harness.core.data import check_dataset, load_mnist, resolve_data_dir
from harness.core.model import INPUT_SIZE, NUM_CLASSES
from harness.core.record import RunRecord
from harness.core.store import RunKey, RunStore, StoreError
from harness.core.training import engine, resolve_device, run
from harness.stacked.trainer import run_stacked, stack_size
from harness.study.executor import (
    KilledWorker,
    Resources,
    check_scheduler,
    cluster,
    dashboard,
    report_epoch,
    subscribe_epochs,
    worker_lost,
    worker_mnist,
)
from harness.study.plan import Task


def run_engine(resources: Resources) -> str:
    return engine(resolve_device(resources.device), resources.threads, resources.stacked)


def task_key(task: Task, resources: Resources) -> RunKey:
    return RunKey(task.config.hash(), task.seed, run_engine(resources))


def pending_tasks(tasks: list[Task], store: RunStore, resources: Resources) -> list[Task]:
    """Tasks not stored yet, each run once."""
    seen, pending = set(), []
    for task in tasks:
        key = task_key(task, resources)
        if key not in seen and not store.has(key):
            seen.add(key)
            pending.append(task)
    return pending


def progress_counts(tasks: list[Task], store: RunStore, resources: Resources) -> tuple[int, int]:
    """How many distinct runs the tasks name, and how many of them are stored already."""
    total = len({task_key(task, resources) for task in tasks})
    return total, total - len(pending_tasks(tasks, store, resources))


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


def run_tasks(
    tasks: list[Task], store: RunStore, resources: Resources, bar: tqdm | None = None
) -> list[RunRecord]:
    """Trains and stores every pending task, longest first; returns the new records. Runs that
    another command is training are waited for (and trained here if it dies without them), so
    that what follows, a report, sees every run."""
    check_before_training(store, resources)
    store.set_aside_unreadable()
    pending = pending_tasks(tasks, store, resources)
    # Longest first, so that no worker sits idle at the end waiting for one long run.
    pending.sort(key=lambda task: estimated_work(task.config), reverse=True)
    records: list[RunRecord] = []
    while pending:
        with claimed(pending, store, resources) as (mine, elsewhere):
            if mine:
                records += _train(mine, store, resources, bar)
        if not elsewhere:
            break
        locks = ", ".join(store.path(task_key(t, resources)).stem for t in elsewhere[:3])
        _write(
            bar,
            f"waiting for {len(elsewhere)} run(s) that another command is training "
            f"({locks}{', …' if len(elsewhere) > 3 else ''}: see their .lock files)",
        )
        with store.claim(task_key(elsewhere[0], resources), wait=True):
            pass  # its holder let go: stored by it, or free for us on the next pass
        pending = pending_tasks(elsewhere, store, resources)
        if bar is not None:
            bar.update(len(elsewhere) - len(pending))
    return records


def _train(tasks, store, resources, bar) -> list[RunRecord]:
    if resources.stacked:
        return _run_stacks(tasks, store, resources, bar)
    if resources.distributed:
        return _run_on_cluster(tasks, store, resources, bar)
    return _run_here(tasks, store, resources, bar)


@contextlib.contextmanager
def claimed(
    pending: list[Task], store: RunStore, resources: Resources
) -> Iterator[tuple[list[Task], list[Task]]]:
    """Takes the lock of every pending run it can; yields (ours, held by another command)."""
    with contextlib.ExitStack() as locks:
        mine, elsewhere = [], []
        for task in pending:
            key = task_key(task, resources)
            lock = contextlib.ExitStack()
            held = lock.enter_context(store.claim(key))
            if held and store.has(key):  # stored by the command that held it a moment ago
                lock.close()
                continue
            locks.enter_context(lock)
            (mine if held else elsewhere).append(task)
        yield mine, elsewhere


def _run_here(tasks, store, resources, bar) -> list[RunRecord]:
    previous = torch.get_num_threads()
    torch.set_num_threads(resources.threads)
    try:
        mnist = load_mnist(resolve_data_dir(resources.data_dir))
        records = []
        for task in tasks:

            def on_epoch(epoch: dict[str, Any], task: Task = task) -> None:
                _show_epoch(bar, task.describe(), epoch["epoch"], task.config.epochs)

            record = run(
                task.config,
                task.seed,
                mnist,
                task.label,
                resolve_device(resources.device),
                on_epoch,
            )
            records.append(_store(record, store, bar))
        return records
    finally:
        torch.set_num_threads(previous)


def _run_stacks(tasks, store, resources, bar) -> list[RunRecord]:
    """Each arm's pending seeds, K at a time, as one stacked model on this process's device."""
    previous = torch.get_num_threads()
    torch.set_num_threads(resources.threads)
    device = resolve_device(resources.device)
    try:
        mnist = load_mnist(resolve_data_dir(resources.data_dir))
        arms: dict[tuple[str, str], list[Task]] = {}
        for task in tasks:
            arms.setdefault((task.label, task.config.hash()), []).append(task)
        records = []
        for group in arms.values():
            size = resources.stack or stack_size(group[0].config, device, len(group))
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                if bar is not None:
                    bar.set_postfix_str(f"{chunk[0].label}: {len(chunk)} seeds stacked")
                seeds = [task.seed for task in chunk]
                stack = run_stacked(chunk[0].config, seeds, mnist, chunk[0].label, device)
                records += _keep_all(stack, store, bar)
        return records
    finally:
        torch.set_num_threads(previous)


def _run_on_cluster(tasks, store, resources, bar) -> list[RunRecord]:
    records = []
    needed = dataclasses.replace(resources, workers=min(resources.workers, len(tasks)))
    with cluster(needed) as client:  # no idle worker started: each holds ~1 GB
        if link := dashboard(client):
            _write(bar, f"Dask dashboard: {link}")
        subscribe_epochs(client, lambda *event: _show_epoch(bar, *event))
        futures = [
            # The key names the run: two clients of one cluster share a task, not train it twice.
            client.submit(_train_on_worker, task, resources, key=_dask_key(task, resources))
            for task in tasks
        ]
        try:
            for future in as_completed(futures):
                records.append(_store(future.result(), store, bar))
        except KilledWorker as error:
            raise worker_lost("a run", error) from error
        except StoreError:
            # runs that finished meanwhile are kept before the workers go: stored, or rescued
            # (not on Ctrl-C: a result fetched from a worker can wait forever, and a run
            # cancelled is only trained again)
            finished = [r for r in _finished_results(futures) if not store.has(RunKey.of(r))]
            records += _keep_all(finished, store, bar)
            raise
        except KeyboardInterrupt:
            _write(bar, f"\ninterrupted: {len(records)} run(s) finished and stored now")
            raise
    return records


def _dask_key(task: Task, resources: Resources) -> str:
    key = task_key(task, resources)
    return f"run-{key.config_hash}-seed{key.seed}-{key.engine}"


def _train_on_worker(task: Task, resources: Resources) -> RunRecord:
    mnist = worker_mnist(resources.data_dir, resources.threads)

    def on_epoch(epoch: dict[str, Any]) -> None:
        report_epoch(task.describe(), epoch["epoch"], task.config.epochs)

    return run(
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


def _keep_all(records: list[RunRecord], store: RunStore, bar: tqdm | None) -> list[RunRecord]:
    """Stores each record; once the store fails, the rest go to the rescue folder (each on its
    own), and the first failure is raised when every record is saved somewhere."""
    kept, failure = [], None
    for record in records:
        try:
            if failure is None:
                kept.append(_store(record, store, bar))
            else:
                store.rescue(record)
        except StoreError as error:
            failure = failure or error
    if failure is not None:
        raise failure
    return kept


def _store(record: RunRecord, store: RunStore, bar: tqdm | None) -> RunRecord:
    store.save(record)
    if bar is not None:
        bar.update()
    if record["status"] != "ok":
        _write(
            bar,
            f"{record['label']} seed {record['seed']}: diverged at epoch "
            f"{record['diverged_epoch']} ({record['divergence']}); stored as diverged",
        )
    return record


def _show_epoch(bar: tqdm | None, what: str, epoch: int, epochs: int) -> None:
    if bar is not None:
        bar.set_postfix_str(f"{what}, epoch {epoch}/{epochs}")


def _write(bar: tqdm | None, message: str) -> None:
    (bar.write if bar is not None else lambda m: print(m, file=sys.stderr))(message)
