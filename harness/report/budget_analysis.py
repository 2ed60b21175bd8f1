"""A component's worth at every training budget, from the stored per-epoch evaluations: each
one-at-a-time arm's paired effect at every budget k (the factorial's effects at every budget:
harness.report.factorial_analysis), where each verdict settles, the time each arm and cell takes
to reach target validation accuracies (in epochs and in seconds, runs that never reach one
censored), and each arm against the reference at equal training time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.analysis import (
    ABLATIONS,
    StudyData,
    at_budget,
    epoch_tests,
    paired_runs,
)
from harness.report.comparisons import budget_effects, family_of, family_sizes, paired_effect
from harness.report.factorial_analysis import FactorialAnalysis
from harness.stats.budgets import settled_from
from harness.stats.time_to_target import median_time, time_ratios, times_to_target
from harness.stats.verdicts import family_confidence
from harness.study.plan import is_baseline
from harness.study.specs import REFERENCE

TARGET_STEP = 0.0005  # default targets are rounded down to 0.05 pp


@dataclass(frozen=True)
class BudgetAnalysis:
    epochs: int  # E: the reference's epochs, the full budget
    budgets: tuple[int, ...]  # the declared budgets, E last
    arms: pd.DataFrame  # one-at-a-time: each arm's paired effect at every budget (column arm)
    settles: pd.DataFrame  # per effect (arms and factorial): where its verdict settles
    targets: tuple[float, ...]
    targets_chosen: bool  # the plan's own, or else derived from the reference's runs
    times: pd.DataFrame  # per arm or cell and target: median epochs and seconds to reach it
    ratios: pd.DataFrame  # per change and target: the time ratio in epochs and in seconds
    equal_time: pd.DataFrame  # per arm: against the reference at equal training time
    clock: pd.DataFrame  # per arm and budget: mean cumulative seconds, mean test accuracy


def budget_analysis(data: StudyData, factorial: FactorialAnalysis | None) -> BudgetAnalysis | None:
    """None where the study's runs kept no per-epoch test evaluation (records of schema 2), or
    it has no planned ablation or factorial to follow over budgets."""
    reference = data.ok_runs(REFERENCE)
    if not epoch_tests(reference) or len(reference) < 2:
        return None
    epochs = data.plan.reference.config.epochs
    arms = [
        label
        for label in data.labels_with_runs()
        if family_of(label) == ABLATIONS
        and not is_baseline(label)
        and epoch_tests(data.ok_runs(label))
        and len(paired_runs(data, label)[0]) >= 2
    ]
    if not arms and (factorial is None or factorial.by_budget is None):
        return None
    confidence = family_confidence(family_sizes(data)[ABLATIONS])
    by_arm = pd.concat(
        [budget_effects(data, label, confidence).assign(arm=label) for label in arms]
        or [pd.DataFrame()],
        ignore_index=True,
    )
    targets = data.plan.targets or default_targets(reference, data.plan.margin)
    return BudgetAnalysis(
        epochs,
        data.budgets,
        by_arm,
        settling(by_arm, factorial),
        targets,
        data.plan.targets is not None,
        target_times(data, [REFERENCE, *arms], factorial, targets),
        target_ratios(data, arms, factorial, targets),
        equal_time(data, arms, confidence),
        clock(data, [REFERENCE, *arms]),
    )


def default_targets(reference: pd.DataFrame, margin: float) -> tuple[float, float]:
    """Two validation accuracies that the reference reaches: its mean at a fifth of its epochs,
    and its mean best less the margin, each rounded down to 0.05 pp."""
    val = _curves(reference, "val_accuracy")
    early = val[:, max(1, math.ceil(val.shape[1] / 5)) - 1].mean()
    late = np.nanmax(val, axis=1).mean() - margin
    return tuple(math.floor(t / TARGET_STEP) * TARGET_STEP for t in (early, late))


def settling(by_arm: pd.DataFrame, factorial: FactorialAnalysis | None) -> pd.DataFrame:
    """Per effect, the first budget from which its verdict no longer changes up to E (None:
    still moving at E), with its verdicts at the declared budgets."""
    rows = []
    groups = [] if by_arm.empty else [("one at a time", arm, g) for arm, g in by_arm.groupby("arm")]
    if factorial is not None and factorial.by_budget is not None:
        table = factorial.by_budget
        groups += [(kind, effect, g) for (kind, effect), g in table.groupby(["kind", "effect"])]
    for kind, effect, group in groups:
        group = group.sort_values("budget")
        rows.append(
            {
                "kind": kind,
                "effect": effect,
                "settles_from": settled_from(list(group["verdict"])),
                **{
                    f"at {row.budget}": row.estimate
                    for row in group[group["declared"]].itertuples()
                },
            }
        )
    return pd.DataFrame(rows)


def _curves(runs: pd.DataFrame, key: str) -> np.ndarray:
    """[runs, epochs] of a history column, NaN past a run's last epoch."""
    longest = max(len(history) for history in runs["history"])
    out = np.full((len(runs), longest), np.nan)
    for row, history in enumerate(runs["history"]):
        out[row, : len(history)] = [epoch[key] for epoch in history]
    return out


def _times(runs: pd.DataFrame, target: float) -> dict[str, object]:
    val = _curves(runs, "val_accuracy")
    epochs = np.where(np.isnan(val), np.nan, np.arange(1, val.shape[1] + 1))
    seconds = np.nancumsum(_curves(runs, "seconds"), axis=1)
    seconds[np.isnan(val)] = np.nan
    return {
        "epochs": times_to_target(val, epochs, target),
        "seconds": times_to_target(val, seconds, target),
    }


