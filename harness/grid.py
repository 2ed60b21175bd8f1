"""Runs a list of (label, config, seed) tasks into the store: serial or in worker processes.

Each finished run is stored by the process that trained it, so an interrupted grid keeps every
finished run and a rerun trains only what is missing. Workers split the cores between them;
the thread count per run is set explicitly and recorded, so a run's numbers do not depend on
how many ran beside it.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import multiprocessing
import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from harness import UserError, cli
from harness.config import Config
from harness.data import Mnist, load_mnist
from harness.model import INPUT_SIZE, NUM_CLASSES
from harness.store import RunStore
from harness.train import resolve_device, run


class WorkerDied(UserError):
    pass


@dataclass(frozen=True)
class Task:
    label: str
    config: Config
    seed: int

    def describe(self) -> str:
        return f"{self.label} seed {self.seed}"


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def pending_tasks(tasks: list[Task], store: RunStore) -> list[Task]:
    """Tasks not stored yet, each (config hash, seed) once."""
    seen, pending = set(), []
    for task in tasks:
        key = (task.config.hash(), task.seed)
        if key not in seen and not store.has(*key):
            seen.add(key)
            pending.append(task)
    return pending


def progress_counts(tasks: list[Task], store: RunStore) -> tuple[int, int]:
    """How many distinct runs the tasks name, and how many of them are stored already."""
    total = len({(task.config.hash(), task.seed) for task in tasks})
    return total, total - len(pending_tasks(tasks, store))


def run_grid(tasks: list[Task], args: argparse.Namespace, description: str) -> list[dict]:
    """Trains what is missing under one progress bar over all the grid's runs."""
    store = RunStore(cli.results_dir(args))
    total, done = progress_counts(tasks, store)
    with tqdm(total=total, initial=done, desc=description, unit="run", dynamic_ncols=True) as bar:
        return run_tasks(
            tasks, store, cli.data_dir(args), args.device, args.workers, args.threads, bar
        )


def estimated_work(config: Config) -> int:
    """Multiply-adds per training image over the whole run: a run's relative cost."""
    widths = [INPUT_SIZE, *config.hidden_widths, NUM_CLASSES]
    return config.epochs * sum(a * b for a, b in zip(widths, widths[1:], strict=False))


def run_tasks(
    tasks: list[Task],
    store: RunStore,
    data_dir: Path,
    device: str = "cpu",
    workers: int = 1,
    threads: int | None = None,
    bar: tqdm | None = None,
) -> list[dict[str, Any]]:
    """Trains and stores every pending task; returns the new records in finishing order."""
    pending = pending_tasks(tasks, store)
    if not pending:
        return []
    threads = threads or default_threads(workers)
    resolve_device(device)  # an unusable device fails here, before anything trains
    mnist = load_mnist(data_dir)  # a missing dataset fails here, before any worker starts
    if workers == 1:
        return _run_serial(pending, store, mnist, device, threads, bar)
    return _run_parallel(pending, store, data_dir, device, workers, threads, bar)


def _run_serial(pending, store, mnist, device, threads, bar) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    records = []
    for task in pending:

        def on_epoch(epoch: dict[str, Any], task: Task = task) -> None:
            _show_epoch(bar, task.describe(), epoch["epoch"], task.config.epochs)

        records.append(_train_and_store(task, store, mnist, device, on_epoch))
        _advance(bar, records[-1])
    return records


def _run_parallel(pending, store, data_dir, device, workers, threads, bar) -> list[dict[str, Any]]:
    # Longest first, so that no worker sits idle at the end waiting for one long run.
    pending = sorted(pending, key=lambda task: estimated_work(task.config), reverse=True)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        epochs = manager.Queue()
        pool = futures.ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(str(data_dir), threads, epochs),
        )
        try:
            running = {pool.submit(_work, task, str(store.root), device) for task in pending}
            records = []
            while running:
                done, running = futures.wait(
                    running, timeout=0.5, return_when=futures.FIRST_COMPLETED
                )
                _drain(epochs, bar)
                for future in done:
                    records.append(future.result())
                    _advance(bar, records[-1])
            return records
        except futures.process.BrokenProcessPool:
            raise WorkerDied(
                "a worker process died mid-run (killed, or out of memory); finished runs are "
                "kept: run the same command again to resume"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _train_and_store(task: Task, store: RunStore, mnist: Mnist, device: str, on_epoch):
    record = run(task.config, task.seed, mnist, task.label, resolve_device(device), on_epoch)
    store.save(record)
    return record


def _show_epoch(bar: tqdm | None, what: str, epoch: int, epochs: int) -> None:
    if bar is not None:
        bar.set_postfix_str(f"{what}, epoch {epoch}/{epochs}")


def _advance(bar: tqdm | None, record: dict[str, Any]) -> None:
    if bar is not None:
        bar.update()
        if record["status"] != "ok":
            bar.write(
                f"{record['label']} seed {record['seed']}: diverged at epoch "
                f"{record['diverged_epoch']} (stored as diverged)"
            )


# Worker processes: MNIST is loaded once per worker, epoch progress goes back through a queue.
_worker: dict[str, Any] = {}


def _init_worker(data_dir: str, threads: int, epochs: queue.Queue) -> None:
    torch.set_num_threads(threads)
    _worker.update(mnist=load_mnist(Path(data_dir)), epochs=epochs)


def _work(task: Task, results_dir: str, device: str) -> dict[str, Any]:
    def on_epoch(epoch: dict[str, Any]) -> None:
        _worker["epochs"].put((task.describe(), epoch["epoch"], task.config.epochs))

    return _train_and_store(task, RunStore(Path(results_dir)), _worker["mnist"], device, on_epoch)


def _drain(epochs: queue.Queue, bar: tqdm | None) -> None:
    while True:
        try:
            _show_epoch(bar, *epochs.get_nowait())
        except queue.Empty:
            return
