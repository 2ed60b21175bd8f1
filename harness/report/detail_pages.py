"""Markdown for the detail pages: ablations.md, per_digit.md, claims.md, search.md and one page
per arm. Like harness.report.pages, they format numbers computed elsewhere and compute none."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import StudyData, confused_pairs
from harness.report.markdown import (
    integer,
    interval,
    join,
    number,
    pct,
    plot_file,
    points,
    pp,
    pvalue,
    table,
)
from harness.stats import population
from harness.stats.inference import BCA_MIN_N
from harness.study.plan import is_baseline
from harness.study.specs import REFERENCE


def accuracy_rows(frame: pd.DataFrame, link: str = "variants/") -> list[dict]:
    """The BCa column only where some arm has BCA_MIN_N seeds: below, it is left out."""
    with_bca = bool((frame["n"] >= BCA_MIN_N).any())
    rows = []
    for row in frame.itertuples():
        cells: dict[str, Any] = {
            "variant": f"[{row.variant}]({link}{row.variant}.md)",
            "n": row.n,
            "params": f"{row.parameters:,}",
            "test accuracy (mean ± sd)": f"{pct(row.mean)} ± {pp(row.sd, sign='')}",
            "95% CI (t)": interval(row.t_ci),
        }
        if with_bca:
            cells["95% CI (BCa)"] = interval(row.bca_ci)
        cells["95% CI (seeds and test images)"] = interval(row.images_ci)
        rows.append(cells)
    return rows


def comparison_rows(frame: pd.DataFrame, labels: list[str] | None = None) -> list[dict]:
    return [
        {
            "variant": row.variant,
            "pairs": integer(row.n_pairs),
            "Δ (pp)": points(row.diff),
            "Δ 95% CI": interval(row.diff_ci, points),
            "Δ 95% CI (seeds and images)": interval(row.diff_images_ci, points),
            "Δ CI behind the verdict": interval(row.verdict_ci, points),
            "p": pvalue(row.p_difference),
            "TOST p": pvalue(row.p_equivalence),
            "Wilcoxon p (exact)": pvalue(row.p_wilcoxon),
            "Hedges g_z": number(row.g_z, 2),
            "r": number(row.correlation, 2),
            "McNemar p < 0.05": f"{integer(row.mcnemar_significant)} of {integer(row.n_pairs)}",
            "verdict": row.verdict,
        }
        for row in frame.itertuples()
        if not is_baseline(row.variant) and (labels is None or row.variant in labels)
    ]


def detail_rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "variant": row.variant,
            "test loss": number(row.test_loss, 4),
            "best val acc": pct(row.best_val),
            "best epoch (mean)": number(row.best_epoch, 1),
            "best at the cap": f"{row.best_at_cap} of {row.n}",
            "first lr cut": _cuts(row.first_lr_cut),
            "train − val gap": pp(row.gap),
            "s / epoch": number(row.seconds_per_epoch, 2),
            "diverged": row.diverged,
        }
        for row in frame.itertuples()
    ]


def ablations_page(frame: pd.DataFrame, margin: float) -> str:
    labels = list(frame["variant"])
    return join(
        [
            "# Ablations",
            "## Accuracy",
            "Test accuracy over seeds. 95% CI (t): Student t over seeds. 95% CI (BCa): "
            f"bootstrap, shown only from {BCA_MIN_N} seeds, below which it covers less often "
            "than it claims. Over seeds and test images: a variance-components interval for new "
            "seeds and a new test set drawn like MNIST's, its two halves as strata and "
            f"{population.TEST_SET_BLOCKS} blocks of consecutive images as the sampled units "
            "(the images of a block are alike, so they are not counted as independent).",
            table(accuracy_rows(frame)),
            "## Paired comparison with the reference",
            "Δ = variant − reference on the same seeds, sorted by Δ. The interval behind the "
            "verdict is at the family's level (1 − 0.05/m), for new seeds and new test sets "
            "(for this test set under a two-stage design); the others at 95% for this "
            "comparison alone. p: "
            "paired t (Stein's test under a two-stage design), and TOST against "
            f"±{100 * margin:.2f} pp, both unadjusted (the verdicts use the family interval); "
            "Wilcoxon signed-rank, exact, on counts of correct images (from 5 pairs); "
            "Hedges g_z: the bias-corrected mean difference in sd of the differences; r: "
            "correlation of the paired accuracies; McNemar: the seed pairs whose runs differ "
            "image by image at p < 0.05.",
            table(comparison_rows(frame)),
            f"![Paired differences with the ±{100 * margin:.2f} pp margin]({plot_file('forest')})",
            "## Training details (means over seeds)",
            "Train − val gap: training accuracy (running, in train mode) minus validation "
            "accuracy at the best epoch. First lr cut: the epoch after which the plateau "
            "scheduler first halved the learning rate.",
            table(detail_rows(frame)),
            f"![Training curves]({plot_file('curves', 'all')})",
            "\n".join(f"![{label}]({plot_file('curves', label)})" for label in labels),
        ]
    )


def per_digit_rows(digits: pd.DataFrame) -> list[dict]:
    rows = []
    for row in digits.to_dict("records"):
        cells = {"digit": row["digit"], "accuracy": pct(row["mean"]), "95% CI": interval(row["ci"])}
        if "diff" in row:
            cells["Δ vs ref"] = pp(row["diff"])
            cells["Δ 95% CI"] = interval(row["diff_ci"], points)
        rows.append(cells)
    return rows


def confused_rows(confusion: np.ndarray, runs: int, top: int = 5) -> list[dict]:
    return [
        {
            "true → predicted": f"{pair['true']} → {pair['predicted']}",
            f"count (summed over {runs} runs)": pair["count"],
            "mean per run": number(pair["count"] / runs, 1),
            "share of the digit's errors": pct(pair["share"], 1),
        }
        for pair in confused_pairs(confusion, top)
    ]


def per_digit_page(
    digits: dict[str, pd.DataFrame], confusions: dict[str, np.ndarray], runs: dict[str, int]
) -> str:
    """digits and confusions: per arm, analysis.per_digit_table and analysis.summed_confusion."""
    parts = [
        "# Per-digit breakdown",
        "Each digit's test accuracy, mean over seeds with a 95% Student-t interval, and its "
        "paired difference against the reference on the same seeds.",
    ]
    for label, table_ in digits.items():
        means = table_["mean"]
        easiest, hardest = int(means.idxmax()), int(means.idxmin())
        parts += [
            f"## {label}",
            f"Easiest digit: **{easiest}** ({pct(means[easiest])}); hardest: "
            f"**{hardest}** ({pct(means[hardest])}).",
            table(per_digit_rows(table_)),
            "Most-confused pairs:",
            table(confused_rows(confusions[label], runs[label])),
            f"![Per-digit accuracy of {label}]({plot_file('per_digit', label)})",
        ]
    return join(parts)


def claims_page(rows: list[dict[str, str]], runs: int) -> str:
    return join(
        [
            "# The write-up's claims, checked",
            f"Against the reference's {runs} finished seeds. The write-up reports single runs, "
            "so a claimed value holds (✅) when it lies in the 95% prediction interval for one "
            "new run, mean ± t·sd·√(1 + 1/n), not in the narrower interval of the mean. A "
            "claim about what one run did is checked run by run: ✅ in every run, ❌ in none, "
            "else in how many.",
            table(rows) if rows else "No finished reference runs.",
            f"![Reference confusion matrix]({plot_file('confusion', REFERENCE)})",
        ]
    )


def variant_page(
    data: StudyData,
    frame: pd.DataFrame,
    label: str,
    layers: list[dict[str, Any]],
    digits: pd.DataFrame | None,
) -> str:
    """layers: analysis.architecture; digits: analysis.per_digit_table (None: no finished run)."""
    arm, runs = data.plan.arms[label], data.runs(label)
    reference = data.plan.reference.config.to_dict()
    changes = {k: v for k, v in arm.config.to_dict().items() if reference[k] != v}
    layer_rows = [
        {
            "layer": layer["layer"],
            "width": layer["width"] or "",
            "detail": layer["detail"],
            "parameters": f"{layer['parameters']:,}",
        }
        for layer in layers
    ]
    per_run = [
        {
            "seed": run["seed"],
            "status": run["status"],
            "test acc": pct(run["test_accuracy"]) if run["status"] == "ok" else "—",
            "best epoch": integer(run["best_epoch"]) if run["status"] == "ok" else "—",
            "divergence": "—"
            if run["status"] == "ok"
            else f"epoch {integer(run['diverged_epoch'])}: {run['divergence']}",
        }
        for _, run in runs.iterrows()
    ]
    parts = [
        f"# {label}",
        arm.description,
        "Changes from the reference: "
        + (", ".join(f"`{k} = {json.dumps(v)}`" for k, v in changes.items()) or "none"),
        f"Config hash `{arm.config.hash()}`, planned seeds {len(arm.seeds)}.",
        "## Architecture",
        table(layer_rows),
        f"![Architecture of {label}](../{plot_file('architecture', label)})",
    ]
    if digits is not None and label != REFERENCE:
        parts += ["## Paired comparison with the reference", table(comparison_rows(frame, [label]))]
    parts += ["## Runs", table(per_run)]
    if digits is not None:
        parts += [
            "## Per digit",
            table(per_digit_rows(digits)),
            f"![Training curves of {label}](../{plot_file('curves', label)})",
            f"![Per-digit accuracy of {label}](../{plot_file('per_digit', label)})",
        ]
    return join(parts)


def _cuts(cuts: list[int]) -> str:
    if not cuts:
        return "none"
    epochs = str(min(cuts)) if min(cuts) == max(cuts) else f"{min(cuts)}–{max(cuts)}"
    return f"after epoch {epochs} ({len(cuts)} run(s))"


def short(value: Any) -> str:
    """A config value for a table: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(short(v) for v in value) + "]"
    return json.dumps(value)
