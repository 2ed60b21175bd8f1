"""Each arm against the reference: its accuracy row, its paired comparison, its verdict, and its
paired effect at every training budget.

Each non-reference arm is compared with the reference on the seeds both finished (paired
differences d, in accuracy units), and judged within its family (the planned ablations; the
tuned network apart, being a selected configuration; the arms at their own --retune values) by
its family interval, at confidence 1 − α/m for a family of m verdicts (harness.stats.verdicts:
one error budget for every verdict of the family; the planned ablations' verdicts at each
declared budget are members too), for new seeds and new test sets (harness.stats.population),
with its verdict for this test set beside it and the seeds a decision would need.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import (
    ABLATIONS,
    RETUNED,
    SELECTED,
    StudyData,
    at_budget,
    correct_counts,
    correct_matrix,
    first_lr_cuts,
    paired_runs,
)
from harness.stats import design, inference, population, verdicts
from harness.study.plan import Plan, is_baseline, is_retuned, is_tuned


def family_of(label: str) -> str:
    if is_retuned(label):
        return RETUNED
    return SELECTED if is_tuned(label) else ABLATIONS


def paired_effect(
    variant: np.ndarray,
    reference: np.ndarray,
    variant_correct: np.ndarray,
    reference_correct: np.ndarray,
    confidence: float,
    margin: float,
) -> dict[str, Any]:
    """Variant − reference on paired seeds: the mean Δ, its family interval for new seeds on
    this test set (Student t over the pairs) and for new seeds and new test sets (the seed part
    plus the test-image part, on the same degrees of freedom, so never narrower), the verdict
    each supports, and the image part's floor."""
    d = np.asarray(variant, dtype=float) - np.asarray(reference, dtype=float)
    per_image = population.paired_differences(variant_correct, reference_correct)
    this_set = inference.mean_ci(d, confidence)
    wider = population.seeds_and_images_interval(per_image, confidence)
    image_variance = population.image_part(per_image) if len(d) else math.nan
    return {
        "diff": this_set.estimate,
        "family_ci": tuple(this_set[1:]),  # new seeds, this test set
        "population_family_ci": tuple(wider[1:]),  # new seeds and new test sets
        "verdict": verdicts.interval_verdict(wider.low, wider.high, margin),
        "verdict_this_test_set": verdicts.interval_verdict(this_set.low, this_set.high, margin),
        "image_se": math.sqrt(image_variance),
        "test_set_floor": population.image_floor(image_variance, confidence),
    }


def arm_row(
    data: StudyData, label: str, confidence: float, spread: tuple[float, int] | None = None
) -> dict[str, Any]:
    """One arm's accuracy with its intervals, and its paired comparison with the reference
    (its family interval at the given confidence)."""
    plan = data.plan
    runs, ok = data.runs(label), data.ok_runs(label)
    accuracy = ok["test_accuracy"].to_numpy(dtype=float)
    epochs = plan.arms[label].config.epochs
    row: dict[str, Any] = {
        "variant": label,
        "family": family_of(label),
        "planned_seeds": len(plan.arms[label].seeds),
        "n": len(ok),
        "diverged": int((runs["status"] != "ok").sum()) if len(runs) else 0,
        "parameters": int(runs["parameters"].iloc[0]) if len(runs) else 0,
        "mean": inference.mean_ci(accuracy).estimate,
        "sd": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else math.nan,
        "t_ci": tuple(inference.mean_ci(accuracy)[1:]),
        "bca_ci": tuple(inference.bootstrap_ci(accuracy)[1:]),
        "images_ci": tuple(population.seeds_and_images_interval(correct_matrix(ok))[1:])
        if len(ok)
        else (math.nan, math.nan),
        "best_epoch": float(ok["best_epoch"].mean()) if len(ok) else math.nan,
        "best_at_cap": int((ok["best_epoch"] == epochs).sum()) if len(ok) else 0,
        "test_loss": float(ok["test_loss"].mean()) if len(ok) else math.nan,
        "best_val": float(ok["best_val_accuracy"].mean()) if len(ok) else math.nan,
        "gap": float(ok["train_val_gap"].mean()) if len(ok) else math.nan,
        "seconds_per_epoch": float(runs["seconds_per_epoch"].mean()) if len(runs) else math.nan,
        "first_lr_cut": first_lr_cuts(ok),
    }
    if not is_baseline(label):
        row.update(paired_comparison(data, label, confidence, spread))
    return row


