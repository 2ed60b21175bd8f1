"""Grid and search on a real Dask cluster started here: `dask scheduler` + two `dask worker`
processes on 127.0.0.1, one of them killed mid-grid."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import stored, wait_for_first_run

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=120)


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-threaded workers without nannies (a killed worker stays
    dead, so its task must move to the other one)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [*DASK, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"], **quiet
    )
    workers = [
        subprocess.Popen(
            [*WORKER, address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            **quiet,
        )
        for _ in range(2)
    ]
    try:
        _wait_for_workers(address, 2)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait(timeout=30)


def harness_command(tmp_path: Path, module: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", module, *args, "--results-dir", str(tmp_path / "results")]
    if module != "harness.report":
        command += ["--reports-dir", str(tmp_path / "reports")]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_grid_and_search_on_a_cluster_survive_a_killed_worker(tmp_path, real_mnist, dask_cluster):
    address, workers = dask_cluster
    grid = harness_command(
        tmp_path,
        "harness.ablate",
        "reference",
        "--seed-list",
        "0,1,2,3,4,5",
        "--epochs",
        "1",
        "--scheduler",
        address,
        "--threads",
        "1",
    )
    wait_for_first_run(tmp_path / "results" / "runs", grid)
    workers[0].send_signal(signal.SIGKILL)
    out, err = grid.communicate(timeout=600)
    assert grid.returncode == 0, err
    records = stored(tmp_path)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3, 4, 5]  # each exactly once
    assert all(r["status"] == "ok" and r["engine"] == "cpu1t" for r in records)

    # The search needs a storage every worker reaches; one machine here, so SQLite will do.
    database = tmp_path / "search.db"
    subprocess.Popen(
        [*WORKER, address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # a replacement, so that the search has two workers again (killed with the cluster)
    _wait_for_workers(address, 2)
    search = harness_command(
        tmp_path,
        "harness.search",
        "--trials",
        "4",
        "--epochs",
        "1",
        "--retrain-seeds",
        "0",
        "--workers",
        "2",
        "--scheduler",
        address,
        "--storage",
        f"sqlite:///{database}",
    )
    out, err = search.communicate(timeout=600)
    assert search.returncode == 0, err
    with sqlite3.connect(database) as db:
        states = db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    finished = [n for n, state in states if state in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4 and [n for n, _ in states] == list(range(len(states)))
    assert not [n for n, state in states if state == "FAIL"]
    summary = json.loads((tmp_path / "results" / "tuned.json").read_text())
    assert summary["counts"]["complete"] >= 1


def test_unreachable_scheduler_is_one_line_and_trains_nothing(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    process = harness_command(
        tmp_path, "harness.ablate", "reference", "--seeds", "1", "--scheduler", address
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Dask scheduler")
    assert address in lines[0]
    assert not list((tmp_path / "results").glob("runs/*.json"))
    assert time.perf_counter() - started < 60
