"""Where training runs: in this process, on a local Dask cluster, or on an existing one.

One narrow interface for the grid and the search: `Resources` says how much to use, and
`cluster(resources)` yields a Dask client whose workers each train with `threads` torch threads
and keep MNIST in memory once loaded (from their own data folder). Scheduling, retrying the task
of a worker that died, and stopping every worker when this process ends (Ctrl-C, or killed) are
Dask's: a local cluster's workers exit once its scheduler, which lives in this process, is gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dask
import torch
from distributed import Client, KilledWorker, LocalCluster, get_worker

from harness import UserError
from harness.core.data import Mnist, check_dataset, data_source, load_mnist, resolve_data_dir
from harness.core.store import this_platform
from harness.core.training import resolve_device

__all__ = ["KilledWorker", "Resources", "WorkerLost", "cluster"]

SCHEDULER_ENV = "HARNESS_SCHEDULER"
EPOCH_TOPIC = "harness-epoch"


class SchedulerError(UserError):
    pass


class WorkerLost(Exception):
    """A task whose workers kept dying (killed, out of memory): no fault of the input."""


def worker_lost(what: str, error: Exception) -> WorkerLost:
    return WorkerLost(
        f"{what}: its worker process died on every retry ({error}); perhaps out of memory. "
        "Finished runs are kept: run the same command again to resume"
    )


@dataclass(frozen=True)
class Resources:
    """How to spread training: workers × threads on this machine, or an existing scheduler."""

    workers: int = 1
    threads: int = 1
    scheduler: str | None = None  # tcp://HOST:8786 of a running `dask scheduler`
    data_dir: str | None = None  # None: each worker's own $HARNESS_DATA_DIR, else ./data
    device: str = "cpu"
    stack: int = 1  # seeds of one config trained as one model; 0: as many as the GPU holds

    @property
    def stacked(self) -> bool:
        return self.stack != 1

    @property
    def distributed(self) -> bool:
        """Whether single runs go to Dask workers (several workers, or a scheduler given) rather
        than train in this process; stacks always train here, on this process's device."""
        return not self.stacked and (self.workers > 1 or self.scheduler is not None)


def default_threads(workers: int) -> int:
    """The cores divided among the workers: two processes of one thread each train ≈30% more
    per second than one of two threads on a 2-core machine (benchmarks/worker_throughput.py)."""
    return max(1, (os.cpu_count() or 1) // workers)


def resolve_scheduler(arg: str | None) -> str | None:
    """The scheduler option, else $HARNESS_SCHEDULER, else None (a local cluster); an address not
    tcp://HOST:PORT (or tls://, or HOST:PORT) is one line before anything starts."""
    address = arg or os.environ.get(SCHEDULER_ENV) or None
    if address is None:
        return None
    match = re.fullmatch(r"(?:(?:tcp|tls)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+):(\d{1,5})", address)
    if match is None or not 0 < int(match[2]) < 65536:
        source = "" if arg else f" (from ${SCHEDULER_ENV})"
        raise SchedulerError(
            f"{address!r}{source} is not a Dask scheduler address: expected tcp://HOST:PORT",
            "scheduler",
        )
    return address


def connect(scheduler: str) -> Client:
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} ({error}): start `dask scheduler` "
            f"there, or give none (and unset ${SCHEDULER_ENV}) for a local cluster",
            "scheduler",
        ) from error


def check_scheduler(resources: Resources) -> None:
    """Fails in one line, before any training, when the given scheduler does not answer."""
    if resources.scheduler is not None:
        connect(resources.scheduler).close()


def cluster_conditions(resources: Resources) -> tuple[str, str]:
    """The numeric platform and data set of a running cluster's workers, which must share them
    (runs from several would not compare): one line where they do not, or none is there."""
    with connect(resources.scheduler) as client:
        found = client.run(_worker_conditions, resources.data_dir, resources.device)
    if not found:
        raise SchedulerError(f"the Dask scheduler at {resources.scheduler} has no worker yet")
    distinct = sorted(set(found.values()))
    for answer in distinct:
        if answer[0] == "error":
            raise SchedulerError(f"a worker of {resources.scheduler} cannot train: {answer[1]}")
    if len(distinct) > 1:
        raise SchedulerError(
            f"the workers of {resources.scheduler} differ in numeric platform or data set "
            f"({', '.join(f'{p} on {d}' for p, d in distinct)}): their runs would not compare; "
            "give one study workers of one machine type and one data set"
        )
    return distinct[0]