def paired_comparison(
    data: StudyData, label: str, confidence: float, spread: tuple[float, int] | None = None
) -> dict[str, Any]:
    """The paired differences' mean with its 95% interval and its family interval (at the
    given confidence), by Stein's test for an arm whose seeds a pilot planned (spread: the
    pooled pilot spread, where that planned them)."""
    plan = data.plan
    variant, reference = paired_runs(data, label)
    d = (variant["test_accuracy"] - reference["test_accuracy"]).to_numpy(dtype=float)
    n, margin = len(d), plan.margin
    v_correct, r_correct = correct_matrix(variant), correct_matrix(reference)
    effect = paired_effect(
        variant["test_accuracy"],
        reference["test_accuracy"],
        v_correct,
        r_correct,
        confidence,
        margin,
    )
    interval = inference.mean_ci(d)
    tests = {
        "diff_ci": tuple(interval[1:]),  # 95%, this comparison alone
        "p_difference": inference.paired_t_pvalue(d, np.zeros(n)),
        "p_equivalence": inference.tost_pvalue(d, margin),
    }
    two_stage = plan.stein_design is not None and family_of(label) == ABLATIONS
    power_at_cap = math.nan
    if two_stage:  # Stein's test: its spread is the pilot's, it has no test-image part
        pilot = (variant["seed"] < plan.stein_design.pilot_seeds).to_numpy()
        if pilot.sum() >= 2:
            pilot_first = np.concatenate([d[pilot], d[~pilot]])
            n0 = int(pilot.sum())
            s0, df = spread or (float(np.std(d[pilot], ddof=1)), n0 - 1)
            power_at_cap = _power_at_cap(plan, s0, df, n0, confidence)
            stein = design.stein_test(pilot_first, n0, margin, pilot_spread=spread)
            tests = {
                "diff_ci": (stein.ci_low, stein.ci_high),
                "p_difference": stein.p_difference,
                "p_equivalence": stein.p_equivalence,
            }
            family = design.stein_test(pilot_first, n0, margin, confidence, spread)
            effect["diff"] = stein.mean
            effect["family_ci"] = (family.ci_low, family.ci_high)
            effect["verdict"] = effect["verdict_this_test_set"] = verdicts.interval_verdict(
                family.ci_low, family.ci_high, margin
            )
        effect["population_family_ci"] = (math.nan, math.nan)
    mcnemar = [
        inference.mcnemar_pvalue(int((v & ~r).sum()), int((r & ~v).sum()))
        for v, r in zip(v_correct, r_correct, strict=True)
    ]
    per_image = population.paired_differences(v_correct, r_correct)
    return (
        effect
        | tests
        | {
            "n_pairs": n,
            "verdict_ci": effect["family_ci"] if two_stage else effect["population_family_ci"],
            "family_confidence": confidence,
            "diff_images_ci": tuple(population.seeds_and_images_interval(per_image)[1:])
            if n
            else (math.nan, math.nan),
            "sd_diff": float(np.std(d, ddof=1)) if n > 1 else math.nan,
            "power_at_cap": power_at_cap,  # NaN unless the design's cap cut the planned seeds
            "p_wilcoxon": inference.wilcoxon_counts_pvalue(
                correct_counts(variant), correct_counts(reference)
            ),
            "g_z": inference.hedges_gz(d),
            "correlation": _correlation(variant["test_accuracy"], reference["test_accuracy"]),
            "mcnemar_significant": sum(p < 0.05 for p in mcnemar),
        }
    )


