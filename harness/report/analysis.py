"""A study's data as the reports read it, from the saved plan and the stored records alone: each
arm's runs, per-digit breakdowns, confusions, learning curves and layers. The comparisons with
the reference and their verdicts are in harness.report.comparisons.

The plan says which arms exist and which seeds each was asked for; an arm's runs are the stored
records of its config, engine and seeds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from harness.core.config import Config
from harness.core.model import build_model
from harness.core.store import RunConditions, RunKey, RunStore
from harness.stats import inference
from harness.stats.budgets import declared_budgets, selected_epochs
from harness.study.factorial_design import factorial_runs
from harness.study.plan import TUNED, Plan, baseline_of, load_plan
from harness.study.search import load_retune_summaries, load_search_summaries
from harness.study.specs import REFERENCE

ABLATIONS, SELECTED = "planned ablations", "selected by the search"
RETUNED = "at each arm's own settings"


@dataclass(frozen=True)
class StudyData:
    """The plan, every stored record (flattened, one row each) and the searches' summaries."""

    plan: Plan | None
    frame: pd.DataFrame
    searches: dict[str, dict[str, Any]]  # by tuned arm label: the search, then its repeats
    retuned: dict[str, dict[str, Any]]  # by arm label: its --retune search (retune.retune_arm)
    corrupt: int  # records set aside because they did not parse
    results_dir: Path  # where the records came from: a report copies them next to itself

    @property
    def search(self) -> dict[str, Any] | None:
        """The first search's summary (the one run_all's tuned arm comes from)."""
        return self.searches.get(TUNED)

    @property
    def labels(self) -> list[str]:
        return list(self.plan.arms) if self.plan else []

    @functools.cached_property
    def conditions(self) -> RunConditions:
        """Which runs the study's analysis reads: the plan's engine, platform and data; for a
        plan saved before the platform was recorded, the platform that holds most of its runs
        (ties: the first by name), so that no comparison mixes machines."""
        conditions = self.plan.conditions
        if conditions.platform or self.frame.empty:
            return conditions
        ours = self.frame[
            (self.frame["engine"] == conditions.engine) & (self.frame["data"] == conditions.data)
        ]
        counts = ours["platform"].value_counts()
        best = sorted(counts[counts == counts.max()].index)[0] if len(counts) else ""
        return conditions._replace(platform=best)

    @functools.cached_property
    def budgets(self) -> tuple[int, ...]:
        """The training budgets whose verdicts join the error budget: the plan's (or the
        default) below the reference's epochs, and that full budget; the full budget alone
        where the reference's or a cell's runs kept no epoch's test evaluation (records of
        schema 2), or under seeds until decided (Stein's verdicts are of the planned runs)."""
        epochs = self.plan.reference.config.epochs
        runs = self.ok_runs(REFERENCE)
        if len(cells := self.cell_runs()):
            runs = pd.concat([runs, self.frame.loc[cells["record"]]])
        if self.plan.stein_design is not None or not epoch_tests(runs):
            return (epochs,)
        return declared_budgets(epochs, self.plan.budgets)

    def runs(self, label: str) -> pd.DataFrame:
        """The arm's stored runs (diverged ones included) on its planned seeds, by seed."""
        arm = self.plan.arms[label]
        frame = self.frame
        if frame.empty:
            return frame
        chosen = frame[
            (frame["config_hash"] == arm.config.hash())
            & self.under_conditions()
            & frame["seed"].isin(arm.seeds)
        ]
        return chosen.sort_values("seed").reset_index(drop=True)

    def under_conditions(self) -> pd.Series:
        """Which stored runs were trained under the study's conditions."""
        engine, platform, data = self.conditions
        frame = self.frame
        return (
            (frame["engine"] == engine) & (frame["platform"] == platform) & (frame["data"] == data)
        )

    def ok_runs(self, label: str) -> pd.DataFrame:
        runs = self.runs(label)
        return runs[runs["status"] == "ok"].reset_index(drop=True) if len(runs) else runs

    def labels_with_runs(self) -> list[str]:
        return [label for label in self.labels if len(self.ok_runs(label))]

    def cell_runs(self) -> pd.DataFrame:
        """The factorial's finished runs, one row per cell and seed (see factorial_runs;
        `record` is the row in self.frame)."""
        if self.plan is None or self.plan.factorial is None or self.frame.empty:
            return pd.DataFrame()
        plan = self.plan
        return factorial_runs(plan.factorial, plan.reference.config, self.conditions, self.frame)

    def other_runs(self) -> pd.DataFrame:
        """Stored runs that belong to no arm and no cell of the plan (e.g. `harness.train`)."""
        if self.frame.empty:
            return self.frame
        used = pd.concat([self.runs(label) for label in self.labels] or [self.frame.iloc[:0]])
        paths = set(used["path"])
        if len(cells := self.cell_runs()):
            paths |= set(self.frame.loc[cells["record"], "path"])
        return self.frame[~self.frame["path"].isin(paths)].reset_index(drop=True)