def _worker_conditions(data_dir: str | None, device: str) -> tuple[str, str]:
    try:
        folder = resolve_data_dir(data_dir)
        check_dataset(folder)
        return this_platform(resolve_device(device)), data_source(folder)
    except UserError as error:
        return "error", str(error)


@contextlib.contextmanager
def cluster(resources: Resources) -> Iterator[Client]:
    """A client of the given scheduler, or of a new local cluster torn down on exit. On any
    exception (Ctrl-C included) a local cluster's workers are killed at once: their runs in
    flight are cancelled, to be trained again by the next command, not waited for."""
    if resources.scheduler is not None:
        with connect(resources.scheduler) as client:
            yield client
        return
    with contextlib.ExitStack() as stack:
        # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes torch's
        # many small allocations return memory to the OS all the time: measured 5.25 s per
        # reference epoch against 3.7 s without it (one thread, this 2-core machine).
        # The worker's statistical profiler samples the training thread every 10 ms, taking
        # the GIL from its Python loop; the dashboard loses its profile page, nothing else.
        stack.enter_context(
            dask.config.set(
                {
                    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                    "distributed.worker.profile.enabled": False,
                }
            )
        )
        with _ctrl_c_blocked():  # inherited by the workers and the thread that restarts them
            local = stack.enter_context(
                LocalCluster(
                    n_workers=resources.workers,
                    threads_per_worker=1,  # one task at a time per worker process
                    processes=True,
                    dashboard_address=":0",  # any free port: never "8787 is already in use"
                    silence_logs=logging.ERROR,
                )
            )
        client = stack.enter_context(Client(local))
        try:
            yield client
        except BaseException:
            _kill_workers(local)
            raise


@contextlib.contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while the block runs; a Ctrl-C that arrives meanwhile is
    delivered after it. Threads and processes started inside keep it blocked: a Ctrl-C in a
    terminal reaches the whole process group, and the workers are this process's to stop (no
    traceback from each of them, no race with the teardown)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _kill_workers(local: LocalCluster) -> None:
    """SIGKILL to every worker process of the local cluster, each nanny told first not to
    start a new one. Dask's own threads then log the broken connections as errors (a traceback
    each, before the command's one line): they are this kill's doing, so they are silenced."""
    logging.disable(logging.ERROR)  # the harness prints, never logs: only Dask is silenced
    for nanny in list(local.workers.values()):
        nanny.close_gracefully("interrupted")
        if nanny.pid:  # None: its process never started
            with contextlib.suppress(ProcessLookupError):  # gone already
                os.kill(nanny.pid, signal.SIGKILL)


def dashboard(client: Client) -> str | None:
    with contextlib.suppress(Exception):
        return client.dashboard_link if importlib.util.find_spec("bokeh") else None
    return None


def subscribe_epochs(client: Client, show: Callable[[str, int, int], None]) -> None:
    """Calls show(what, epoch, epochs) in this process for every epoch a worker finishes."""
    client.subscribe_topic(EPOCH_TOPIC, lambda event: show(*event[1]))


def report_epoch(what: str, epoch: int, epochs: int) -> None:
    """From inside a task: tells the client's progress bar (nothing outside a Dask worker)."""
    with contextlib.suppress(ValueError):  # not on a worker: serial runs show epochs directly
        get_worker().log_event(EPOCH_TOPIC, (what, epoch, epochs))


def worker_mnist(data_dir: str | None, threads: int) -> Mnist:
    """On a worker: its torch threads set, and MNIST loaded once per process and kept."""
    torch.set_num_threads(threads)
    key = str(resolve_data_dir(data_dir))
    if key not in _loaded:
        _loaded[key] = load_mnist(Path(key))
    return _loaded[key]


_loaded: dict[str, Mnist] = {}
