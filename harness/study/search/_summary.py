"""What a search leaves beside the study's runs: each search's summary (tuned.json,
tuned-repeatK.json) and --retune's choices (retuned.json), as typed objects. They are read and
checked as the plan is, so that a damaged one stops a command in one line before it trains, and
the reports never need the search database.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.config import Config, config_from_dict
from harness.core.store import write_json_atomically
from harness.study.plan import TUNED, Arm, load_plan, read_json_file, tuned_label

RETUNE_SUMMARY_FILE = "retuned.json"  # --retune: each arm's own values and their search
FINISHED_STATES = ("complete", "pruned")


@dataclass(frozen=True)
class Trial:
    """One trial of a search as its summary keeps it."""

    number: int
    state: str  # Optuna's TrialState, lower case: complete, pruned, fail, running, waiting
    value: float | None  # its best validation accuracy (a pruned one's when it stopped)
    failure: str | None  # why it was pruned or failed, where the objective said


@dataclass(frozen=True)
class SearchSummary:
    """A finished search: its choice and every trial, enough for the reports."""

    study: str
    storage: str  # the URL without its password
    config: Config  # the chosen config: the best trial's
    best_trial: int
    best_value: float  # its validation accuracy
    best_params: dict[str, Any]
    counts: dict[str, int]  # trials by state
    space: dict[str, str]  # each parameter's Optuna distribution, as text
    trials: tuple[Trial, ...]
    importances: dict[str, float] | None = None  # PED-ANOVA; None: too few complete trials
    wall_seconds: float | None = None  # first trial's start to last trial's end
    trial_seed: int | None = None  # the trials' training seed (None: not recorded)
    trials_per_round: int | None = None  # a stacked search's trials asked at once

    @property
    def finished(self) -> int:
        return sum(self.counts.get(state, 0) for state in FINISHED_STATES)

    def trial_values(self) -> list[float]:
        """Each finished trial's validation accuracy (a pruned one's when it was stopped)."""
        return [t.value for t in self.trials if t.state in FINISHED_STATES and t.value is not None]

    def arm(self, seeds: list[int], label: str = TUNED) -> Arm:
        """The tuned arm: the chosen config re-trained on the given seeds."""
        description = f"best of Optuna study {self.study!r} on validation accuracy"
        return Arm(label, description, self.config, tuple(seeds))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> SearchSummary:
        """A saved summary, every field the reports read checked (TypeError, ValueError,
        KeyError or ConfigError name the first that is wrong)."""
        _typed(data, dict, "summary")
        trials = tuple(
            Trial(
                _typed(t["number"], int, "trials.number"),
                _typed(t["state"], str, "trials.state"),
                _optional_number(t.get("value"), "trials.value"),
                t.get("failure"),
            )
            for t in _typed(data["trials"], list, "trials")
        )
        importances = data.get("importances")
        if importances is not None:
            importances = _numbers(_typed(importances, dict, "importances"), "importances")
        counts = _typed(data["counts"], dict, "counts")
        return cls(
            study=_typed(data["study"], str, "study"),
            storage=_typed(data["storage"], str, "storage"),
            config=config_from_dict(data["config"]),
            best_trial=_typed(data["best_trial"], int, "best_trial"),
            best_value=_number(data["best_value"], "best_value"),
            best_params=_typed(data["best_params"], dict, "best_params"),
            counts={state: _typed(n, int, "counts") for state, n in counts.items()},
            space=_typed(data["space"], dict, "space"),
            trials=trials,
            importances=importances,
            wall_seconds=_optional_number(data.get("wall_seconds"), "wall_seconds"),
            trial_seed=_optional(data.get("trial_seed"), int, "trial_seed"),
            trials_per_round=_optional(data.get("trials_per_round"), int, "trials_per_round"),
        )


@dataclass(frozen=True)
class RetuneSummary:
    """One arm's --retune search: the values it chose for the retuned parameters."""

    study: str
    params: tuple[str, ...]  # the parameters this arm retuned (weight decay only if it has some)
    values: dict[str, float]  # its chosen values
    best_value: float  # their validation accuracy
    own_values: dict[str, float]  # the arm's values before retuning
    trials: int  # finished trials
    trial_seed: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"params": list(self.params)}

    @classmethod
    def from_dict(cls, data: Any) -> RetuneSummary:
        _typed(data, dict, "retune summary")
        return cls(
            study=_typed(data["study"], str, "study"),
            params=tuple(_typed(data["params"], list, "params")),
            values=_numbers(_typed(data["values"], dict, "values"), "values"),
            best_value=_number(data["best_value"], "best_value"),
            own_values=_numbers(_typed(data["own_values"], dict, "own_values"), "own_values"),
            trials=_typed(data["trials"], int, "trials"),
            trial_seed=_typed(data["trial_seed"], int, "trial_seed"),
        )


def summary_file(label: str) -> str:
    """tuned.json, and for --repeats tuned-repeat2.json, ..."""
    return f"{label}.json"


def save_search_summary(summary: SearchSummary, results_dir: Path, label: str) -> None:
    write_json_atomically(Path(results_dir) / summary_file(label), summary.to_dict())


def load_search_summary(results_dir: Path, label: str = TUNED) -> SearchSummary | None:
    path = Path(results_dir) / summary_file(label)
    if not path.is_file():
        return None
    remedy = "move it away and run the search again: it rewrites it from its study database"
    return read_json_file(path, "search summary", SearchSummary.from_dict, remedy)


def load_search_summaries(results_dir: Path) -> dict[str, SearchSummary]:
    """Every saved search, by its tuned arm's label, the first search first."""
    summaries, repeat = {}, 0
    while (summary := load_search_summary(results_dir, tuned_label(repeat))) is not None:
        summaries[tuned_label(repeat)] = summary
        repeat += 1
    return summaries


def save_retune_summaries(summaries: dict[str, RetuneSummary], results_dir: Path) -> None:
    data = {label: summary.to_dict() for label, summary in summaries.items()}
    write_json_atomically(Path(results_dir) / RETUNE_SUMMARY_FILE, data)


def load_retune_summaries(results_dir: Path) -> dict[str, RetuneSummary]:
    """Each retuned arm's search, by the arm's label ({} before any)."""
    path = Path(results_dir) / RETUNE_SUMMARY_FILE
    if not path.is_file():
        return {}
    remedy = "move it away and rerun with --retune: it rewrites it from its study database"

    def parse(data: Any) -> dict[str, RetuneSummary]:
        _typed(data, dict, "retune summaries")
        return {label: RetuneSummary.from_dict(summary) for label, summary in data.items()}

    return read_json_file(path, "retune summary", parse, remedy)


def check_saved_files(results_dir: Path) -> None:
    """Fails in one line, before any training, where the saved plan or a search summary is
    damaged (rather than after a search that took an hour)."""
    load_plan(results_dir)
    load_search_summaries(results_dir)
    load_retune_summaries(results_dir)


def _typed(value: Any, expected: type, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{what}: expected {expected.__name__}, got {value!r:.60}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{what}: expected a finite number, got {value!r:.60}")
    return float(value)


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _numbers(values: dict[str, Any], what: str) -> dict[str, float]:
    return {key: _number(value, what) for key, value in values.items()}


def _optional(value: Any, expected: type, what: str) -> Any:
    return None if value is None else _typed(value, expected, what)