def load_study_data(results_dir: Path) -> StudyData:
    store = RunStore(results_dir)
    store.check_readable()
    rows = []
    for record in store.records():
        key = RunKey.of(record)
        row = {k: v for k, v in record.items() if k != "metrics"}
        row.update(record.get("metrics", {}))
        row.update(platform=key.platform, data=key.data, path=store.path(key).name)
        rows.append(row)
    return StudyData(
        load_plan(results_dir),
        pd.DataFrame(rows),
        load_search_summaries(results_dir),
        load_retune_summaries(results_dir),
        store.corrupt_count(),
        Path(results_dir),
    )


def correct_matrix(runs: pd.DataFrame) -> np.ndarray:
    """[runs, test images] booleans: which test images each run classified correctly."""
    if not len(runs):
        return np.ones((0, 0), dtype=bool)
    tested = int(np.sum(runs["confusion_matrix"].iloc[0]))
    correct = np.ones((len(runs), tested), dtype=bool)
    for row, wrong in enumerate(runs["test_misclassified"]):
        correct[row, wrong] = False
    return correct


def epoch_tests(runs: pd.DataFrame) -> bool:
    """Whether every run kept each epoch's test evaluation (schema 3), so that it can be read at
    every budget; older records report at their full budget only."""
    if not len(runs) or "test_history" not in runs:
        return False
    return all(
        isinstance(tests, list) and len(tests) == len(history) > 0
        for tests, history in zip(runs["test_history"], runs["history"], strict=True)
    )


def budget_epochs(runs: pd.DataFrame, budget: int) -> list[int]:
    """Each run's epoch (0-based) at a training budget: the one a `budget`-epoch run would have
    chosen, by validation accuracy among its first `budget` epochs (all of them, in a shorter
    run)."""
    chosen = []
    for history in runs["history"]:
        val = np.array([[epoch["val_accuracy"] for epoch in history[:budget]]])
        chosen.append(int(selected_epochs(val)[0, -1]))
    return chosen


