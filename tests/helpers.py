"""Helpers the test modules share: commands as subprocesses, their workers, their records."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.store import RunStore

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def metrics_only(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timings and environment, which legitimately differ run to run."""
    history = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in record["history"]]
    return {
        **{k: record[k] for k in ("metrics", "per_digit_accuracy", "confusion_matrix")},
        "history": history,
    }


def ablate(tmp_path: Path, *args: str, **popen: Any) -> subprocess.Popen:
    """`python -m harness.ablate ARGS` with results and reports under tmp_path."""
    command = [
        sys.executable,
        "-m",
        "harness.ablate",
        *args,
        "--results-dir",
        str(tmp_path / "results"),
        "--reports-dir",
        str(tmp_path / "reports"),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def stored(tmp_path: Path) -> list[dict[str, Any]]:
    return RunStore(tmp_path / "results").records()


def as_a_background_job() -> None:
    """preexec_fn: start the command as a script's `cmd &` does, with SIGINT ignored (so CI
    runners start their jobs); the command must stop on Ctrl-C all the same."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def dask_workers(pid: int) -> list[int]:
    """The worker processes a local Dask cluster spawned from the given process."""
    return [
        child
        for child in _children(pid)
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
    ]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def wait_for_first_run(runs: Path, process: subprocess.Popen) -> None:
    """Until the first run record appears in the runs folder, while the process lives."""
    deadline = time.time() + 600
    while not list(runs.glob("*.json")):
        if process.poll() is not None or time.time() > deadline:
            _, err = process.communicate(timeout=60)
            raise AssertionError(f"no run finished (exit {process.returncode}):\n{err}")
        time.sleep(0.2)


def seconds_to_exit(process: subprocess.Popen, timeout: float = 600) -> tuple[float, str]:
    """How long the process takes to exit from now, and its stderr."""
    started = time.perf_counter()
    _, err = process.communicate(timeout=timeout)
    return time.perf_counter() - started, err
