"""Files the harness reads back, damaged; a store that stops taking records; small input traps.
Each is one line and a non-zero exit before any training, and loses nothing."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from harness import cli
from harness.cli import run_all
from harness.core import store
from harness.core.config import Config
from harness.core.store import RunKey, RunStore, StoreError
from harness.core.training import run
from harness.study.plan import PlanError
from harness.study.saved import check_saved_files
from harness.study.settings import SearchSettings
from harness.study.specs import SpecError, every_spec, load_specs
from harness.study.tuning import _redacted, open_study, reference_params, suggest_config
from tests.conftest import TINY
from tests.helpers import PROJECT_ROOT, wait_for_first_run
from tests.helpers import ablate as ablate_command

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


def one_line_exit_2(command: list[str], cwd: Path = PROJECT_ROOT) -> str:
    result = subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


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


def test_a_damaged_plan_stops_ablate_and_report_before_any_training(tmp_path, real_files):
    results = tmp_path / "results"
    results.mkdir()
    (results / "plan.json").write_text(DAMAGED["truncated"])
    for command in [
        ["-m", "harness.ablate", "reference", "--epochs", "1", "--reports-dir"],
        ["-m", "harness.report", "--out"],
    ]:
        line = one_line_exit_2([*command, str(tmp_path / "reports"), "--results-dir", str(results)])
        assert "plan.json: not a readable plan" in line
    assert not list(results.glob("runs/*.json"))
    assert (results / "plan.json").read_text() == DAMAGED["truncated"]  # kept as it was


def test_a_damaged_search_summary_stops_run_all_before_any_training(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "tuned.json").write_text(DAMAGED["wrong shape"])
    command = ["run_all.py", "--results-dir", str(results), "--reports-dir", str(tmp_path / "r")]
    line = one_line_exit_2(command)  # the search would come first: an hour before the grid
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
    tmp_path, tiny_mnist, capsys, change, why
):
    runs = RunStore(tmp_path)
    good = run(TINY, 0, tiny_mnist)
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


def test_a_spec_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    (tmp_path / "latin.toml").write_bytes('description = "café"\n'.encode("latin-1"))
    (tmp_path / "fine.toml").write_text('description = "fine"\n')
    found = {type(spec).__name__: spec for spec in every_spec(tmp_path)}
    assert "latin.toml: not UTF-8" in str(found["SpecError"]) and found["Spec"].name == "fine"
    with pytest.raises(SpecError, match="latin.toml: not UTF-8"):
        load_specs(["latin"], tmp_path)


def test_a_record_the_store_cannot_take_is_rescued_and_named(tmp_path, tiny_mnist, monkeypatch):
    (tmp_path / "rescued").mkdir()
    monkeypatch.setattr(store, "rescue_dir", lambda: tmp_path / "rescued")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs").write_text("a file where the runs folder should be")
    record = run(TINY, 0, tiny_mnist)
    with pytest.raises(StoreError, match="the finished run is saved in") as error:
        RunStore(tmp_path / "results").save(record)
    assert str(tmp_path / "rescued") in str(error.value) and "\n" not in str(error.value)
    (rescued,) = (tmp_path / "rescued").glob("*.json")
    assert json.loads(rescued.read_text()) == record


@pytest.mark.slow
def test_a_grid_whose_store_goes_away_rescues_its_runs_and_stops_in_one_line(tmp_path, real_mnist):
    args = ("reference", "--seed-list", "0,1,2,3", "--epochs", "1", "--workers", "2")
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}  # where the rescue folder goes
    (tmp_path / "tmp").mkdir()
    process = ablate_command(tmp_path, *args, env=env)
    runs = tmp_path / "results" / "runs"
    wait_for_first_run(runs, process)
    shutil.move(runs, tmp_path / "runs-moved")
    runs.write_text("the disk is gone")
    _, err = process.communicate(timeout=600)
    assert process.returncode == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot store") and "harness-unsaved-runs" in last
    kept = {json.loads(p.read_text())["seed"] for p in (tmp_path / "runs-moved").glob("*.json")}
    rescued = [json.loads(p.read_text()) for p in (tmp_path / "tmp").glob("*/*.json")]
    assert all(record["status"] == "ok" for record in rescued)
    assert {record["seed"] for record in rescued} - kept  # what finished after is not lost


@pytest.mark.slow
def test_a_command_waits_for_a_run_another_holds_and_trains_it_if_left_undone(tmp_path, real_mnist):
    """As when two identical commands start together: the second trains what is free, waits
    for the run the first holds, and (here the holder lets go without storing it, as a
    crashed command would) trains that one too; its report sees every run."""
    held = RunKey(dataclasses.replace(Config(), epochs=1).hash(), 0, "cpu1t")
    args = ("reference", "--seed-list", "0,1", "--epochs", "1", "--workers", "1", "--threads", "1")
    runs = RunStore(tmp_path / "results")
    runs.check_writable()
    with runs.claim(held) as mine:
        assert mine
        command = ablate_command(tmp_path, *args)
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


def test_quick_until_decided_is_a_small_pilot(tmp_path):
    args = run_all.parse_args(["--quick", "--until-decided", "--results-dir", str(tmp_path)])
    study_settings, _, _ = run_all.settings_for(args)
    plan = study_settings.plan(load_specs(["no_dropout"]), "cpu1t")
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


def test_passwords_are_hidden_wherever_the_url_has_them():
    for url in [
        "postgresql://u:s3cret@host/db",
        "postgresql://u@host/db?password=s3cret&sslmode=require",
        "postgresql://u@host/db?PASSWORD=s3cret",
    ]:
        shown = _redacted(url)
        assert "s3cret" not in shown and "host/db" in shown


def test_a_results_path_with_url_characters_stays_one_path(tmp_path):
    results = tmp_path / "what?x#y"
    results.mkdir()
    url = SearchSettings().storage_url(results)
    assert make_url(url).database == str(results / "search.db")
    open_study("s", url, 0)
    assert (results / "search.db").is_file()
    assert not (tmp_path / "what").exists()


def test_the_search_space_takes_any_reference_width():
    base = Config(hidden_widths=(300, 150), dropout=(0.1, 0.0), batch_size=64)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(reference_params(base, 15))
    config = suggest_config(study.ask(), base, 15)
    assert config == base