def at_budget(runs: pd.DataFrame, budget: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Each run's test accuracy [runs] and correctness [runs, images] at a training budget
    (None: at the run's own best epoch, as its record keeps it)."""
    if budget is None:
        return runs["test_accuracy"].to_numpy(dtype=float), correct_matrix(runs)
    epochs = budget_epochs(runs, budget)
    tested = int(np.sum(runs["confusion_matrix"].iloc[0]))
    correct = np.ones((len(runs), tested), dtype=bool)
    accuracy = np.empty(len(runs))
    for row, (tests, epoch) in enumerate(zip(runs["test_history"], epochs, strict=True)):
        correct[row, tests[epoch]["test_misclassified"]] = False
        accuracy[row] = tests[epoch]["test_accuracy"]
    return accuracy, correct


def correct_counts(runs: pd.DataFrame) -> np.ndarray:
    """Integer counts even for no runs: the exact Wilcoxon test refuses floats."""
    return np.array([np.trace(np.array(m)) for m in runs["confusion_matrix"]], dtype=int)


def paired_runs(data: StudyData, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The arm's and its baseline's (the reference, or the retuned reference for a retuned
    arm) finished runs on the seeds both finished, row by row."""
    variant, reference = data.ok_runs(label), data.ok_runs(baseline_of(label))
    seeds = sorted(set(variant["seed"]) & set(reference["seed"]))
    pick = lambda runs: runs.set_index("seed").loc[seeds].reset_index()  # noqa: E731
    return pick(variant), pick(reference)


def lr_cuts(history: list[dict[str, Any]]) -> list[int]:
    """The epochs after which the scheduler cut the learning rate (an epoch records the rate it
    trained with, so a cut shows in the next epoch's record)."""
    return [
        history[i - 1]["epoch"]
        for i in range(1, len(history))
        if history[i]["lr"] < history[i - 1]["lr"]
    ]


def first_lr_cuts(runs: pd.DataFrame) -> list[int]:
    """Per run that had a cut, the first epoch after which the plateau scheduler cut the lr."""
    return [cuts[0] for cuts in map(lr_cuts, runs["history"] if len(runs) else []) if cuts]


def used_runs(data: StudyData) -> pd.DataFrame:
    """Every run of every arm (diverged ones included) with its arm as `variant`, then the
    factorial's with their cell: the report's rows, one per arm or cell and run (a config
    shared by two arms, or an arm and a cell, counts under both)."""
    frames = [data.runs(label).assign(variant=label) for label in data.labels]
    if len(cells := data.cell_runs()):
        frames.append(data.frame.loc[cells["record"]].assign(variant=cells["cell"].to_numpy()))
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_digit_table(data: StudyData, label: str) -> pd.DataFrame:
    """Per digit: the mean accuracy over seeds with its t interval and, for a variant, the paired
    difference against the reference on the seeds both finished."""
    accuracy = np.array(list(data.ok_runs(label)["per_digit_accuracy"])).reshape(-1, 10)
    if label != REFERENCE:
        variant, reference = paired_runs(data, label)
        pairs = [
            np.array(list(runs["per_digit_accuracy"])).reshape(-1, 10)
            for runs in (variant, reference)
        ]
    rows = []
    for digit in range(10):
        interval = inference.mean_ci(accuracy[:, digit])
        row: dict[str, Any] = {"digit": digit, "mean": interval.estimate, "ci": tuple(interval[1:])}
        if label != REFERENCE:
            difference = inference.paired_difference_ci(pairs[0][:, digit], pairs[1][:, digit])
            row.update(diff=difference.estimate, diff_ci=tuple(difference[1:]))
        rows.append(row)
    return pd.DataFrame(rows)


def summed_confusion(data: StudyData, label: str) -> np.ndarray:
    """The arm's test confusion matrices summed over its finished runs (rows: true digit)."""
    return np.sum([np.array(m) for m in data.ok_runs(label)["confusion_matrix"]], axis=0)


def confused_pairs(confusion: np.ndarray, top: int | None = None) -> list[dict[str, Any]]:
    """(true → predicted) errors by count, most frequent first (ties by digit), with each one's
    share of the true digit's errors."""
    errors = np.array(confusion)
    np.fill_diagonal(errors, 0)
    pairs = sorted(
        ((int(errors[t, p]), t, p) for t in range(10) for p in range(10) if t != p),
        key=lambda pair: (-pair[0], pair[1], pair[2]),
    )
    return [
        {"true": t, "predicted": p, "count": count, "share": count / max(1, errors[t].sum())}
        for count, t, p in pairs[:top]
    ]


def curve_bands(runs: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """A history column over the epochs all runs reached: mean and 95% t band per epoch."""
    epochs = min(len(history) for history in runs["history"])
    values = np.array([[e[key] for e in history[:epochs]] for history in runs["history"]])
    bands = [inference.mean_ci(values[:, i]) for i in range(epochs)]
    return {
        "epoch": np.arange(1, epochs + 1),
        "mean": np.array([band.estimate for band in bands]),
        "low": np.array([band.low for band in bands]),
        "high": np.array([band.high for band in bands]),
    }


def architecture(config: Config) -> list[dict[str, Any]]:
    """The layers harness.core.model builds for the config, with their parameter counts (built on
    the meta device: no memory, no draw from the random generator)."""
    with torch.device("meta"):
        model = build_model(config)
    layers = []
    for module in model:
        if isinstance(module, nn.Linear):
            detail, width = f"{module.in_features} → {module.out_features}", module.out_features
        elif isinstance(module, nn.BatchNorm1d):
            detail, width = "γ, β per unit", module.num_features
        elif isinstance(module, nn.Dropout):
            detail, width = f"p = {module.p:g}", None
        else:
            detail, width = "", None
        count = sum(parameter.numel() for parameter in module.parameters())
        layers.append(
            {"layer": type(module).__name__, "width": width, "detail": detail, "parameters": count}
        )
    return layers
