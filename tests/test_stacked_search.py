"""The search's trials asked K at a time and trained as stacks by shape, on tiny synthetic data."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from harness.core.config import config_from_dict
from harness.stacked.trainer import fit_stacked
from harness.study.search import (
    finished_count,
    open_study,
    reference_params,
    suggest_config,
    summarize,
)
from harness.study.search._stacked import optimize_stacked
from tests.helpers import SEARCH_BASE as BASE
from tests.helpers import search_split as tiny_split

SEED = 1_000_000


def sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'search.db'}"


def test_rounds_of_stacked_trials_fill_the_study_each_trial_as_its_config_alone(tmp_path):
    data = tiny_split()
    study = open_study("stacked", sqlite(tmp_path), 0, 3)
    optimize_stacked(study, data, BASE, 7, 3, SEED, torch.device("cpu"), round_size=3)
    trials = study.get_trials()
    assert finished_count(study) == len(trials) == 7  # rounds of 3, 3 and 1
    assert trials[0].params == reference_params(BASE, 3)  # the reference first, as on the CPU
    assert {t.user_attrs["seed"] for t in trials} == {SEED}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    compared = 0
    for trial in trials:  # members do not depend on their stack-mates
        config = suggest_config(optuna.trial.FixedTrial(trial.params), BASE, 3)
        if min(config.dropout) == 0:  # its dropout draws' layout was the stack's (model.py)
            continue
        alone = fit_stacked(config, [SEED], [data])[0]
        reported = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        expected = [entry["val_accuracy"] for entry in alone.history[: len(reported)]]
        assert reported == pytest.approx(expected, abs=1e-9), trial.number
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(alone.best_val_accuracy, abs=1e-9)
            assert config_from_dict(trial.user_attrs["config"]) == config
        compared += 1
    assert compared >= 2
    for trial in trials:  # every epoch reported to the pruner, a pruned trial's up to a rung
        epochs = sorted(trial.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1))
        if trial.state == TrialState.COMPLETE:
            assert len(epochs) == trial.params["epochs"]
        elif "failure" not in trial.user_attrs:
            assert epochs[-1] in (1, 3)  # successive halving's rungs for a cap of 3
    summary = summarize(study, sqlite(tmp_path), SEED)  # what the report reads, as on the CPU
    assert summary.finished == 7

    again = open_study("stacked", sqlite(tmp_path), 0, 3)
    optimize_stacked(again, data, BASE, 9, 3, SEED, torch.device("cpu"), round_size=3)
    assert finished_count(again) == len(again.trials) == 9  # continued, nothing trained twice
    assert [t.number for t in again.trials] == list(range(9))


def test_the_gpu_trials_benchmark_runs_on_the_cpu_with_smoke(tmp_path, capsys):
    """benchmarks/gpu_trials.py's own code path, small: full trials of the reference's shape."""
    from benchmarks import gpu_trials

    assert gpu_trials.main(["--smoke", "--out", str(tmp_path / "trials.json")]) == 0
    summary = json.loads((tmp_path / "trials.json").read_text())
    assert summary["counts"]["complete"] == 4 and summary["trials_per_round"] == 4
    best = summary["config"]
    assert (best["hidden_widths"], best["batchnorm"], best["batch_size"]) == (
        [512, 256, 128],
        True,
        128,
    )
    assert "4 trials x 1 epochs" in capsys.readouterr().out
