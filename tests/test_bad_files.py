"""Files the harness reads back, damaged; a store that stops taking records; addresses and URLs
that cannot be used; small input traps. Each is one line and a non-zero exit before any training
(a damaged record: one line, set aside, trained again), and loses nothing."""

import json
import os
import shutil
import time

import optuna
import pytest
from sqlalchemy.engine import make_url

from harness import UserError, cli
from harness.cli import run_all
from harness.core import store
from harness.core.config import Config
from harness.core.store import RunConditions, RunStore, StoreError
from harness.core.training import run_one
from harness.study.executor import resolve_scheduler
from harness.study.plan import Arm, Plan, PlanError, save_plan
from harness.study.search import check_saved_files, open_study, reference_params, suggest_config
from harness.study.settings import SearchSettings, redacted
from harness.study.specs import REFERENCE, SpecError, every_spec, load_specs
from tests.helpers import wait_for_a_new_run

DAMAGED = {
    "truncated": '{"engine": "cpu1t", "arms": [{"lab',
    "empty": "",
    "not UTF-8": b"\xff\xfe{}".decode("latin-1"),
    "wrong shape": '{"engine": "cpu1t", "margin": 0.001, "arms": {"reference": 1}}',
    "seeds not integers": json.dumps(
        {
            "engine": "cpu1t",
            "margin": 0.001,
            "arms": [
                {
                    "label": "reference",
                    "description": "",
                    "config": Config().to_dict(),
                    "seeds": ["zero"],
                }
            ],
        }
    ),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_plan_or_search_summary_is_one_line_naming_it(tmp_path, damage):
    for name, what in [
        ("plan.json", "plan"),
        ("tuned.json", "search summary"),
        ("retuned.json", "retune summary"),
    ]:
        results = tmp_path / name
        results.mkdir()
        (results / name).write_text(DAMAGED[damage], encoding="latin-1")
        with pytest.raises(PlanError, match=f"{name}: not a readable {what}") as error:
            check_saved_files(results)
        assert "\n" not in str(error.value)


def test_a_damaged_plan_stops_ablate_and_report_before_any_training(harness, one_line_error):
    harness.results.mkdir()
    (harness.results / "plan.json").write_text(DAMAGED["truncated"])
    for command in [
        ["-m", "harness.ablate", "reference", "--reports-dir"],
        ["-m", "harness.report", "--reports-dir"],
    ]:
        line = one_line_error(*command, str(harness.reports), "--results-dir", str(harness.results))
        assert "plan.json: not a readable plan" in line
    assert not list(harness.results.glob("runs/*.json"))
    assert (harness.results / "plan.json").read_text() == DAMAGED["truncated"]  # kept as it was


def test_a_damaged_search_summary_stops_run_all_before_any_training(tmp_path, one_line_error):
    results = tmp_path / "results"
    results.mkdir()
    (results / "tuned.json").write_text(DAMAGED["wrong shape"])
    command = ["run_all.py", "--results-dir", str(results), "--reports-dir", str(tmp_path / "r")]
    line = one_line_error(*command)  # the search would come first: an hour before the grid
    assert "tuned.json: not a readable search summary" in line


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r.pop("metrics"), "no 'metrics'"),
        (lambda r: r.update(seed="zero"), "seed"),
        (lambda r: r["metrics"].update(test_accuracy=None), "metrics.test_accuracy"),
        (lambda r: r.update(status="finished"), "status"),
    ],
)
def test_a_record_that_parses_but_lacks_a_field_is_set_aside(
    tmp_path, tiny, tiny_mnist, capsys, change, why
):
    runs = RunStore(tmp_path)
    good = run_one(tiny, 0, tiny_mnist)
    runs.save(good)
    bad = json.loads(json.dumps(good))
    bad["seed"] = 1
    path = runs.save(bad)
    change(bad)
    path.write_text(json.dumps(bad))
    assert [r["seed"] for r in runs.records()] == [0]
    assert (runs.corrupt / path.name).exists() and runs.corrupt_count() == 1
    warning = capsys.readouterr().err
    assert path.name in warning and why in warning and "trained again" in warning


def test_damaged_records_are_one_line_each_in_report_and_ablate_never_a_traceback(harness):
    """The commands as a user meets them: a record with a short test_predictions, one with a
    string accuracy, one with an infinite accuracy, one whose seed is not its file name's."""
    args = ("reference", "--seeds", "5", "--workers", "1")
    first = harness.run("harness.ablate", *args)
    assert first.returncode == 0, first.stderr
    paths = sorted((harness.results / "runs").glob("*.json"))[:4]  # seed 4's stays whole
    damage = [
        lambda r: r.update(test_predictions=r["test_predictions"][:-1]),
        lambda r: r["metrics"].update(test_accuracy="0.9"),
        lambda r: r["metrics"].update(test_accuracy=float("inf")),
        lambda r: r.update(seed=r["seed"] + 10),
    ]
    for path, change in zip(paths, damage, strict=True):
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
    report = harness.run("harness.report", small=False)
    warnings = [line for line in report.stderr.splitlines() if "warning:" in line]
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert sorted(line.split()[1] for line in warnings) == [str(path) for path in paths]
    again = harness.run("harness.ablate", *args)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert all(path.exists() for path in paths)  # trained again
    assert len(list((harness.results / "runs" / "corrupt").glob("*.json"))) == 4


