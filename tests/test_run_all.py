"""run_all.py and the search as a user runs them: the quick study on the small study's data,
interrupted, resumed, rerun for free and replicated; the searches' repeats; stacked trials; and
on real MNIST at full size, a resumed run_all that trains nothing."""

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from harness.core.store import RunStore
from harness.report.analysis import load_study_data
from tests.helpers import alive, as_a_background_job, dask_workers, seconds_to_exit


def _query(database: Path, sql: str) -> list[tuple]:
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
            return []


def test_quick_study_stops_mid_search_resumes_and_replicates(harness):
    """Ctrl-C during the search, run_all started as a background job (SIGINT ignored, as under
    CI): it stops without waiting for the trials in flight, and the trials its workers were
    running are failed at once, not left running; then it resumes, and --replicate trains the
    factorial again on a new seed and nothing else (that a plain rerun trains nothing is the
    real-MNIST test below)."""
    # the first trial (the reference, its 40 epochs) a second or more
    slow_trials = ("--search-epochs", "100", "--trials", "6", "--epochs", "40")
    first = harness.start(
        "run_all.py", "--quick", *slow_trials, start_new_session=True,
        preexec_fn=as_a_background_job,
    )  # fmt: skip
    database = harness.results / "quick" / "search.db"
    deadline, running = time.time() + 600, "SELECT number FROM trials WHERE state = 'RUNNING'"
    seen: set[tuple] = set()
    while not (just_started := set(_query(database, running)) - seen):  # its epochs all ahead
        assert first.poll() is None and time.time() < deadline, first.communicate()[1]
        seen |= set(_query(database, running))
        time.sleep(0.01)
    workers = dask_workers(first.pid)
    os.killpg(first.pid, signal.SIGINT)
    stopped_in, err = seconds_to_exit(first)
    assert first.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in err
    assert workers and not alive(workers), "orphaned workers"
    # not waited for: the trials in flight at the stop were failed, none left running (a load-
    # independent check; how many seconds a stop takes depends on what else the machine runs)
    states = dict(_query(database, "SELECT number, state FROM trials"))
    assert {states[number] for (number,) in just_started} == {"FAIL"}, (states, stopped_in)
    assert "RUNNING" not in states.values()
    assert not list((harness.results / "quick" / "runs").glob("*.json"))  # no grid yet

    second = harness.run("run_all.py", "--quick", *slow_trials)
    assert second.returncode == 0, second.stderr
    results = harness.results / "quick"
    records = RunStore(results).records()
    data = load_study_data(results)
    # the factorial's 8 cells on seed 0; the specs that are cells read off them, one at a time
    assert set(data.labels) == {"reference", "no_batchnorm", "no_dropout", "width_half", "tuned"}
    assert len(data.cell_runs()) == 8
    runs = {label: len(data.ok_runs(label)) for label in data.labels}
    assert runs == {label: 2 if label in ("tuned", "reference") else 1 for label in data.labels}
    assert all(config.epochs == 40 for config in data.plan.cells().values())
    # each distinct config stored once per seed (the tuned one may equal a cell's)
    configs = {arm.config.hash() for arm in data.plan.arms.values()}
    configs |= {config.hash() for config in data.plan.cells().values()}
    assert len({(r["config_hash"], r["seed"]) for r in records}) == len(records)
    assert {r["config_hash"] for r in records} == configs
    assert not (harness.results / "runs").exists()  # quick results kept apart
    reports = harness.reports / "quick"
    for page in [
        "README.md",
        "factorial.md",
        "factorial_effects.csv",
        "budgets.md",
        "plots/factorial_interactions.png",
        "plots/budget_curves.png",
        "ablations.md",
        "per_digit.md",
        "claims.md",
        "search.md",
        "variants/tuned.md",
    ]:
        assert (reports / page).exists(), page
    index = (reports / "README.md").read_text()
    # the answer first: each component's main effect and its effect in the reference recipe
    answer = index[index.index("## What each component is worth") : index.index("## One-at")]
    batchnorm = next(line for line in answer.splitlines() if line.startswith("| **batchnorm"))
    assert "| averaged over the others " in batchnorm and batchnorm.count("[") == 2
    assert answer.count("| in the reference recipe ") == 3
    assert "plots/answer.png" in answer and (reports / "plots" / "answer.png").exists()
    assert "plots/budget_curves.png" in answer and "settle:" in answer
    tuned_line = next(line for line in second.stdout.splitlines() if line.startswith("| tuned"))
    assert any(v in tuned_line for v in ("better", "worse", "equivalent", "inconclusive"))
    assert "report:" in second.stdout

    # the study again on new seeds: seed 2 (0 and 1 are used), reported beside the primary
    fourth = harness.run("run_all.py", "--quick", *slow_trials, "--replicate")
    assert fourth.returncode == 0, fourth.stderr
    plan = load_study_data(results).plan
    assert plan.replications == ((2,),) and plan.primary_seeds() == (0,)
    assert len(RunStore(results).records()) == len(records) + 8  # the cells on seed 2 only
    assert "**Replicated** on seeds 2 " in (reports / "README.md").read_text()


