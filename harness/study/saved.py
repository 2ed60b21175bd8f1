"""The files a study saves beside its plan and its runs: each search's summary (tuned.json,
tuned-repeatK.json) and --retune's choices (retuned.json), read and checked as the plan is, so
that a damaged one stops a command in one line before it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.config import config_from_dict
from harness.study.plan import TUNED, load_plan, read_json_file, tuned_label

SEARCH_SUMMARY_FILE = "tuned.json"  # the search's summary: the tuned config and its study


def summary_file(label: str) -> str:
    """tuned.json, and for --repeats tuned-repeat2.json, ..."""
    return f"{label}.json"


def load_search_summary(results_dir: Path, label: str = TUNED) -> dict[str, Any] | None:
    path = Path(results_dir) / summary_file(label)
    if not path.is_file():
        return None
    remedy = "move it away and run the search again: it rewrites it from its study database"
    return read_json_file(path, "search summary", _checked_summary, remedy)


def load_search_summaries(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Every saved search, by its tuned arm's label, the first search first."""
    summaries, repeat = {}, 0
    while (summary := load_search_summary(results_dir, tuned_label(repeat))) is not None:
        summaries[tuned_label(repeat)] = summary
        repeat += 1
    return summaries


def _checked_summary(summary: Any) -> dict[str, Any]:
    """The fields that the plan and the reports read, with their types."""
    if not isinstance(summary, dict):
        raise TypeError(f"summary: expected dict, got {summary!r:.60}")
    config_from_dict(summary["config"])
    for key, expected in SUMMARY_FIELDS.items():
        if not isinstance(summary[key], expected) or isinstance(summary[key], bool):
            raise TypeError(f"{key}: expected {expected}, got {summary[key]!r:.60}")
    return summary


SUMMARY_FIELDS: dict[str, Any] = {
    "study": str,
    "storage": str,
    "best_trial": int,
    "best_value": float,
    "best_params": dict,
    "counts": dict,
    "space": dict,
    "trials": list,
}


RETUNE_SUMMARY_FILE = "retuned.json"  # --retune: each arm's own values and their search


def load_retune_summaries(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Each retuned arm's search, by the arm's label ({} before any)."""
    path = Path(results_dir) / RETUNE_SUMMARY_FILE
    if not path.is_file():
        return {}
    remedy = "move it away and rerun with --retune: it rewrites it from its study database"
    return read_json_file(path, "retune summary", _checked_summaries, remedy)


def _checked_summaries(data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object by arm, got {data!r:.60}")
    for summary in data.values():
        if not all(isinstance(v, float) for v in summary["values"].values()):
            raise TypeError(f"values: expected numbers, got {summary['values']!r:.60}")
        float(summary["best_value"])
    return data


def check_saved_files(results_dir: Path) -> None:
    """Fails in one line, before any training, where the saved plan or search summary is
    damaged (rather than after a search that took an hour)."""
    load_plan(results_dir)
    load_search_summaries(results_dir)
    load_retune_summaries(results_dir)