def test_a_spec_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    (tmp_path / "latin.toml").write_bytes('description = "café"\n'.encode("latin-1"))
    (tmp_path / "fine.toml").write_text('description = "fine"\n')
    found = {type(spec).__name__: spec for spec in every_spec(tmp_path)}
    assert "latin.toml: not UTF-8" in str(found["SpecError"]) and found["Spec"].name == "fine"
    with pytest.raises(SpecError, match="latin.toml: not UTF-8"):
        load_specs(["latin"], tmp_path)


def test_a_record_the_store_cannot_take_is_rescued_and_named(
    tmp_path, tiny, tiny_mnist, monkeypatch
):
    (tmp_path / "rescued").mkdir()
    monkeypatch.setattr(store, "rescue_dir", lambda: tmp_path / "rescued")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs").write_text("a file where the runs folder should be")
    record = run_one(tiny, 0, tiny_mnist)
    with pytest.raises(StoreError, match="the finished run is saved in") as error:
        RunStore(tmp_path / "results").save(record)
    assert str(tmp_path / "rescued") in str(error.value) and "\n" not in str(error.value)
    (rescued,) = (tmp_path / "rescued").glob("*.json")
    assert json.loads(rescued.read_text()) == record


def test_a_plan_the_results_folder_cannot_take_is_one_line(tmp_path):
    (tmp_path / "plan.json").mkdir()  # as root writes anywhere, a folder stands in the way
    plan = Plan({REFERENCE: Arm(REFERENCE, "", Config(), (0,))}, RunConditions("cpu1t", "x"))
    with pytest.raises(PlanError, match="cannot write .*plan.json") as error:
        save_plan(plan, tmp_path)
    assert error.value.setting == "results_dir" and "\n" not in str(error.value)


def test_a_grid_whose_store_goes_away_rescues_its_runs_and_stops_in_one_line(harness):
    args = ("reference", "--seed-list", "0,1,2,3", "--set", "epochs=60", "--workers", "2")
    env = {**os.environ, "TMPDIR": str(harness.root / "tmp")}  # where the rescue folder goes
    (harness.root / "tmp").mkdir()
    process = harness.start("harness.ablate", *args, env=env)
    runs = harness.results / "runs"
    wait_for_a_new_run(runs, process)
    shutil.move(runs, harness.root / "runs-moved")
    runs.write_text("the disk is gone")
    _, err = process.communicate(timeout=600)
    assert process.returncode == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --results-dir: cannot store") and "harness-unsaved-runs" in last
    moved = (harness.root / "runs-moved").glob("*.json")
    kept = {json.loads(p.read_text())["seed"] for p in moved}
    rescued = [json.loads(p.read_text()) for p in (harness.root / "tmp").glob("*/*.json")]
    assert all(record["status"] == "ok" for record in rescued)
    assert {record["seed"] for record in rescued} - kept  # what finished after is not lost


def test_a_command_waits_for_a_run_another_holds_and_trains_it_if_left_undone(harness):
    """As when two identical commands start together: the second trains what is free, waits
    for the run the first holds, and (here the holder lets go without storing it, as a
    crashed command would) trains that one too; its report sees every run."""
    args = ("reference", "--seed-list", "0,1", "--workers", "1", "--threads", "1")
    first = harness.run("harness.ablate", *args)  # the runs' keys, as the command makes them
    assert first.returncode == 0, first.stderr
    runs = RunStore(harness.results)
    (held_record,) = [r for r in runs.records() if r["seed"] == 0]
    held = store.RunKey.of(held_record)
    for path in runs.runs.glob("*.json"):
        path.unlink()
    with runs.claim(held) as mine:
        assert mine
        command = harness.start("harness.ablate", *args)
        deadline = time.time() + 300
        while [r["seed"] for r in runs.records()] != [1]:
            assert command.poll() is None and time.time() < deadline, command.communicate()
            time.sleep(0.2)
        time.sleep(1)
        assert command.poll() is None  # waiting for seed 0
    out, err = command.communicate(timeout=600)
    assert command.returncode == 0, err
    assert "waiting for 1 run(s)" in out  # tqdm.write: stdout
    assert sorted(r["seed"] for r in runs.records()) == [0, 1]  # each once
    assert "over 2 seeds" in out  # the report saw both runs


