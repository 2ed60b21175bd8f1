"""The ablation runner on real MNIST: smoke, resume after interruption, workers = serial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.config import Config
from harness.core.store import RunStore
from harness.study.executor import Resources
from harness.study.grid import run_tasks
from harness.study.plan import Task
from tests.helpers import (
    ablate,
    alive,
    as_a_background_job,
    dask_workers,
    metrics_only,
    seconds_to_exit,
    stored,
    wait_for_first_run,
)

pytestmark = pytest.mark.slow
TINY_REAL = Config(hidden_widths=(32, 16), dropout=(0.1, 0.0), epochs=1)


def test_two_specs_two_seeds_one_epoch_then_rerun_trains_nothing(tmp_path, real_mnist):
    process = ablate(tmp_path, "no_dropout", "width_half", "--seeds", "2", "--epochs", "1")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    records = stored(tmp_path)
    assert sorted((r["label"], r["seed"]) for r in records) == [
        ("no_dropout", 0),
        ("no_dropout", 1),
        ("reference", 0),
        ("reference", 1),
        ("width_half", 0),
        ("width_half", 1),
    ]
    assert all(r["metrics"]["test_accuracy"] > 0.9 for r in records)
    verdicts = [line for line in out.splitlines() if line.startswith("| no_dropout")]
    assert verdicts and any(v in verdicts[0] for v in ("better", "worse", "equiv", "inconclus"))
    assert (tmp_path / "reports" / "variants" / "width_half.md").exists()
    # the saved plan, not today's specs and flags, says what the study is: a plain report
    # (no --epochs) reports these 1-epoch runs
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.report",
            "--results-dir",
            str(tmp_path / "results"),
            "--out",
            str(tmp_path / "again"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "again" / "variants" / "width_half.md").exists()
    index = (tmp_path / "again" / "README.md").read_text().splitlines()
    assert any(line.startswith("| width_half") and "| 2 " in line for line in index)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "runs").iterdir()}

    started = time.perf_counter()
    rerun = ablate(tmp_path, "no_dropout", "width_half", "--seeds", "2", "--epochs", "1")
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert time.perf_counter() - started < 60  # imports and reports only, no training
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "runs").iterdir()}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_grid_at_once_and_a_rerun_trains_only_what_is_missing(
    tmp_path, real_mnist, signum, code
):
    """Ctrl-C or SIGTERM mid-grid, the command started as a background job (SIGINT ignored, as
    under CI): it stops without waiting for the runs in flight, which would take about as long
    as a run; the loaded machine slows both alike."""
    args = ("reference", "--seed-list", "0,1,2,3", "--epochs", "3", "--workers", "2")
    process = ablate(tmp_path, *args, start_new_session=True, preexec_fn=as_a_background_job)
    wait_for_first_run(tmp_path / "results" / "runs", process)
    workers = dask_workers(process.pid)
    os.killpg(process.pid, signum)
    stopped_in, err = seconds_to_exit(process)
    assert process.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    assert not alive(workers), "orphaned workers"
    finished_before = stored(tmp_path)
    assert 1 <= len(finished_before) < 4
    run_seconds = min(r["total_seconds"] for r in finished_before)
    assert stopped_in < run_seconds / 2, (
        f"stopped in {stopped_in:.1f} s, a run takes {run_seconds:.1f} s"
    )

    rerun = ablate(tmp_path, *args)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    records = stored(tmp_path)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3]  # each exactly once
    files = list((tmp_path / "results" / "runs").glob("*.json"))
    assert len(files) == 4 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
    assert not list((tmp_path / "results" / "runs").glob("*.lock"))


def test_killed_worker_is_retried_and_every_run_is_stored_once(tmp_path, real_mnist):
    args = ("reference", "--seed-list", "0,1,2,3,4,5", "--epochs", "1", "--workers", "2")
    process = ablate(tmp_path, *args)
    wait_for_first_run(tmp_path / "results" / "runs", process)
    os.kill(dask_workers(process.pid)[-1], signal.SIGKILL)  # mid-run: its task moves on
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    records = stored(tmp_path)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3, 4, 5]  # each exactly once
    assert all(r["status"] == "ok" for r in records)


def test_killed_client_leaves_no_orphans_and_a_rerun_resumes(tmp_path, real_mnist):
    args = ("reference", "--seed-list", "0,1,2,3", "--epochs", "1", "--workers", "2")
    process = ablate(tmp_path, *args)
    wait_for_first_run(tmp_path / "results" / "runs", process)
    workers = dask_workers(process.pid)
    assert len(workers) == 2
    process.kill()
    process.communicate(timeout=60)
    deadline = time.time() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.time() < deadline, "workers outlived their killed client"
        time.sleep(0.5)
    rerun = ablate(tmp_path, *args)  # the dead client's locks are stale, not a reason to skip
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert sorted(r["seed"] for r in stored(tmp_path)) == [0, 1, 2, 3]


def test_two_workers_give_the_same_numbers_as_serial(tmp_path, real_mnist):
    tasks = [Task("tiny", TINY_REAL, seed) for seed in (0, 1)]
    serial = run_tasks(tasks, RunStore(tmp_path / "serial"), Resources(workers=1, threads=1))
    parallel = run_tasks(tasks, RunStore(tmp_path / "parallel"), Resources(workers=2, threads=1))
    by_seed = {r["seed"]: r for r in parallel}
    for record in serial:
        twin = by_seed[record["seed"]]
        assert record["environment"]["threads"] == twin["environment"]["threads"] == 1
        assert metrics_only(record) == metrics_only(twin)


def test_stacked_grid_stores_one_record_per_seed_and_resumes(tmp_path, real_mnist):
    args = ("width_half", "--seed-list", "0,1,2", "--epochs", "1", "--workers", "1")
    process = ablate(tmp_path, *args, "--stack", "3", "--threads", "1")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    records = stored(tmp_path)
    assert sorted((r["label"], r["seed"]) for r in records) == [
        (label, seed) for label in ("reference", "width_half") for seed in (0, 1, 2)
    ]
    assert {(r["engine"], r["stack_size"]) for r in records} == {("cpu1t-stacked", 3)}
    assert all(r["metrics"]["test_accuracy"] > 0.9 for r in records)
    rerun = ablate(tmp_path, *args, "--stack", "3", "--threads", "1")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert len(stored(tmp_path)) == 6  # nothing trained again


def test_until_decided_runs_a_pilot_then_the_planned_seeds_and_reruns_train_nothing(
    tmp_path, real_mnist
):
    args = ("width_half", "--until-decided", "--pilot-seeds", "2", "--max-seeds", "3")
    process = ablate(tmp_path, *args, "--epochs", "1")
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    plan = json.loads((tmp_path / "results" / "plan.json").read_text())
    assert plan["design"] == {"pilot_seeds": 2, "max_seeds": 3, "pooled": False}
    seeds = {arm["label"]: arm["seeds"] for arm in plan["arms"]}
    assert seeds["width_half"] in ([0, 1], [0, 1, 2])  # from the pilot's spread, capped at 3
    assert seeds["reference"] == seeds["width_half"]
    assert sorted((r["label"], r["seed"]) for r in stored(tmp_path)) == sorted(
        (label, s) for label in ("reference", "width_half") for s in seeds[label]
    )
    assert "Stein" in (tmp_path / "reports" / "README.md").read_text()
    rerun = ablate(tmp_path, *args, "--epochs", "1")
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and len(stored(tmp_path)) == 2 * len(seeds["width_half"])


def test_retune_gives_each_arm_its_own_learning_rate_and_both_verdicts_then_resumes(
    tmp_path, real_mnist
):
    args = ("no_batchnorm", "--retune", "lr", "--retune-trials", "3", "--seeds", "2")
    args += ("--epochs", "1", "--workers", "1")
    process = ablate(tmp_path, *args)
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    chosen = json.loads((tmp_path / "results" / "retuned.json").read_text())
    assert set(chosen) == {"reference", "no_batchnorm"}
    assert all(c["trials"] == 3 and set(c["values"]) == {"lr"} for c in chosen.values())
    runs = {(r["config"]["lr"], r["config"]["batchnorm"], r["seed"]) for r in stored(tmp_path)}
    for label, batchnorm in (("reference", True), ("no_batchnorm", False)):
        lr = chosen[label]["values"]["lr"]
        assert {(lr, batchnorm, 0), (lr, batchnorm, 1), (1e-3, batchnorm, 0)} <= runs
    assert any(line.startswith("| no_batchnorm-retuned ") for line in out.splitlines())
    index = (tmp_path / "reports" / "README.md").read_text()
    section = index[index.index("### At each arm's own settings (--retune)") :]
    row = next(line for line in section.splitlines() if line.startswith("| no_batchnorm "))
    assert f"lr {chosen['no_batchnorm']['values']['lr']:.3g}" in row
    assert row.count("[") == 2  # the verdict at the reference's lr, and at its own
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "runs").iterdir()}

    rerun = ablate(tmp_path, *args)
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "runs").iterdir()}
    assert json.loads((tmp_path / "results" / "retuned.json").read_text()) == chosen
