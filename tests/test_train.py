import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from harness.core.config import Config
from harness.core.data import Mnist, split
from harness.core.training import evaluate, fit, run_one
from harness.report.analysis import at_budget, budget_epochs
from tests.helpers import metrics_only


def test_same_config_and_seed_give_identical_metrics(tiny, tiny_mnist):
    first = run_one(tiny, 7, tiny_mnist)
    second = run_one(tiny, 7, tiny_mnist)
    assert metrics_only(first) == metrics_only(second)
    assert metrics_only(first) != metrics_only(run_one(tiny, 8, tiny_mnist))


def test_augmented_run_is_reproducible_and_differs_from_the_plain_one(tiny, tiny_mnist):
    shifted = dataclasses.replace(tiny, shift=2)
    first = run_one(shifted, 7, tiny_mnist)
    assert metrics_only(first) == metrics_only(run_one(shifted, 7, tiny_mnist))
    assert metrics_only(first) != metrics_only(run_one(tiny, 7, tiny_mnist))


def test_run_learns_and_records_everything(tiny, tiny_mnist):
    record = run_one(tiny, 0, tiny_mnist, label="tiny")
    assert record["status"] == "ok" and record["label"] == "tiny"
    assert record["metrics"]["test_accuracy"] > 0.5  # chance is 0.1
    assert len(record["history"]) == len(record["test_history"]) == tiny.epochs
    assert len(record["per_digit_accuracy"]) == 10
    confusion = record["confusion_matrix"]
    assert sum(map(sum, confusion)) == len(tiny_mnist.test_labels)
    assert sum(confusion[d][d] for d in range(10)) / 200 == record["metrics"]["test_accuracy"]
    assert {"torch", "threads", "cpu", "git_commit", "device"} <= set(record["environment"])
    assert record["data"] == "synthetic" and record["platform"].startswith("avx")
    best = record["test_history"][record["metrics"]["best_epoch"] - 1]
    assert best["test_accuracy"] == record["metrics"]["test_accuracy"]
    assert best["test_misclassified"] == record["test_misclassified"]


def test_best_epoch_is_chosen_by_validation(tiny, tiny_mnist):
    config = dataclasses.replace(tiny, epochs=6)
    result = fit(config, 0, split(tiny_mnist, config.val_size, 0))
    val = [epoch["val_accuracy"] for epoch in result.history]
    assert result.best_epoch == val.index(max(val)) + 1
    assert result.best_val_accuracy == max(val)


def test_the_records_test_numbers_are_the_best_epochs_weights_on_the_test_set(tiny, tiny_mnist):
    config = dataclasses.replace(tiny, epochs=5)
    test = (tiny_mnist.test_images, tiny_mnist.test_labels)
    result = fit(config, 3, split(tiny_mnist, config.val_size, 3), test=test)
    loss, predictions = evaluate(result.model, *test)  # the restored best weights, again
    assert result.best_test[0] == loss and torch.equal(result.best_test[1], predictions)


def test_the_first_k_epochs_of_a_longer_run_are_a_k_epoch_run_bit_for_bit(tiny, tiny_mnist):
    """Every budget from one run: the 3-epoch record is the 3-epoch budget of an 8-epoch run of
    the same config and seed (plateau scheduler, augmentation and dropout on)."""
    base = dataclasses.replace(tiny, shift=1, scheduler_patience=0)
    long = run_one(dataclasses.replace(base, epochs=8), 5, tiny_mnist)
    short = run_one(dataclasses.replace(base, epochs=3), 5, tiny_mnist)
    without_seconds = [{k: v for k, v in e.items() if k != "seconds"} for e in long["history"]]
    assert without_seconds[:3] == metrics_only(short)["history"]
    assert long["test_history"][:3] == short["test_history"]
    runs = _frame([long])
    accuracy, correct = at_budget(runs, 3)
    assert accuracy[0] == short["metrics"]["test_accuracy"]
    wrong = np.flatnonzero(~correct[0]).tolist()
    assert wrong == short["test_misclassified"]
    accuracy, correct = at_budget(runs, 8)  # the full budget is the record's own best epoch
    assert accuracy[0] == long["metrics"]["test_accuracy"]


def test_no_selection_at_any_budget_reads_the_test_set(tiny, tiny_mnist):
    """The same run with its test labels scrambled: every decision (history, best epoch, the
    epoch chosen at each budget) is the same; only the test numbers differ."""
    config = dataclasses.replace(tiny, epochs=6, scheduler_patience=0)
    scrambled = Mnist(
        tiny_mnist.train_images,
        tiny_mnist.train_labels,
        tiny_mnist.test_images,
        tiny_mnist.test_labels.roll(1),
        tiny_mnist.source,
    )
    honest, other = run_one(config, 2, tiny_mnist), run_one(config, 2, scrambled)
    assert metrics_only(honest)["history"] == metrics_only(other)["history"]
    assert honest["metrics"]["best_epoch"] == other["metrics"]["best_epoch"]
    assert honest["test_history"] != other["test_history"]
    runs = _frame([honest, other])
    for budget in range(1, config.epochs + 1):
        first, second = budget_epochs(runs, budget)
        assert first == second


def _frame(records: list[dict]) -> pd.DataFrame:
    """Records as the report reads them: one row each, their metrics flattened."""
    return pd.DataFrame([record | record["metrics"] for record in records])


def test_diverging_run_is_recorded_not_raised(tiny, tiny_mnist):
    record = run_one(dataclasses.replace(tiny, lr=1e30), 0, tiny_mnist)
    assert record["status"] == "diverged"
    assert record["diverged_epoch"] == 1 and "metrics" not in record


def test_pruning_callback_stops_the_run(tiny, tiny_mnist):
    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(tiny, 0, split(tiny_mnist, tiny.val_size, 0), on_epoch=stop_after_two)


@pytest.mark.slow
def test_reference_reaches_97_9_percent_on_real_mnist(real_mnist):
    record = run_one(Config(), 0, real_mnist)
    assert record["parameters"] == 569_226
    assert record["metrics"]["test_accuracy"] >= 0.979, record["metrics"]


def test_a_run_leaves_the_callers_global_generator_as_it_was(tiny, tiny_mnist):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_one(tiny, 0, tiny_mnist)
    assert torch.equal(torch.rand(3), expected)
