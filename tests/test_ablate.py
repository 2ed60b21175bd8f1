"""The ablation runner's plumbing, as a user runs it, on the small study (an IDX set, its specs,
a shrunk recipe): reruns that train nothing, Ctrl-C, SIGTERM and kill -9, killed workers,
stacks, seeds until decided, --retune, and a study copied to a machine of another platform."""

import json
import os
import signal
import time

from harness.cli import ablate
from harness.core import store as store_module
from harness.core.config import load_config
from harness.core.store import RunKey, RunStore
from harness.study.executor import Resources
from harness.study.grid import run_conditions, train_tasks
from harness.study.plan import Task, load_plan
from tests.helpers import (
    SMALL_SET,
    TINY,
    alive,
    as_a_background_job,
    dask_workers,
    metrics_only,
    seconds_to_exit,
    stored,
    wait_for_a_new_run,
)

LONG_RUNS = ("--set", "epochs=150")  # runs of a few seconds, long enough to stop mid-run


def test_two_specs_two_seeds_then_a_plain_report_and_a_rerun_that_trains_nothing(harness):
    args = ("no_dropout", "width_half", "--seeds", "2", "--workers", "1")  # Dask: the tests below
    done = harness.run("harness.ablate", *args)
    assert done.returncode == 0, done.stderr
    records = stored(harness.results)
    assert sorted((r["label"], r["seed"]) for r in records) == [
        ("no_dropout", 0),
        ("no_dropout", 1),
        ("reference", 0),
        ("reference", 1),
        ("width_half", 0),
        ("width_half", 1),
    ]
    assert all(r["metrics"]["test_accuracy"] > 0.3 for r in records)  # learned: chance is 0.1
    assert {r["data"] for r in records} == {"idx-" + records[0]["data"][4:]}  # the IDX set's
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("| no_dropout")]
    assert verdicts and any(v in verdicts[0] for v in ("better", "worse", "equiv", "inconclus"))
    assert (harness.reports / "variants" / "width_half.md").exists()
    # the saved plan, not today's specs and flags, says what the study is: a plain report
    # (no --set, no --specs-dir) reports these runs
    again = harness.root / "again"
    report = harness.run("harness.report", small=False)
    assert report.returncode == 0, report.stderr
    harness.reports.rename(again)
    index = (again / "README.md").read_text().splitlines()
    assert any(line.startswith("| width_half") and "| 2 " in line for line in index)
    mtimes = {p: p.stat().st_mtime_ns for p in (harness.results / "runs").iterdir()}

    started = time.perf_counter()
    rerun = harness.run("harness.ablate", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert time.perf_counter() - started < 60  # imports and reports only, no training
    assert mtimes == {p: p.stat().st_mtime_ns for p in (harness.results / "runs").iterdir()}


def test_ctrl_c_sigterm_and_a_killed_client_stop_the_grid_and_a_rerun_trains_what_is_missing(
    harness,
):
    """One grid stopped three ways, each time once a run of its own has finished. Ctrl-C and
    SIGTERM, the command started as a background job (SIGINT ignored, as under CI): it stops
    without waiting for the runs in flight, which would take about as long as a run (the loaded
    machine slows both alike). kill -9 of the command alone: its workers do not outlive it, and
    its locks are stale to the rerun, which trains only what is missing, each run once."""
    args = ("reference", "--seed-list", "0,1,2,3,4,5,6,7", *LONG_RUNS, "--workers", "2")
    runs = harness.results / "runs"
    for signum, code in [(signal.SIGINT, 130), (signal.SIGTERM, 143)]:
        process = harness.start(
            "harness.ablate", *args, start_new_session=True, preexec_fn=as_a_background_job
        )
        wait_for_a_new_run(runs, process)
        workers = dask_workers(process.pid)
        os.killpg(process.pid, signum)
        stopped_in, err = seconds_to_exit(process)
        assert process.returncode == code, err
        assert err.strip().splitlines()[-1].startswith("interrupted"), err
        assert "Traceback" not in err
        assert not alive(workers), "orphaned workers"
        finished = stored(harness.results)
        assert len(finished) < 8
        run_seconds = min(r["total_seconds"] for r in finished)
        assert stopped_in < run_seconds / 2, (
            f"stopped in {stopped_in:.1f} s, a run takes {run_seconds:.1f} s"
        )

    process = harness.start("harness.ablate", *args)
    wait_for_a_new_run(runs, process)
    workers = dask_workers(process.pid)
    assert len(workers) == 2
    process.kill()
    process.communicate(timeout=60)
    deadline = time.time() + 60
    while alive(workers):
        assert time.time() < deadline, "workers outlived their killed client"
        time.sleep(0.5)
    assert len(stored(harness.results)) < 8

    rerun = harness.run("harness.ablate", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(r["seed"] for r in stored(harness.results)) == list(range(8))  # each once
    files = list(runs.glob("*.json"))
    assert len(files) == 8 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
    assert not list(runs.glob("*.lock"))


def test_killed_worker_is_retried_and_every_run_is_stored_once(harness):
    args = ("reference", "--seed-list", "0,1,2,3,4,5", "--set", "epochs=60", "--workers", "2")
    process = harness.start("harness.ablate", *args)
    wait_for_a_new_run(harness.results / "runs", process)
    os.kill(dask_workers(process.pid)[-1], signal.SIGKILL)  # mid-run: its task moves on
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    records = stored(harness.results)
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3, 4, 5]  # each exactly once
    assert all(r["status"] == "ok" for r in records)


def test_two_workers_give_the_same_numbers_as_serial(tmp_path, small_data):
    tasks = [Task("tiny", TINY, seed) for seed in (0, 1)]
    serial = Resources(workers=1, threads=1, data_dir=str(small_data))
    parallel = Resources(workers=2, threads=1, data_dir=str(small_data))
    conditions = run_conditions(serial)
    assert run_conditions(parallel) == conditions
    one = train_tasks(tasks, RunStore(tmp_path / "serial"), serial, conditions)
    two = train_tasks(tasks, RunStore(tmp_path / "parallel"), parallel, conditions)
    by_seed = {r["seed"]: r for r in two}
    for record in one:
        twin = by_seed[record["seed"]]
        assert record["environment"]["threads"] == twin["environment"]["threads"] == 1
        assert metrics_only(record) == metrics_only(twin)


def test_stacked_grid_stores_one_record_per_seed_and_resumes(harness):
    args = ("width_half", "--seed-list", "0,1,2", "--workers", "1", "--stack", "3")
    done = harness.run("harness.ablate", *args, "--threads", "1")
    assert done.returncode == 0, done.stderr
    records = stored(harness.results)
    assert sorted((r["label"], r["seed"]) for r in records) == [
        (label, seed) for label in ("reference", "width_half") for seed in (0, 1, 2)
    ]
    assert {(r["engine"], r["stack_size"]) for r in records} == {("cpu1t-stacked", 3)}
    assert all(r["metrics"]["test_accuracy"] > 0.3 for r in records)
    rerun = harness.run("harness.ablate", *args, "--threads", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert len(stored(harness.results)) == 6  # nothing trained again


def test_until_decided_runs_a_pilot_then_the_planned_seeds_and_reruns_train_nothing(harness):
    args = ("width_half", "--until-decided", "--pilot-seeds", "2", "--max-seeds", "3")
    args += ("--workers", "1")
    done = harness.run("harness.ablate", *args)
    assert done.returncode == 0, done.stderr
    plan = json.loads((harness.results / "plan.json").read_text())
    assert plan["design"] == {"pilot_seeds": 2, "max_seeds": 3, "pooled": False}
    seeds = {arm["label"]: arm["seeds"] for arm in plan["arms"]}
    assert seeds["width_half"] in ([0, 1], [0, 1, 2])  # from the pilot's spread, capped at 3
    assert seeds["reference"] == seeds["width_half"]
    assert sorted((r["label"], r["seed"]) for r in stored(harness.results)) == sorted(
        (label, s) for label in ("reference", "width_half") for s in seeds[label]
    )
    assert "Stein" in (harness.reports / "README.md").read_text()
    rerun = harness.run("harness.ablate", *args)
    assert rerun.returncode == 0 and len(stored(harness.results)) == 2 * len(seeds["width_half"])


def test_retune_gives_each_arm_its_own_learning_rate_and_both_verdicts_then_resumes(harness):
    args = ("no_batchnorm", "--retune", "lr", "--retune-trials", "3", "--seeds", "2")
    args += ("--workers", "1")
    done = harness.run("harness.ablate", *args)
    assert done.returncode == 0, done.stderr
    chosen = json.loads((harness.results / "retuned.json").read_text())
    assert set(chosen) == {"reference", "no_batchnorm"}
    assert all(c["trials"] == 3 and set(c["values"]) == {"lr"} for c in chosen.values())
    runs = {
        (r["config"]["lr"], r["config"]["batchnorm"], r["seed"]) for r in stored(harness.results)
    }
    base_lr = load_config(None, SMALL_SET).lr
    for label, batchnorm in (("reference", True), ("no_batchnorm", False)):
        lr = chosen[label]["values"]["lr"]
        assert {(lr, batchnorm, 0), (lr, batchnorm, 1), (base_lr, batchnorm, 0)} <= runs
    assert any(line.startswith("| no_batchnorm-retuned ") for line in done.stdout.splitlines())
    index = (harness.reports / "README.md").read_text()
    section = index[index.index("### At each arm's own settings (--retune)") :]
    row = next(line for line in section.splitlines() if line.startswith("| no_batchnorm "))
    assert f"lr {chosen['no_batchnorm']['values']['lr']:.3g}" in row
    assert row.count("[") == 2  # the verdict at the reference's lr, and at its own
    mtimes = {p: p.stat().st_mtime_ns for p in (harness.results / "runs").iterdir()}

    rerun = harness.run("harness.ablate", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert mtimes == {p: p.stat().st_mtime_ns for p in (harness.results / "runs").iterdir()}
    assert json.loads((harness.results / "retuned.json").read_text()) == chosen


def test_a_study_copied_to_a_machine_of_another_platform_trains_its_own_runs_apart(
    harness, monkeypatch, capsys
):
    """A faked instruction set: the copied runs are kept (not replaced, not counted), this
    machine's are trained beside them, the study's plan is now this machine's, and the report
    names both machines."""
    args = ["reference", "no_dropout", "--seeds", "2", "--workers", "1", "--threads", "1"]
    args += ["--results-dir", str(harness.results), "--reports-dir", str(harness.reports)]
    args += ["--data-dir", str(harness.data), "--specs-dir", str(harness.specs)]
    args += [option for assignment in SMALL_SET for option in ("--set", assignment)]
    assert ablate.main(args) == 0
    copied = {path.name: path.read_bytes() for path in (harness.results / "runs").glob("*.json")}
    here = load_plan(harness.results).conditions.platform
    elsewhere = "avx2-" + here.split("-")[1][::-1]
    monkeypatch.setattr(store_module, "numeric_platform", lambda env: elsewhere)
    monkeypatch.setattr("harness.core.training.numeric_platform", lambda env: elsewhere)
    assert ablate.main(args) == 0
    runs = {path.name: path.read_bytes() for path in (harness.results / "runs").glob("*.json")}
    assert {name: runs[name] for name in copied} == copied  # the copied runs, untouched
    new = [json.loads(runs[name]) for name in set(runs) - set(copied)]
    assert len(new) == 4 and {r["platform"] for r in new} == {elsewhere}
    assert {RunKey.of(r).platform for r in stored(harness.results)} == {here, elsewhere}
    assert load_plan(harness.results).conditions.platform == elsewhere
    assert "the study's runs train here, the others stay apart" in capsys.readouterr().out
    index = (harness.reports / "README.md").read_text()
    assert here in index and elsewhere in index
