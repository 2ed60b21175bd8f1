import dataclasses

import pytest
import torch

from harness.core.data import split
from harness.core.training import fit, run
from tests.conftest import TINY
from tests.helpers import metrics_only


def test_same_config_and_seed_give_identical_metrics(tiny_mnist):
    first = run(TINY, 7, tiny_mnist)
    second = run(TINY, 7, tiny_mnist)
    assert metrics_only(first) == metrics_only(second)
    assert metrics_only(first) != metrics_only(run(TINY, 8, tiny_mnist))


def test_augmented_run_is_reproducible_and_differs_from_the_plain_one(tiny_mnist):
    shifted = dataclasses.replace(TINY, shift=2)
    first = run(shifted, 7, tiny_mnist)
    assert metrics_only(first) == metrics_only(run(shifted, 7, tiny_mnist))
    assert metrics_only(first) != metrics_only(run(TINY, 7, tiny_mnist))


def test_run_learns_and_records_everything(tiny_mnist):
    record = run(TINY, 0, tiny_mnist, label="tiny")
    assert record["status"] == "ok" and record["label"] == "tiny"
    assert record["metrics"]["test_accuracy"] > 0.5  # chance is 0.1
    assert len(record["history"]) == TINY.epochs
    assert len(record["per_digit_accuracy"]) == 10
    confusion = record["confusion_matrix"]
    assert sum(map(sum, confusion)) == len(tiny_mnist.test_labels)
    assert sum(confusion[d][d] for d in range(10)) / 200 == record["metrics"]["test_accuracy"]
    assert {"torch", "threads", "cpu", "git_commit", "device"} <= set(record["environment"])


def test_best_epoch_is_chosen_by_validation(tiny_mnist):
    config = dataclasses.replace(TINY, epochs=6)
    result = fit(config, 0, split(tiny_mnist, config.val_size, 0))
    val = [epoch["val_accuracy"] for epoch in result.history]
    assert result.best_epoch == val.index(max(val)) + 1
    assert result.best_val_accuracy == max(val)


def test_diverging_run_is_recorded_not_raised(tiny_mnist):
    record = run(dataclasses.replace(TINY, lr=1e30), 0, tiny_mnist)
    assert record["status"] == "diverged"
    assert record["diverged_epoch"] == 1 and "metrics" not in record


def test_pruning_callback_stops_the_run(tiny_mnist):
    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(TINY, 0, split(tiny_mnist, TINY.val_size, 0), on_epoch=stop_after_two)


@pytest.mark.slow
def test_reference_reaches_97_9_percent_on_real_mnist(real_mnist):
    record = run(dataclasses.replace(TINY.__class__()), 0, real_mnist)
    assert record["parameters"] == 569_226
    assert record["metrics"]["test_accuracy"] >= 0.979, record["metrics"]


def test_a_run_leaves_the_callers_global_generator_as_it_was(tiny_mnist):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run(TINY, 0, tiny_mnist)
    assert torch.equal(torch.rand(3), expected)
