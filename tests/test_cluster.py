"""Grid and search on a real Dask cluster started here: `dask scheduler` + two `dask worker`
processes on 127.0.0.1, one of them killed mid-grid; the small study's data and recipe."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.helpers import stored, wait_for_a_new_run

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=120)


def _worker(address: str) -> subprocess.Popen:
    """A single-threaded worker without a nanny (a killed worker stays dead, so its task must
    move to the other one)."""
    return subprocess.Popen(
        [*WORKER, address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def dask_cluster(free_port):
    """A scheduler and two workers, killed after the test."""
    address = f"tcp://127.0.0.1:{free_port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [*DASK, "--host", "127.0.0.1", "--port", str(free_port), "--dashboard-address", ":0"],
        **quiet,
    )
    workers = [_worker(address) for _ in range(2)]
    try:
        _wait_for_workers(address, 2)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait(timeout=30)


def test_grid_and_search_on_a_cluster_survive_a_killed_worker(harness, dask_cluster):
    address, workers = dask_cluster
    grid = harness.start(
        "harness.ablate",
        "reference",
        "--seed-list",
        "0,1,2,3,4,5",
        "--set",
        "epochs=60",
        "--scheduler",
        address,
        "--threads",
        "1",
    )
    wait_for_a_new_run(harness.results / "runs", grid)
    workers[0].send_signal(signal.SIGKILL)
    _, err = grid.communicate(timeout=600)
    assert grid.returncode == 0, err
    records = stored(harness.results)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3, 4, 5]  # each exactly once
    assert all(r["status"] == "ok" and r["engine"] == "cpu1t" for r in records)

    # The search needs a storage every worker reaches; one machine here, so SQLite will do.
    database = harness.root / "search.db"
    workers.append(_worker(address))  # a replacement: the search has two workers again
    _wait_for_workers(address, 2)
    search = harness.start(
        "harness.search",
        "--trials",
        "4",
        "--search-epochs",
        "2",
        "--retrain-seeds",
        "0",
        "--workers",
        "2",
        "--scheduler",
        address,
        "--storage",
        f"sqlite:///{database}",
    )
    _, err = search.communicate(timeout=600)
    assert search.returncode == 0, err
    with sqlite3.connect(database) as db:
        states = db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    finished = [n for n, state in states if state in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4 and [n for n, _ in states] == list(range(len(states)))
    assert not [n for n, state in states if state == "FAIL"]
    summary = json.loads((harness.results / "tuned.json").read_text())
    assert summary["counts"]["complete"] >= 1


def test_unreachable_scheduler_is_one_line_and_trains_nothing(harness, free_port, one_line_error):
    address = f"tcp://127.0.0.1:{free_port}"
    started = time.perf_counter()
    line = one_line_error(
        "-m",
        "harness.ablate",
        "reference",
        "--seeds",
        "1",
        "--scheduler",
        address,
        "--results-dir",
        str(harness.results),
        "--reports-dir",
        str(harness.reports),
    )
    assert line.startswith("error: --scheduler: cannot reach the Dask scheduler")
    assert address in line
    assert not list(harness.results.glob("runs/*.json"))
    assert time.perf_counter() - started < 60
