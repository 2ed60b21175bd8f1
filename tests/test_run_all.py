"""run_all.py --quick end to end on real MNIST: interrupted, resumed, then rerun for free."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.analysis import load_study_data
from harness.specs import spec_names
from harness.store import RunStore
from tests.test_ablate import wait_for_first_run

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def run_all(tmp_path: Path, **popen) -> subprocess.Popen:
    command = [
        sys.executable,
        "run_all.py",
        "--quick",
        "--results-dir",
        str(tmp_path / "results"),
        "--reports-dir",
        str(tmp_path / "reports"),
    ]
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_quick_study_resumes_after_interruption_and_reruns_in_seconds(tmp_path, real_mnist):
    first = run_all(tmp_path, start_new_session=True)
    wait_for_first_run(tmp_path / "results" / "quick" / "runs", first)
    os.killpg(first.pid, signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err

    second = run_all(tmp_path)
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err
    store = RunStore(tmp_path / "results" / "quick")
    records = store.records()
    assert {r["label"] for r in records} >= set(spec_names())
    data = load_study_data(tmp_path / "results" / "quick")
    assert set(data.labels) == {*spec_names(), "tuned"}
    assert all(len(data.ok_runs(label)) == 2 for label in data.labels)  # tuned included
    assert all(arm.config.epochs == 2 for arm in data.plan.arms.values() if arm.label != "tuned")
    # each distinct config stored once per seed (the tuned one may equal a variant's)
    configs = {arm.config.hash() for arm in data.plan.arms.values()}
    assert len({(r["config_hash"], r["seed"]) for r in records}) == len(records)
    assert {r["config_hash"] for r in records} == configs
    assert not (tmp_path / "results" / "runs").exists()  # quick results kept apart
    reports = tmp_path / "reports" / "quick"
    for page in [
        "README.md",
        "ablations.md",
        "per_digit.md",
        "claims.md",
        "search.md",
        "variants/tuned.md",
    ]:
        assert (reports / page).exists(), page
    tuned_line = next(line for line in out.splitlines() if line.startswith("| tuned"))
    assert any(v in tuned_line for v in ("better", "worse", "equivalent", "inconclusive"))
    assert "report:" in out

    started = time.perf_counter()
    third = run_all(tmp_path)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert time.perf_counter() - started < 90
    assert len(store.records()) == len(records)
