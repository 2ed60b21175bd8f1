"""The run record: what one trained run leaves on disk, and its check on every read.

Identity: config_hash, seed, engine, platform and data (store.RunKey). A reader relies only on
what check_record checks; the rest is kept for whoever studies a run later.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from harness.core.config import ConfigError, config_from_dict

# 3: the platform and data in the identity, every epoch's test evaluation (test_history)
# 2: engine in the identity, one random stream per source, test predictions
RECORD_SCHEMA = 3
NUM_CLASSES = 10


class RunRecord(TypedDict, total=False):
    """A stored run (schema RECORD_SCHEMA; schema 2 records lack platform, data and
    test_history, and still load).

    A diverged run has no metrics, no per-digit or per-image fields. Accuracies are fractions;
    history has one dict per epoch (epoch, train_loss, train_accuracy, val_loss, val_accuracy,
    lr, seconds), test_history one per booked epoch (epoch, test_accuracy, test_loss,
    test_misclassified), which no decision of the run read.
    """

    schema: int
    label: str
    config_hash: str
    seed: int
    engine: str  # training.engine: cpu1t, cpu2t, cuda, cuda-stacked, ...
    platform: str  # store.numeric_platform of the machine
    data: str  # data.Mnist.source: "mnist", or "idx-<digest>"
    config: dict[str, Any]  # Config.to_dict()
    status: str  # "ok" or "diverged"
    diverged_epoch: int | None
    divergence: str | None  # which part of divergence_rule fired
    divergence_rule: str
    history: list[dict[str, Any]]
    test_history: list[dict[str, Any]]
    parameters: int
    environment: dict[str, Any]  # store.environment: versions, CPU, flags, threads, commit
    per_digit_accuracy: list[float]
    confusion_matrix: list[list[int]]  # rows: true digit
    test_predictions: str  # one digit per test image
    test_misclassified: list[int]  # indices of the test images it got wrong
    # test_accuracy, test_loss, best_val_accuracy, best_epoch, train_accuracy_at_best,
    # train_val_gap
    metrics: dict[str, Any]
    seconds_per_epoch: float | None
    total_seconds: float
    stack_size: int  # stacked runs only


FIELDS: dict[str, type | tuple[type, ...]] = {  # what every reader needs
    "label": str,
    "config_hash": str,
    "seed": int,
    "engine": str,
    "config": dict,
    "status": str,
    "history": list,
    "parameters": int,
    "environment": dict,
}
SCHEMA_3_FIELDS: dict[str, type | tuple[type, ...]] = {
    "platform": str,
    "data": str,
    "test_history": list,
}
FINISHED_FIELDS: dict[str, type | tuple[type, ...]] = {  # a run that did not diverge
    "metrics": dict,
    "per_digit_accuracy": list,
    "confusion_matrix": list,
    "test_misclassified": list,
}
HISTORY_LOSSES = ("train_loss", "val_loss", "lr")  # numbers (a loss may overflow to inf)
HISTORY_ACCURACIES = ("train_accuracy", "val_accuracy")


def check_record(record: Any) -> None:
    """Raises TypeError or ValueError naming the first thing wrong with a stored run: a field
    missing or of the wrong type (a bool is no number), a number that is not finite or out of
    its range, lists of the wrong length, a config that does not hash to its config_hash."""
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    schema = record.get("schema", 2)
    fields = {**FIELDS, **(SCHEMA_3_FIELDS if _is_int(schema) and schema >= 3 else {})}
    if record.get("status") == "ok":
        fields |= FINISHED_FIELDS
    for key, expected in fields.items():
        if key not in record:
            raise ValueError(f"no {key!r}")
        _check_type(key, record[key], expected)
    if record["status"] not in ("ok", "diverged"):
        raise ValueError(f"status: {record['status']!r} is neither 'ok' nor 'diverged'")
    if record["seed"] < 0 or record["parameters"] < 1:
        raise ValueError("seed: negative, or parameters: none")
    try:
        config = config_from_dict(record["config"])
    except ConfigError as error:
        raise ValueError(f"config: {error}") from None
    if config.hash() != record["config_hash"]:
        raise ValueError(f"config_hash: {record['config_hash']!r} is not its config's hash")
    epochs = _check_history(record["history"])
    if "test_history" in record:
        _check_test_history(record["test_history"], epochs)
    if record["status"] == "ok":
        _check_finished(record, epochs)


def _check_history(history: list[Any]) -> int:
    for number, entry in enumerate(history, start=1):
        _check_type("history entry", entry, dict)
        if entry.get("epoch") != number:
            raise ValueError(f"history: entry {number} is epoch {entry.get('epoch')!r}")
        for key in HISTORY_LOSSES:
            _number(f"history[{number}].{key}", entry.get(key), finite=False)
        for key in HISTORY_ACCURACIES:
            _fraction(f"history[{number}].{key}", entry.get(key))
    return len(history)


def _check_test_history(test_history: list[Any], epochs: int) -> None:
    if len(test_history) not in (0, epochs):
        raise ValueError(f"test_history: {len(test_history)} epochs for {epochs} in history")
    for number, entry in enumerate(test_history, start=1):
        _check_type("test_history entry", entry, dict)
        if entry.get("epoch") != number:
            raise ValueError(f"test_history: entry {number} is epoch {entry.get('epoch')!r}")
        _number(f"test_history[{number}].test_loss", entry.get("test_loss"), finite=False)
        _fraction(f"test_history[{number}].test_accuracy", entry.get("test_accuracy"))
        _check_type(
            f"test_history[{number}].test_misclassified", entry.get("test_misclassified"), list
        )


def _check_finished(record: dict[str, Any], epochs: int) -> None:
    metrics = record["metrics"]
    for key in ("test_accuracy", "best_val_accuracy"):
        _fraction(f"metrics.{key}", metrics.get(key))
    _number("metrics.test_loss", metrics.get("test_loss"), finite=False)
    _number("metrics.train_val_gap", metrics.get("train_val_gap"))
    best = metrics.get("best_epoch")
    if not _is_int(best) or not 1 <= best <= epochs:
        raise ValueError(f"metrics.best_epoch: {best!r} is not an epoch of its {epochs}")
    confusion = record["confusion_matrix"]
    if len(confusion) != NUM_CLASSES or not all(
        isinstance(row, list)
        and len(row) == NUM_CLASSES
        and all(_is_int(c) and c >= 0 for c in row)
        for row in confusion
    ):
        raise ValueError("confusion_matrix: expected 10 rows of 10 counts")
    tested = sum(map(sum, confusion))
    right = sum(confusion[d][d] for d in range(NUM_CLASSES))
    if tested == 0 or abs(right / tested - metrics["test_accuracy"]) > 1e-9:
        raise ValueError("metrics.test_accuracy: not the confusion matrix's accuracy")
    digits = record["per_digit_accuracy"]
    if len(digits) != NUM_CLASSES:
        raise ValueError(f"per_digit_accuracy: {len(digits)} digits, expected {NUM_CLASSES}")
    for digit, value in enumerate(digits):
        if not (isinstance(value, float) and math.isnan(value)):  # a digit absent from the test
            _fraction(f"per_digit_accuracy[{digit}]", value)
    _indices("test_misclassified", record["test_misclassified"], tested, tested - right)
    predictions = record.get("test_predictions")
    if predictions is not None and (
        not isinstance(predictions, str) or len(predictions) != tested or not predictions.isdigit()
    ):
        raise ValueError(f"test_predictions: expected {tested} digits")
    for number, entry in enumerate(record.get("test_history", []), start=1):
        wrong = round((1 - entry["test_accuracy"]) * tested)
        _indices(
            f"test_history[{number}].test_misclassified", entry["test_misclassified"], tested, wrong
        )


def _indices(what: str, values: list[Any], tested: int, expected: int) -> None:
    if len(values) != expected or not all(_is_int(i) and 0 <= i < tested for i in values):
        raise ValueError(f"{what}: expected {expected} image indices below {tested}")


def _check_type(what: str, value: Any, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{what}: {value!r:.40} is not of the expected type")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(what: str, value: Any, finite: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what}: {value!r:.40} is not a number")
    if finite and not math.isfinite(value):
        raise ValueError(f"{what}: {value!r:.40} is not a finite number")
    return value


def _fraction(what: str, value: Any) -> None:
    if not 0 <= _number(what, value) <= 1:
        raise ValueError(f"{what}: {value!r:.40} is not a fraction between 0 and 1")