def target_times(
    data: StudyData, labels: list[str], factorial: FactorialAnalysis | None, targets
) -> pd.DataFrame:
    """Per arm (and factorial cell) and target: Kaplan–Meier's median epochs and seconds to it,
    with their intervals, and how many runs reached it."""
    groups = [(label, data.ok_runs(label)) for label in labels]
    if factorial is not None:
        runs = data.cell_runs()
        for cell, rows in runs[runs["seed"].isin(factorial.answer_seeds)].groupby("cell"):
            groups.append((cell, data.frame.loc[rows["record"]]))
    rows = []
    for label, runs in groups:
        for target in targets:
            times = _times(runs, target)
            rows.append(
                {
                    "arm": label,
                    "target": target,
                    "runs": len(runs),
                    "reached": int(np.isfinite(times["epochs"].upper).sum()),
                    "epochs": median_time(times["epochs"]),
                    "seconds": median_time(times["seconds"]),
                }
            )
    return pd.DataFrame(rows)


def target_ratios(
    data: StudyData, arms: list[str], factorial: FactorialAnalysis | None, targets
) -> pd.DataFrame:
    """Per change and target: the time ratio to reach it, in epochs and in seconds (Weibull AFT,
    interval-censored). The one-at-a-time arms share one model, an indicator per arm against
    the reference on the seeds they share with it; the factorial's main effects another, over
    its cells."""
    rows = []
    arm_runs, seeds = [], set()
    for label in arms:
        variant, _ = paired_runs(data, label)
        arm_runs.append(variant)
        seeds |= set(variant["seed"])
    reference = data.ok_runs(REFERENCE)
    reference = reference[reference["seed"].isin(seeds)]
    one_at_a_time = pd.concat([reference, *arm_runs], ignore_index=True)
    arm = np.repeat(np.arange(-1, len(arms)), [len(reference), *map(len, arm_runs)])
    indicators = pd.DataFrame({f"arm{i}": (arm == i).astype(int) for i in range(len(arms))})
    indicators = indicators.join(_blocks(one_at_a_time["seed"]))
    if factorial is not None:
        cells = data.cell_runs()
        cells = cells[cells["seed"].isin(factorial.answer_seeds)]
        cell_runs = data.frame.loc[cells["record"]]
        coded = cells[factorial.factors].reset_index(drop=True).join(_blocks(cells["seed"]))
    for target in targets:
        if arms:
            times = _times(one_at_a_time, target)
            ratios = {unit: time_ratios(times[unit], indicators) for unit in ("epochs", "seconds")}
            for i, label in enumerate(arms):
                rows.append(
                    {
                        "kind": "one at a time",
                        "change": label,
                        "target": target,
                        **{unit: ratios[unit][f"arm{i}"] for unit in ("epochs", "seconds")},
                    }
                )
        if factorial is None:
            continue
        times = _times(cell_runs, target)
        ratios = {unit: time_ratios(times[unit], coded, scale=2) for unit in ("epochs", "seconds")}
        for factor in factorial.factors:
            rows.append(
                {
                    "kind": "main effect",
                    "change": factor,
                    "target": target,
                    **{unit: ratios[unit][factor] for unit in ("epochs", "seconds")},
                }
            )
    return pd.DataFrame(rows)


def _blocks(seeds: pd.Series) -> pd.DataFrame:
    """The seed as a blocking factor: an indicator per seed but the first, so that each change
    is compared within seeds, as the accuracy effects are."""
    blocks = pd.get_dummies(seeds.reset_index(drop=True), prefix="seed", drop_first=True)
    return blocks.astype(int)


def clock(data: StudyData, labels: list[str]) -> pd.DataFrame:
    """Per arm and budget k: the mean over its runs of the seconds to train k epochs, and of the
    test accuracy at budget k: accuracy against training time."""
    rows = []
    for label in labels:
        runs = data.ok_runs(label)
        seconds = np.nancumsum(_curves(runs, "seconds"), axis=1).mean(axis=0)
        for budget in range(1, len(seconds) + 1):
            accuracy, _ = at_budget(runs, budget)
            rows.append(
                {"arm": label, "budget": budget, "seconds": seconds[budget - 1],
                 "accuracy": accuracy.mean()}
            )  # fmt: skip
    return pd.DataFrame(rows)


def equal_time(data: StudyData, arms: list[str], confidence: float) -> pd.DataFrame:
    """Each arm against the reference at equal training time: the faster of the two at its full
    budget, the slower at the largest budget whose mean training time fits in the faster's,
    paired by seed (the test-image part included, at the family's level)."""
    rows = []
    for label in arms:
        variant, reference = paired_runs(data, label)
        times = {
            name: np.nancumsum(_curves(runs, "seconds"), axis=1).mean(axis=0)
            for name, runs in (("variant", variant), ("reference", reference))
        }
        faster = "variant" if times["variant"][-1] <= times["reference"][-1] else "reference"
        slower = "reference" if faster == "variant" else "variant"
        fits = np.flatnonzero(times[slower] <= times[faster][-1] * (1 + 1e-9))
        if not len(fits):
            continue
        budgets = {faster: len(times[faster]), slower: int(fits[-1]) + 1}
        views = {
            name: at_budget(runs, budgets[name])
            for name, runs in (("variant", variant), ("reference", reference))
        }
        effect = paired_effect(
            views["variant"][0], views["reference"][0], views["variant"][1],
            views["reference"][1], confidence, data.plan.margin,
        )  # fmt: skip
        rows.append(
            {
                "arm": label,
                "variant_epochs": budgets["variant"],
                "reference_epochs": budgets["reference"],
                "seconds": times[faster][-1],
                **effect,
            }
        )
    return pd.DataFrame(rows)