def test_a_file_of_anothers_where_a_report_writes_is_refused_before_training(
    harness, one_line_error
):
    (harness.reports / "variants").mkdir(parents=True)
    (harness.reports / "manifest.json").write_text('{"files": []}')
    (harness.reports / "variants" / "notes.md").write_text("mine")
    line = one_line_error(
        "-m",
        "harness.ablate",
        "reference",
        "--data-dir",
        str(harness.data),
        "--results-dir",
        str(harness.results),
        "--reports-dir",
        str(harness.reports),
    )
    assert "notes.md was not written by a report" in line and line.startswith("error: --reports")
    assert not harness.results.exists()
    assert (harness.reports / "variants" / "notes.md").read_text() == "mine"


@pytest.mark.parametrize(
    ("address", "env"),
    [
        ("tcp://127.0.0.1", False),
        ("http://127.0.0.1:8786", False),
        ("tcp://127.0.0.1:99999", False),
        ("tcp://127.0.0.1", True),
    ],
)
def test_a_scheduler_address_that_cannot_be_one_is_one_line(address, env, monkeypatch):
    if env:
        monkeypatch.setenv("HARNESS_SCHEDULER", address)
    with pytest.raises(UserError, match="is not a Dask scheduler address") as error:
        resolve_scheduler(None if env else address)
    assert error.value.setting == "scheduler" and ("HARNESS_SCHEDULER" in str(error.value)) == env
    assert resolve_scheduler("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"


def test_a_scheduler_address_is_checked_before_anything_trains(harness, one_line_error):
    env = {**os.environ, "HARNESS_SCHEDULER": "tcp://127.0.0.1"}
    line = one_line_error(
        "-m",
        "harness.ablate",
        "reference",
        "--results-dir",
        str(harness.results),
        "--reports-dir",
        str(harness.reports),
        env=env,
    )
    assert line.startswith("error: --scheduler: 'tcp://127.0.0.1' (from $HARNESS_SCHEDULER)")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@127.0.0.1:abc/db",  # a port that is no number
        "postgresql://u:p@ss@127.0.0.1/db",  # an '@' in the password, unescaped
        "127.0.0.1/optuna",  # no dialect
    ],
)
def test_a_storage_url_that_cannot_be_used_is_one_line_that_shows_no_password(url):
    with pytest.raises(UserError) as error:
        SearchSettings(storage=url)
    assert error.value.setting == "storage" and "\n" not in str(error.value)
    assert "ss@" not in str(error.value) and "pw" not in str(error.value)


def test_a_bad_storage_url_stops_the_search_command_in_one_line(tmp_path, one_line_error):
    line = one_line_error(
        "-m",
        "harness.search",
        "--storage",
        "postgresql://u:p@ss@127.0.0.1/db",
        "--results-dir",
        str(tmp_path),
    )
    assert line.startswith("error: --storage: not a database URL") and "ss@" not in line


def test_quick_until_decided_is_a_small_pilot(tmp_path):
    args = run_all.parse_args(["--quick", "--until-decided", "--results-dir", str(tmp_path)])
    study, _ = run_all.settings_for(args)
    plan = study.plan(load_specs(["no_dropout"]), RunConditions("cpu1t", "x"))
    assert (plan.design.pilot_seeds, plan.design.max_seeds) == (2, 3)  # replicates of the cells
    assert plan.arms["no_dropout"].seeds == plan.factorial.seeds == (0, 1)


def test_workers_are_capped_by_available_memory(monkeypatch, capsys):
    class Memory:
        available = 5 * 2**30

    monkeypatch.setattr(cli.psutil, "virtual_memory", lambda: Memory)
    assert cli.memory_capped(2) == 2
    assert cli.memory_capped(64) == 3
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "--workers 64: 3 fit" in message[0]
    assert "at most 3 start" in message[0]


def test_passwords_are_hidden_wherever_the_url_has_them():
    for url in [
        "postgresql://u:s3cret@host/db",
        "postgresql://u@host/db?password=s3cret&sslmode=require",
        "postgresql://u@host/db?PASSWORD=s3cret",
    ]:
        shown = redacted(url)
        assert "s3cret" not in shown and "host/db" in shown


def test_a_results_path_with_url_characters_stays_one_path(tmp_path):
    results = tmp_path / "what?x#y"
    results.mkdir()
    url = SearchSettings().storage_url(results)
    assert make_url(url).database == str(results / "search.db")
    open_study("s", url, 0, 2)
    assert (results / "search.db").is_file()
    assert not (tmp_path / "what").exists()


def test_the_search_space_takes_any_reference_width():
    base = Config(hidden_widths=(300, 150), dropout=(0.1, 0.0), batch_size=64)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(reference_params(base, 15))
    config = suggest_config(study.ask(), base, 15)
    assert config == base
