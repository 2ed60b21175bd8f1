"""The search on tiny synthetic data; the distributed case against a real PostgreSQL server."""

import dataclasses
import glob
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from harness.study.search import (
    SearchSummary,
    finished_count,
    open_study,
    optimize,
    summarize,
)
from tests.helpers import SEARCH_BASE as BASE
from tests.helpers import search_split as tiny_split


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'search.db'}"


def test_tiny_search_completes_and_continues(tmp_path):
    data = tiny_split()
    study = open_study("tiny", sqlite(tmp_path), 0, 2)
    optimize(study, data, BASE, trials=3, search_epochs=2, seed=0)
    assert finished_count(study) == 3
    assert all(0 <= t.value <= 1 for t in study.get_trials(states=(TrialState.COMPLETE,)))

    again = open_study("tiny", sqlite(tmp_path), 0, 2)  # the same command, more trials
    optimize(again, data, BASE, trials=5, search_epochs=2, seed=0)
    assert finished_count(again) == 5 and len(again.trials) == 5
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]

    summary = summarize(again, sqlite(tmp_path), 0)  # what the report reads
    assert summary.best_value == again.best_value
    assert summary.finished == 5 and len(summary.trials) == 5
    assert 0 < summary.wall_seconds < 600
    assert summary.config.val_size == BASE.val_size
    assert SearchSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary


@pytest.mark.filterwarnings("ignore:Fixed parameter lr")  # the absurd lr is on purpose
def test_bad_trial_is_pruned_and_diverging_trial_does_not_stop_the_study(tmp_path):
    data = tiny_split()
    study = open_study("prune", sqlite(tmp_path), 0, 5)
    # Five finished trials that were perfect at every epoch, reported through the pruner so that
    # it keeps its own books: a worse trial is not in the best third at the first rung.
    for _ in range(5):
        perfect = study.ask()
        for epoch in range(1, 6):
            perfect.report(1.0, epoch)
            assert not perfect.should_prune()
        study.tell(perfect, 1.0)
    # A deliberately poor trial (lowest learning rate, heaviest dropout, no BatchNorm), then one
    # with an absurd learning rate that diverges, then an ordinary one.
    poor = {
        "width": 512,
        "use_weight_decay": False,
        "batchnorm": False,
        "dropout_1": 0.5,
        "dropout_2": 0.5,
        "dropout_3": 0.3,
        "lr": 3e-4,
        "batch_size": 256,
        "scheduler_factor": 0.5,
        "scheduler_patience": 1,
        "epochs": 5,
        "shift": 0,
    }
    study.enqueue_trial(poor)
    study.enqueue_trial({**poor, "batchnorm": True, "dropout_1": 0.0, "lr": 1e30})
    optimize(study, data, BASE, trials=8, search_epochs=5, seed=0)

    poor_trial, diverged, *rest = study.trials[5:]
    assert poor_trial.state == TrialState.PRUNED
    assert diverged.state == TrialState.PRUNED
    assert diverged.user_attrs["failure"] == "diverged at epoch 1"
    assert len(rest) == 1 and rest[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert finished_count(study) == 8


# ---------------------------------------------------------------- PostgreSQL


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@pytest.fixture
def postgres_url(free_port):
    """A throwaway PostgreSQL server on 127.0.0.1, started for these tests and stopped after."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    bin_dir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port
    try:
        subprocess.run(
            _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "harness", "--auth=trust"),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _as_postgres(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(root / "log"),
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                "start",
            ),
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not be started: {error}")
    try:
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "harness",
                "optuna",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://harness@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _search_worker(url: str, trials: int) -> None:
    study = open_study("shared", url, os.getpid(), 2)
    optimize(study, tiny_split(), BASE, trials=trials, search_epochs=2, seed=0)


@pytest.mark.postgres
def test_two_workers_share_one_study_over_postgresql(postgres_url):
    open_study("shared", postgres_url, 0, 2)  # created once, before the workers race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_search_worker, args=(postgres_url, 8)) for _ in range(2)]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))  # none lost, none duplicated
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # MaxTrialsCallback stops both once 8 are finished; the other's trial in flight completes.
    assert 8 <= len(finished) == len(trials) <= 9
    starts = sorted(t.datetime_start for t in trials)
    assert starts[-1].timestamp() - started < 300


def test_a_new_study_starts_from_the_reference(tmp_path):
    study = open_study("anchored", sqlite(tmp_path), 0, 2)
    optimize(study, tiny_split(), BASE, trials=1, search_epochs=2, seed=0)
    first = study.trials[0]
    assert first.user_attrs["config"] == dataclasses.replace(BASE, epochs=2).to_dict()
