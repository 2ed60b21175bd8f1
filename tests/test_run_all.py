"""run_all.py --quick end to end on real MNIST: interrupted, resumed, then rerun for free."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.store import RunStore
from harness.report.analysis import load_study_data
from harness.study.specs import spec_names
from tests.helpers import (
    PROJECT_ROOT,
    alive,
    as_a_background_job,
    dask_workers,
    seconds_to_exit,
)

pytestmark = pytest.mark.slow


def run_all(tmp_path: Path, extra: tuple[str, ...] = (), **popen) -> subprocess.Popen:
    command = [
        sys.executable,
        "run_all.py",
        "--quick",
        "--results-dir",
        str(tmp_path / "results"),
        "--reports-dir",
        str(tmp_path / "reports"),
        *extra,
    ]
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished_trials(database: Path) -> list[float]:
    """Seconds each finished (complete or pruned) trial of the search took, read from its
    SQLite storage while the search writes to it."""
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute(
                "SELECT julianday(datetime_complete) - julianday(datetime_start) FROM trials "
                "WHERE state IN ('COMPLETE', 'PRUNED')"
            ).fetchall()
        except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
            return []
    return [days * 86400 for (days,) in rows]


def test_quick_study_stops_mid_search_resumes_and_reruns_in_seconds(tmp_path, real_mnist):
    """Ctrl-C during the search, run_all started as a background job (SIGINT ignored, as under
    CI): it stops without waiting for the trials in flight, then resumes."""
    first = run_all(tmp_path, start_new_session=True, preexec_fn=as_a_background_job)
    database = tmp_path / "results" / "quick" / "search.db"
    deadline = time.time() + 600
    while not (trials := finished_trials(database)):
        assert first.poll() is None and time.time() < deadline, first.communicate()[1]
        time.sleep(0.5)
    workers = dask_workers(first.pid)
    os.killpg(first.pid, signal.SIGINT)
    stopped_in, err = seconds_to_exit(first)
    assert first.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    assert workers and not alive(workers), "orphaned workers"
    assert stopped_in < max(trials), (
        f"stopped in {stopped_in:.1f} s, a trial takes {max(trials):.1f} s"
    )
    assert not list((tmp_path / "results" / "quick" / "runs").glob("*.json"))  # no grid yet

    second = run_all(tmp_path)
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err
    store = RunStore(tmp_path / "results" / "quick")
    records = store.records()
    data = load_study_data(tmp_path / "results" / "quick")
    # the factorial's 32 cells on seed 0; the specs that are cells read off them, one at a time
    assert set(data.labels) == {*spec_names()} - {"width_double"} | {"tuned"}
    assert len(data.cell_runs()) == 32
    runs = {label: len(data.ok_runs(label)) for label in data.labels}
    assert runs == {label: 2 if label in ("tuned", "reference") else 1 for label in data.labels}
    assert all(config.epochs == 2 for config in data.plan.cells().values())
    # each distinct config stored once per seed (the tuned one may equal a cell's)
    configs = {arm.config.hash() for arm in data.plan.arms.values()}
    configs |= {config.hash() for config in data.plan.cells().values()}
    assert len({(r["config_hash"], r["seed"]) for r in records}) == len(records)
    assert {r["config_hash"] for r in records} == configs
    assert not (tmp_path / "results" / "runs").exists()  # quick results kept apart
    reports = tmp_path / "reports" / "quick"
    for page in [
        "README.md",
        "factorial.md",
        "factorial_effects.csv",
        "plots/factorial_interactions.png",
        "ablations.md",
        "per_digit.md",
        "claims.md",
        "search.md",
        "variants/tuned.md",
    ]:
        assert (reports / page).exists(), page
    index = (reports / "README.md").read_text()
    assert index.index("## The factorial") < index.index(
        "## One-at-a-time verdicts"
    )  # the factorial first
    assert "| batchnorm: on → off" in index
    tuned_line = next(line for line in out.splitlines() if line.startswith("| tuned"))
    assert any(v in tuned_line for v in ("better", "worse", "equivalent", "inconclusive"))
    assert "report:" in out

    started = time.perf_counter()
    third = run_all(tmp_path)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert time.perf_counter() - started < 90
    assert len(store.records()) == len(records)

    # the study again on new seeds: seed 2 (0 and 1 are used), reported beside the primary
    fourth = run_all(tmp_path, extra=["--replicate"])
    _, err = fourth.communicate(timeout=600)
    assert fourth.returncode == 0, err
    plan = load_study_data(tmp_path / "results" / "quick").plan
    assert plan.replications == ((2,),) and plan.primary_seeds() == (0,)
    assert len(store.records()) == len(records) + 32  # the cells on seed 2, nothing else
    assert "### Replication on seeds 2" in (reports / "README.md").read_text()


def test_repeated_searches_resume_and_never_train_a_trial_on_an_evaluation_seed(
    tmp_path, real_files
):
    """`harness.search --repeats`, small: two searches, then a third added by a rerun that
    searches and trains only what is new."""
    results, reports = tmp_path / "results", tmp_path / "reports"

    def search(repeats: int) -> str:
        command = [sys.executable, "-m", "harness.search", "--repeats", str(repeats)]
        command += ["--trials", "3", "--epochs", "1", "--retrain-seeds", "2", "--workers", "1"]
        command += ["--results-dir", str(results), "--reports-dir", str(reports)]
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    search(2)
    first_records = {path.name: path.stat().st_mtime_ns for path in results.glob("runs/*.json")}
    out = search(3)
    assert "tuned-repeat3: best validation accuracy" in out
    records = RunStore(results).records()
    assert {path.name for path in results.glob("runs/*.json")} >= set(first_records)
    assert all(  # nothing trained twice: the first command's runs are untouched
        (results / "runs" / name).stat().st_mtime_ns == mtime
        for name, mtime in first_records.items()
    )
    data = load_study_data(results)  # a choice may be the reference's config: runs shared
    labels = ["reference", "tuned", "tuned-repeat2", "tuned-repeat3"]
    assert data.labels == labels and all(len(data.ok_runs(label)) == 2 for label in labels)
    evaluation_seeds = {r["seed"] for r in records}
    with contextlib.closing(sqlite3.connect(results / "search.db")) as db:
        trials = db.execute(
            "SELECT s.study_name, a.value_json FROM trial_user_attributes a "
            "JOIN trials t USING (trial_id) JOIN studies s USING (study_id) WHERE a.key = 'seed'"
        ).fetchall()
    trial_seeds = {name: {int(seed) for n, seed in trials if n == name} for name, _ in trials}
    assert trial_seeds == {
        "mlp": {1_000_000},
        "mlp-repeat2": {1_001_000},
        "mlp-repeat3": {1_002_000},
    }
    assert len(trials) == 9 and evaluation_seeds == {0, 1}
    page = (reports / "search.md").read_text()
    variance = page[page.index("## The search's own variance") :]
    assert all(f"| {label} " in variance for label in ("tuned", "tuned-repeat2", "tuned-repeat3"))
    assert "## Expected best validation accuracy by number of trials" in page

    # the study as reports/data keeps it, without its database, resumes without searching
    summaries = {path.name: path.read_text() for path in results.glob("tuned*.json")}
    (results / "search.db").rename(tmp_path / "search.db")
    search(3)
    assert not (results / "search.db").exists()
    assert {path.name: path.read_text() for path in results.glob("tuned*.json")} == summaries
    assert len(RunStore(results).records()) == len(records)


def test_a_search_with_stacked_trials_runs_end_to_end(tmp_path, real_files):
    """`harness.search --stack 3` on the CPU: three trials asked at once and stacked by shape
    (the GPU's path), then the tuned arm re-trained and its page written, as for the search
    one trial at a time."""
    results, reports = tmp_path / "results", tmp_path / "reports"
    command = [sys.executable, "-m", "harness.search", "--stack", "3", "--trials", "3"]
    command += ["--epochs", "1", "--retrain-seeds", "1", "--workers", "1"]
    command += ["--results-dir", str(results), "--reports-dir", str(reports)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with contextlib.closing(sqlite3.connect(results / "search.db")) as db:
        states = [state for (state,) in db.execute("SELECT state FROM trials")]
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}
    data = load_study_data(results)
    assert data.labels == ["reference", "tuned"]
    assert {r["engine"] for r in RunStore(results).records()} == {"cpu2t-stacked"}
    assert "tuned: best validation accuracy" in done.stdout
    assert "Trials were asked 3 at a time" in (reports / "search.md").read_text()