def test_repeated_searches_resume_and_never_train_a_trial_on_an_evaluation_seed(harness):
    """`harness.search --repeats`, small: two searches, then a third added by a rerun that
    searches and trains only what is new."""
    results = harness.results

    def search(repeats: int) -> str:
        args = ("--repeats", str(repeats), "--trials", "3", "--search-epochs", "2")
        done = harness.run("harness.search", *args, "--retrain-seeds", "2", "--workers", "1")
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
    trials = _query(
        results / "search.db",
        "SELECT s.study_name, a.value_json FROM trial_user_attributes a "
        "JOIN trials t USING (trial_id) JOIN studies s USING (study_id) WHERE a.key = 'seed'",
    )
    trial_seeds = {name: {int(seed) for n, seed in trials if n == name} for name, _ in trials}
    assert trial_seeds == {
        "mlp": {1_000_000},
        "mlp-repeat2": {1_001_000},
        "mlp-repeat3": {1_002_000},
    }
    assert len(trials) == 9 and evaluation_seeds == {0, 1}
    page = (harness.reports / "search.md").read_text()
    variance = page[page.index("## The search's own variance") :]
    assert all(f"| {label} " in variance for label in ("tuned", "tuned-repeat2", "tuned-repeat3"))
    assert "## Expected best validation accuracy by number of trials" in page

    # the study as reports/data keeps it, without its database, resumes without searching
    summaries = {path.name: path.read_text() for path in results.glob("tuned*.json")}
    (results / "search.db").rename(harness.root / "search.db")
    search(3)
    assert not (results / "search.db").exists()
    assert {path.name: path.read_text() for path in results.glob("tuned*.json")} == summaries
    assert len(RunStore(results).records()) == len(records)


def test_a_search_with_stacked_trials_runs_end_to_end(harness):
    """`harness.search --stack 3` on the CPU: three trials asked at once and stacked by shape
    (the GPU's path), then the tuned arm re-trained and its page written, as for the search
    one trial at a time."""
    args = ("--stack", "3", "--trials", "3", "--search-epochs", "2", "--retrain-seeds", "1")
    done = harness.run("harness.search", *args, "--workers", "1")
    assert done.returncode == 0, done.stderr
    states = [s for (s,) in _query(harness.results / "search.db", "SELECT state FROM trials")]
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}
    data = load_study_data(harness.results)
    assert data.labels == ["reference", "tuned"]
    assert {r["engine"] for r in RunStore(harness.results).records()} == {"cpu1t-stacked"}
    assert "tuned: best validation accuracy" in done.stdout
    assert "Trials were asked 3 at a time" in (harness.reports / "search.md").read_text()


@pytest.mark.slow
def test_on_real_mnist_at_full_size_a_resumed_run_all_trains_nothing(harness, real_files):
    """The reference network on the real data, one epoch: the search's stage alone (one
    trial, its choice and the reference re-trained on one seed), then the same command again,
    which trains nothing."""
    args = ("--only", "search", "--set", "epochs=1", "--trials", "1", "--search-epochs", "1")
    args += ("--retrain-seeds", "1", "--workers", "1", "--threads", "1")
    first = harness.run("run_all.py", *args, small=False)
    assert first.returncode == 0, first.stderr
    records = RunStore(harness.results).records()
    assert {r["data"] for r in records} == {"mnist"} and {r["seed"] for r in records} == {0, 1}
    assert all(r["metrics"]["test_accuracy"] > 0.9 for r in records)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (harness.results / "runs").glob("*.json")}
    started = time.perf_counter()
    again = harness.run("run_all.py", *args, small=False)
    assert again.returncode == 0, again.stderr
    assert time.perf_counter() - started < 90
    assert {p.name: p.stat().st_mtime_ns for p in (harness.results / "runs").glob("*.json")} == (
        mtimes
    )
