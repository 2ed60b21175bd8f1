"""Bad input fails before any training, in one line; bad state is recovered, never trained over."""

import dataclasses
import os
import time

import pytest
import torch

from harness import UserError
from harness.cli import ablate, search
from harness.core.store import RunKey, RunStore, StoreError, numeric_platform
from harness.core.training import DIVERGENCE_RULE, engine, run_one
from harness.study.search import StorageError, open_study
from harness.study.specs import SpecError, every_spec, load_specs


@pytest.mark.parametrize("module", ["harness.train", "harness.ablate", "harness.search"])
def test_results_folder_that_is_a_file_fails_before_training(
    tmp_path, real_files, module, one_line_error
):
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("")
    names = ["reference"] if module == "harness.ablate" else []
    epochs = "--search-epochs" if module == "harness.search" else "--epochs"
    line = one_line_error("-m", module, *names, epochs, "1", "--results-dir", str(not_a_folder))
    assert line.startswith("error: --results-dir: results folder")
    assert str(not_a_folder) in line and "not a writable folder" in line


def test_report_of_a_file_is_an_error_not_an_empty_report(tmp_path, one_line_error):
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("")
    line = one_line_error("-m", "harness.report", "--results-dir", str(not_a_folder))
    assert "not a folder" in line


@pytest.mark.parametrize(
    "args",
    [
        ["reference", "--seeds", "0"],
        ["reference", "--seeds", "-1"],
        ["reference", "--epochs", "0"],
        ["reference", "--seed-list", "-2"],
        ["reference", "--margin", "0"],
    ],
)
def test_out_of_range_numbers_are_refused_by_ablate(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        ablate.main(args)
    assert exit_.value.code == 2
    assert "error: argument" in capsys.readouterr().err.strip().splitlines()[-1]


def test_until_decided_needs_two_pilot_seeds():
    with pytest.raises(UserError, match="at least 2 seeds") as error:
        ablate.main(["reference", "--until-decided", "--pilot-seeds", "1"])
    assert error.value.setting == "pilot_seeds"


@pytest.mark.parametrize(
    ("args", "setting", "message"),
    [
        (["--replicate", "--all"], "replicate", "name the factorial too"),
        (["no_dropout", "--factorial"], "factorial", "name no ablation"),
        (["--factorial", "--replicate", "--seed-list", "3,4"], "replicate", "give no seed list"),
    ],
)
def test_factorial_options_that_do_not_go_together_are_refused(args, setting, message, tmp_path):
    with pytest.raises(UserError, match=message) as error:
        ablate.main([*args, "--results-dir", str(tmp_path)])
    assert error.value.setting == setting


def test_ablate_names_and_all_do_not_go_together(capsys):
    with pytest.raises(SystemExit) as exit_:
        ablate.main(["no_dropout", "--all"])
    assert exit_.value.code == 2 and "not both" in capsys.readouterr().err


def test_an_unknown_factorial_is_one_line_before_training(tmp_path, one_line_error):
    line = one_line_error(
        "-m", "harness.ablate", "--factorial", "nope", "--results-dir", str(tmp_path)
    )
    assert "unknown factorial 'nope'" in line and "components" in line


@pytest.mark.parametrize("args", [["--trials", "0"], ["--epochs", "0"], ["--retrain-seeds", "-1"]])
def test_out_of_range_numbers_are_refused_by_search(args):
    with pytest.raises(SystemExit) as exit_:
        search.main(args)
    assert exit_.value.code == 2


def test_corrupt_record_is_set_aside_named_and_counted(tmp_path, tiny, tiny_mnist, capsys):
    store = RunStore(tmp_path)
    good = run_one(tiny, 0, tiny_mnist)
    store.save(good)
    truncated = store.runs / "0123456789ab-seed3-cpu1t.json"
    truncated.write_text('{"config_hash": "0123456789ab", "se')
    records = store.records()
    assert [r["seed"] for r in records] == [0]
    assert not truncated.exists() and (store.corrupt / truncated.name).exists()
    assert store.corrupt_count() == 1
    warning = capsys.readouterr().err
    assert truncated.name in warning and "trained again" in warning
    key = RunKey("0123456789ab", 3, "cpu1t", numeric_platform(good["environment"]))
    assert not store.has(key)  # so the run is pending again


def test_unwritable_results_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file"
        target.write_text("")  # root writes anywhere: a file stands in for an unwritable folder
    else:
        target = tmp_path / "read-only"
        target.mkdir(mode=0o555)
    with pytest.raises(StoreError, match="not a writable folder") as error:
        RunStore(target).check_writable()
    assert "\n" not in str(error.value)


def test_broken_spec_is_named_in_the_list_and_skipped_unless_asked_for(tmp_path):
    (tmp_path / "good.toml").write_text('description = "fine"\n[config]\nlr = 0.002\n')
    (tmp_path / "bad.toml").write_text('description = "typo"\n[config]\nlearning_rate = 1\n')
    listed = every_spec(tmp_path)
    assert [type(s).__name__ for s in listed] == ["SpecError", "Spec"]
    assert "learning_rate" in str(listed[0])
    assert [s.name for s in load_specs(["good"], tmp_path)] == ["good"]
    with pytest.raises(SpecError, match="bad.toml"):
        load_specs(["good", "bad"], tmp_path)


def test_exploded_run_is_diverged_with_its_reason_and_rule(tiny, tiny_mnist):
    record = run_one(dataclasses.replace(tiny, lr=10.0, epochs=2), 0, tiny_mnist)
    assert record["status"] == "diverged" and "metrics" not in record
    assert "near chance" in record["divergence"] or "non-finite" in record["divergence"]
    assert record["divergence_rule"] == DIVERGENCE_RULE
    healthy = run_one(tiny, 0, tiny_mnist)
    assert healthy["status"] == "ok" and healthy["divergence"] is None


def test_thread_count_is_part_of_a_runs_identity():
    cpu = torch.device("cpu")
    assert len({engine(cpu, 1), engine(cpu, 2), engine(cpu, 2, stacked=True)}) == 3
    assert RunKey("abc", 0, engine(cpu, 1), "p") != RunKey("abc", 0, engine(cpu, 2), "p")


def test_unreachable_database_is_one_line_without_the_password():
    started = time.perf_counter()
    with pytest.raises(StorageError) as error:
        open_study("mlp", "postgresql://user:s3cret@127.0.0.1:1/optuna", 0, 2)
    message = str(error.value)
    assert "\n" not in message and "s3cret" not in message and "127.0.0.1:1" in message
    assert time.perf_counter() - started < 30
