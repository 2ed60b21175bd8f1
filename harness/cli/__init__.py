"""What every command shares: the common options, one-line errors naming the option, exit codes,
Ctrl-C. A library error names the setting it is about (UserError.setting); its option is the
setting's name with dashes."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from harness import UserError
from harness.command import stop, stop_on_signals
from harness.core.config import Config, load_config
from harness.core.data import resolve_data_dir
from harness.core.store import resolve_results_dir
from harness.study.executor import (
    SCHEDULER_ENV,
    Resources,
    WorkerLost,
    default_threads,
    resolve_scheduler,
)
from harness.study.specs import SPECS_DIR_ENV, resolve_specs_dir

__all__ = ["UserError", "add_common_args", "guard"]


def option(setting: str) -> str:
    """The command-line option of a settings field: seed_list is --seed-list."""
    return "--" + setting.replace("_", "-")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="folder holding MNIST/raw/*.gz (default: $HARNESS_DATA_DIR, else ./data)"
    )
    parser.add_argument(
        "--results-dir",
        help="where runs are stored (default: $HARNESS_RESULTS_DIR, else ./results)",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default="cpu",
        help="cpu is the reference; auto picks cuda when available",
    )


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """The options that say what the reference recipe and its ablations are: another folder of
    specs, and changes to the reference that every spec and cell builds on."""
    parser.add_argument(
        "--specs-dir",
        help=f"folder of ablation specs, factorials/ inside it (default: ${SPECS_DIR_ENV}, else "
        "the project's ablations/)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the reference recipe that every spec and cell builds on, VALUE in TOML "
        "syntax (repeatable; e.g. --set hidden_widths=[64,32] --set dropout=[0.2,0.0])",
    )


def specs_dir(args: argparse.Namespace) -> Path:
    return resolve_specs_dir(args.specs_dir)


def base_config(args: argparse.Namespace) -> Config:
    """The reference recipe with the command's --set changes."""
    return load_config(None, args.set)


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """The options that say where runs train: local Dask workers and their threads, a running
    scheduler, or stacks of seeds on one device."""
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="Dask worker processes on this machine (default: one per core; 1: no Dask)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads per run (default: cores divided among the workers)",
    )
    parser.add_argument(
        "--scheduler",
        help=f"address of a running Dask scheduler, e.g. tcp://HOST:8786 (default: "
        f"${SCHEDULER_ENV}, else a local cluster of --workers processes)",
    )
    parser.add_argument(
        "--stack",
        type=non_negative_int,
        help="train each arm's seeds K at a time as one stacked model, and ask the search's "
        "trials K at a time, stacked by shape (0: as many seeds as the GPU holds, trials 256 a "
        "round; default: 0 on --device cuda, else 1 = one run at a time)",
    )


def resources(args: argparse.Namespace) -> Resources:
    """The command line's choice of workers, threads, scheduler, data folder and device."""
    scheduler = resolve_scheduler(args.scheduler)
    threads = args.threads or (1 if scheduler else default_threads(args.workers))
    stack = args.stack if args.stack is not None else (0 if args.device == "cuda" else 1)
    workers = args.workers if scheduler else memory_capped(args.workers)
    return Resources(workers, threads, scheduler, args.data_dir, args.device, stack)


# Peak resident memory of one training process: 1.2 GB measured for width_double (1024/512/256,
# one thread, MNIST in memory) on this project's machine; with room to spare.
WORKER_MEMORY = 1.5 * 2**30


def memory_capped(workers: int) -> int:
    """At most as many local workers as the available memory holds, said in one line."""
    available = psutil.virtual_memory().available
    fits = max(1, int(available // WORKER_MEMORY))
    if workers <= fits:
        return workers
    print(
        f"--workers {workers}: {fits} fit in the available memory ({available / 2**30:.1f} GiB "
        f"at {WORKER_MEMORY / 2**30:.1f} GiB each), so at most {fits} start (no more than there "
        "are runs to train)",
        file=sys.stderr,
    )
    return fits


def comma_separated(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """An argparse type: comma-separated values, each of the given kind."""

    def parse(value: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {value!r}")
        return tuple(kind(part) for part in parts)

    return parse


def positive_int(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value: str) -> int:
    if not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {value!r}")
    return int(value)


def data_dir(args: argparse.Namespace) -> Path:
    return resolve_data_dir(args.data_dir)


def results_dir(args: argparse.Namespace) -> Path:
    return resolve_results_dir(args.results_dir)


def finish(
    results_dir: Path, reports_dir: Path, labels: list[str] | None = None, diverged_now: int = 0
) -> int:
    """A command's ending: its verdicts and reports (harness.report.build.finish). Imported here,
    not at the start: matplotlib and statsmodels take over a second to import, which a command
    refused for its input should not wait for."""
    from harness.report import build

    return build.finish(results_dir, reports_dir, labels, diverged_now)


def existing_file(value: str) -> Path:
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return Path(value)


def allow_many_open_files() -> None:
    """A grid holds one lock file open per pending run: the soft limit on open files (often
    1,024) goes up to the hard one, so that a study of thousands of runs does not fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def guard(main: Callable[[], int]) -> int:
    """Runs a command's main: bad input is one line on stderr and exit 2, a worker that died
    exit 3, Ctrl-C exit 130 and SIGTERM exit 143, each after one line (harness.command.stop)."""
    stop_on_signals()
    allow_many_open_files()
    try:
        return main()
    except WorkerLost as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except UserError as error:
        where = f"{option(error.setting)}: " if error.setting else ""
        print(f"error: {where}{error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        stop(interrupt)