def budget_effects(data: StudyData, label: str, confidence: float) -> pd.DataFrame:
    """The arm's paired effect at every training budget k = 1..E (the reference's epochs), each
    run read at the epoch a k-epoch run would have chosen by validation; the intervals at the
    given confidence (the family's, for the declared budgets' verdicts)."""
    variant, reference = paired_runs(data, label)
    rows = []
    for budget in range(1, data.plan.reference.config.epochs + 1):
        v_accuracy, v_correct = at_budget(variant, budget)
        r_accuracy, r_correct = at_budget(reference, budget)
        effect = paired_effect(
            v_accuracy, r_accuracy, v_correct, r_correct, confidence, data.plan.margin
        )
        declared = budget in data.budgets
        rows.append({"budget": budget, "declared": declared, "estimate": effect["diff"], **effect})
    return pd.DataFrame(rows)


def _power_at_cap(plan: Plan, s0: float, df: int, n0: int, confidence: float) -> float:
    """Where the cap cut an arm's planned seeds, the power it has at the cap to find a
    difference of the margin (Stein's test, the pilot's spread, the family's level)."""
    family_size = round(verdicts.ALPHA / (1 - confidence))
    if not s0 > 0 or df < 1:
        return math.nan
    wanted = design.planned_seeds(
        s0, n0, plan.margin, max_seeds=10**6, family_size=family_size, df=df
    )
    if wanted <= plan.stein_design.max_seeds:
        return math.nan
    return design.stein_power(
        plan.margin, s0, plan.stein_design.max_seeds, df, family_size=family_size
    )


def _correlation(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def pooled_pilot_spread(data: StudyData) -> tuple[float, int] | None:
    """Under a pooled two-stage design, the spread its seeds were planned from: the planned
    ablations' paired differences on the pilot's seeds, pooled (sd, degrees of freedom)."""
    plan = data.plan
    if plan.stein_design is None or not plan.stein_design.pooled:
        return None
    pilots = []
    for label in plan.arms:
        if is_baseline(label) or is_tuned(label) or is_retuned(label):
            continue
        variant, reference = paired_runs(data, label)
        d = (variant["test_accuracy"] - reference["test_accuracy"]).to_numpy(dtype=float)
        pilots.append(d[(variant["seed"] < plan.stein_design.pilot_seeds).to_numpy()])
    return design.pooled_sd(pilots)


def family_sizes(data: StudyData) -> Counter:
    """Verdicts per family: each compared arm once, the planned ablations once per declared
    budget."""
    labels = [label for label in data.labels_with_runs() if not is_baseline(label)]
    sizes = Counter(family_of(label) for label in labels)
    sizes[ABLATIONS] *= len(data.budgets)
    return sizes


def comparison_table(data: StudyData) -> pd.DataFrame:
    """One row per arm with runs, the reference first, then by paired effect; each comparison's
    verdict read off its family interval (one error budget per family), for new seeds and new
    test sets (for new seeds on this test set under a two-stage design, whose Stein test has no
    test-image part), and its verdict for this test set beside it."""
    labels = data.labels_with_runs()
    sizes = family_sizes(data)
    spread = pooled_pilot_spread(data)
    frame = pd.DataFrame(
        [
            arm_row(data, label, verdicts.family_confidence(sizes[family_of(label)]), spread)
            for label in labels
        ]
    )
    if frame.empty or "diff" not in frame:
        return frame
    # What the current seeds can detect at the family's level, and the seeds a decision would
    # need, planned from an upper confidence bound of the spread (not its few-seed estimate).
    alphas = [1 - row.family_confidence for row in frame.itertuples()]
    frame["mde"] = [
        inference.minimum_detectable_effect(row.sd_diff, row.n_pairs, alpha)
        if not is_baseline(row.variant) and row.n_pairs > 1
        else math.nan
        for row, alpha in zip(frame.itertuples(), alphas, strict=True)
    ]
    frame["seeds_needed"] = [
        inference.seeds_needed(
            inference.sd_upper_bound(row.sd_diff, row.n_pairs), data.plan.margin, alpha
        )
        if not is_baseline(row.variant) and row.n_pairs > 1 and row.sd_diff > 0
        else None
        for row, alpha in zip(frame.itertuples(), alphas, strict=True)
    ]
    for column in ("verdict", "verdict_this_test_set"):
        frame[column] = frame[column].where(~frame["variant"].map(is_baseline), "—")
    order = frame["diff"].fillna(math.inf).rank(method="first", ascending=False)
    return frame.assign(_order=order).sort_values("_order").drop(columns="_order")
