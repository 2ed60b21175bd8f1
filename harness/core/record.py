"""The run record: what one trained (config, seed, engine) leaves on disk, and its check.

Identity: config_hash, seed and engine (store.RunKey). A reader relies only on the fields that
check_record checks; the rest are kept for whoever studies a run later.
"""

from __future__ import annotations

from typing import Any, TypedDict

RECORD_SCHEMA = 2  # 2: engine in the identity, one random stream per source, test predictions


class RunRecord(TypedDict, total=False):
    """A stored run (schema RECORD_SCHEMA).

    Identity: config_hash, seed and engine (store.RunKey). A diverged run has no metrics, no
    per-digit or per-image fields. Accuracies are fractions; history has one dict per epoch
    (epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds).
    """

    schema: int
    label: str
    config_hash: str
    seed: int
    engine: str  # training.engine: cpu1t, cpu2t, cuda, cuda-stacked, ...
    config: dict[str, Any]  # Config.to_dict()
    status: str  # "ok" or "diverged"
    diverged_epoch: int | None
    divergence: str | None  # which part of divergence_rule fired
    divergence_rule: str
    history: list[dict[str, Any]]
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


NUMBER = (int, float)
RECORD_FIELDS: dict[str, Any] = {  # what every reader needs
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
FINISHED_FIELDS: dict[str, Any] = {  # a run that did not diverge
    "metrics": dict,
    "per_digit_accuracy": list,
    "confusion_matrix": list,
    "test_misclassified": list,
}
METRIC_FIELDS: dict[str, Any] = {
    "test_accuracy": NUMBER,
    "test_loss": NUMBER,
    "best_val_accuracy": NUMBER,
    "best_epoch": int,
    "train_val_gap": NUMBER,
}


def check_record(record: Any) -> None:
    """Raises TypeError or ValueError naming the first field of a stored run that is missing
    or of the wrong type (a bool is no number)."""
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    fields = {**RECORD_FIELDS, **(FINISHED_FIELDS if record.get("status") == "ok" else {})}
    for key, expected in fields.items():
        if key not in record:
            raise ValueError(f"no {key!r}")
        if isinstance(record[key], bool) or not isinstance(record[key], expected):
            raise TypeError(f"{key}: {record[key]!r:.40} is not of the expected type")
    if record["status"] not in ("ok", "diverged"):
        raise ValueError(f"status: {record['status']!r} is neither 'ok' nor 'diverged'")
    if record["status"] == "ok":
        for key, expected in METRIC_FIELDS.items():
            value = record["metrics"].get(key)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise TypeError(f"metrics.{key}: {value!r:.40} is not a number")
    if record["seed"] < 0:
        raise ValueError(f"seed: {record['seed']} is negative")
