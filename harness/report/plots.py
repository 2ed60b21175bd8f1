"""Figures of numbers computed in harness.report.analysis: each *_figure draws, save writes the PNG.

PNG carries no software tag and a fixed dpi, so the same numbers give byte-identical files, and
is cut to its drawing's bounding box, so that no text runs off the canvas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

# no software tag and a fixed dpi, so that the same numbers give the same bytes; the bounding
# box drawn tight, so that no title or label is cut at the canvas's edge
PNG = {"metadata": {"Software": None}, "dpi": 110, "bbox_inches": "tight"}
LR_CUT_LABEL = "learning-rate cut after this epoch (one row per seed)"
MARGIN_LABEL = "±margin: equivalent"
LAYER_COLORS = {"Linear": "#9ecae1", "BatchNorm1d": "#fdd0a2", "Dropout": "#d9d9d9"}


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **PNG)
    plt.close(fig)


def curves_figure(series: list[dict[str, Any]], band: bool) -> Figure:
    """series: per arm its label, n, analysis.curve_bands of val_accuracy ("val") and
    train_loss ("loss"), and "cuts": per run, analysis.lr_cuts of its history."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, arm in enumerate(series):
        color = f"C{i % 10}"
        for ax, key, scale in ((axes[0], "val", 100), (axes[1], "loss", 1)):
            curve = arm[key]
            label = f"{arm['label']} (n={arm['n']})"
            ax.plot(curve["epoch"], scale * curve["mean"], ".-", color=color, label=label)
            if band and arm["n"] > 1:
                low, high = scale * curve["low"], scale * curve["high"]
                ax.fill_between(curve["epoch"], low, high, color=color, alpha=0.25)
        if band:
            # a strip along the bottom fifth of the axes, one row per seed
            step = 0.17 / max(1, len(arm["cuts"]) - 1)
            xs = [epoch for epochs in arm["cuts"] for epoch in epochs]
            ys = [0.03 + step * row for row, epochs in enumerate(arm["cuts"]) for _ in epochs]
            axes[0].plot(
                xs,
                ys,
                "|",
                markersize=5,
                color=color,
                transform=axes[0].get_xaxis_transform(),
                label=LR_CUT_LABEL,
            )
    axes[0].set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle("mean over seeds" + (" with 95% CI band" if band else ""))
    fig.tight_layout()
    return fig


def per_digit_figure(label: str, digits: pd.DataFrame, n: int) -> Figure:
    """digits: analysis.per_digit_table."""
    means = 100 * digits["mean"].to_numpy()
    bounds = 100 * np.array(list(digits["ci"]))
    errors = np.array([means - bounds[:, 0], bounds[:, 1] - means])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(10), means, yerr=None if np.isnan(errors).any() else errors, capsize=3)
    ax.set(
        xticks=range(10),
        xlabel="digit",
        ylabel="test accuracy (%)",
        ylim=(max(0, means.min() - 3), 100),
        title=f"{label}: per-digit accuracy (mean, 95% CI, n={n})",
    )
    fig.tight_layout()
    return fig


def confusion_figure(confusion: np.ndarray, runs: int, label: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for t in range(10):
        for p in range(10):
            color = "white" if t == p else "black"
            ax.text(p, t, str(confusion[t, p]), ha="center", va="center", fontsize=7, color=color)
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title=f"{label}: test confusion matrix, summed over {runs} runs",
    )
    fig.tight_layout()
    return fig


def forest_figure(rows: pd.DataFrame, margin: float) -> Figure:
    """rows: comparison_table's rows to draw (variant, family, diff, verdict_ci, verdict), top
    to bottom, each with the interval that decided its verdict; the shaded band is ±margin,
    where a difference counts as none."""
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * max(len(rows), 1) + 1.4))
    ax.axvspan(-100 * margin, 100 * margin, color="tab:green", alpha=0.15, label=MARGIN_LABEL)
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    for y, row in enumerate(rows.itertuples()):
        if y and row.family != rows["family"].iloc[y - 1]:
            ax.axhline(y - 0.5, color="gray", linestyle=":", linewidth=1)  # families apart
        low, high = row.verdict_ci
        ax.plot([100 * low, 100 * high], [y, y], color="tab:blue")
        ax.plot(100 * row.diff, y, "o", color="tab:blue")
        ax.annotate(
            row.verdict, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8
        )
    ax.set(
        yticks=range(len(rows)),
        yticklabels=list(rows["variant"]),
        xlabel="paired difference in test accuracy vs reference (pp)",
        title="variant − reference: mean and the interval behind each verdict (its family's "
        f"level); shaded: ±{100 * margin:.2f} pp",
    )
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def search_history_figure(trials: tuple[Any, ...]) -> Figure:
    """trials: the search summary's (harness.study.search.SearchSummary.trials)."""
    complete = [t for t in trials if t.state == "complete"]
    numbers = [t.number for t in complete]
    values = np.array([100 * t.value for t in complete])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(numbers, values, "o", label="complete trial")
    if len(values):
        ax.step(numbers, np.maximum.accumulate(values), where="post", label="best so far")
        low, high = max(values.min(), 90), values.max()
        pad = max(0.1 * (high - low), 0.05)  # markers whole, and a range where all scores tie
        ax.set_ylim(low - pad, min(high + pad, 100 + pad))
    ax.set(xlabel="trial", ylabel="best validation accuracy (%)", title="Optimization history")
    ax.legend()
    fig.tight_layout()
    return fig


def expected_best_figure(curves: dict[str, pd.DataFrame]) -> Figure:
    """curves: per search, stats.expected_max.expected_max_curve of its trials' values."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, (label, curve) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(curve["n"], 100 * curve["expected"], color=color, label=label)
        ax.fill_between(curve["n"], 100 * curve["low"], 100 * curve["high"], color=color, alpha=0.2)
    ax.set_xscale("log")
    ax.set(
        xlabel="trials n (log scale)",
        ylabel="expected best val accuracy (%)",
        title="Expected best of n trials (95% bootstrap band)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def architecture_figure(label: str, layers: list[dict[str, Any]]) -> Figure:
    """layers: analysis.architecture, drawn left to right, box height growing with width."""
    widest = max(layer["width"] or 0 for layer in layers)
    fig, ax = plt.subplots(figsize=(0.95 * len(layers) + 0.5, 3.2))
    for i, layer in enumerate(layers):
        height = 0.3 + 0.6 * (layer["width"] or 0) / widest
        color = LAYER_COLORS.get(layer["layer"], "white")
        ax.add_patch(
            Rectangle((i + 0.06, -height / 2), 0.88, height, facecolor=color, edgecolor="black")
        )
        lines = [layer["layer"].replace("1d", ""), layer["detail"]]
        if layer["parameters"]:
            lines.append(f"{layer['parameters']:,} p.")
        text = "\n".join(line for line in lines if line)
        ax.text(i + 0.5, 0, text, ha="center", va="center", fontsize=6.5)
        if i:
            ax.annotate("", (i + 0.06, 0), (i - 0.06, 0), arrowprops={"arrowstyle": "->"})
    total = sum(layer["parameters"] for layer in layers)
    ax.set(xlim=(0, len(layers)), ylim=(-0.5, 0.5), title=f"{label}: {total:,} parameters")
    ax.axis("off")
    fig.tight_layout()
    return fig


def interaction_figure(
    runs: pd.DataFrame, factors: list[str], levels: dict[str, tuple], residual_sd: float
) -> Figure:
    """One panel per pair of factors, all on one scale: the mean accuracy at each level of the
    first, a line per level of the second (each point averages over the other factors), with
    95% intervals from the model's residual spread; parallel lines, no interaction."""
    pairs = [(a, b) for i, a in enumerate(factors) for b in factors[i + 1 :]]
    columns = min(5, len(pairs))
    rows = -(-len(pairs) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.3 * columns, 3.0 * rows), squeeze=False, sharey=True
    )
    for ax, (a, b) in zip(axes.flat, pairs, strict=False):
        for offset, (level, marker) in enumerate(((-1, "o"), (1, "s"))):
            chosen = runs[runs[b] == level]
            means = chosen.groupby(a)["accuracy"].agg(["mean", "count"]).reindex([-1, 1])
            half = 1.96 * residual_sd / np.sqrt(means["count"])
            x = np.array([0, 1]) + (offset - 0.5) * 0.06  # the two lines side by side
            ax.errorbar(
                x, 100 * means["mean"], yerr=100 * half, marker=marker, ms=4, capsize=3,
                label=f"{b} {levels[b][(level + 1) // 2]}",
            )  # fmt: skip
        ax.set_xticks([0, 1], levels[a])
        ax.set_xlim(-0.4, 1.4)
        ax.set_xlabel(a)
        ax.legend(fontsize=7, loc="lower left")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    fig.suptitle(
        "Cell means by pairs of factors, one scale (each point averages over the other "
        "factors; 95% intervals, this test set)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def answer_figure(rows: list[dict[str, Any]], margin: float) -> Figure:
    """rows: top to bottom, each effect's label, estimate, its family interval for new seeds on
    this test set (set_low, set_high: thick) and for new test sets too (low, high: thin), and
    its verdict; the shaded band is ±margin, where a difference counts as none."""
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    ax.axvspan(-100 * margin, 100 * margin, color="tab:green", alpha=0.15, label=MARGIN_LABEL)
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    for y, row in enumerate(rows):
        color = "tab:red" if row["verdict"].startswith("worse") else (
            "tab:blue" if row["verdict"].startswith("better") else "dimgray"
        )  # fmt: skip
        ax.plot([100 * row["low"], 100 * row["high"]], [y, y], color=color, linewidth=1.2)
        ax.plot([100 * row["set_low"], 100 * row["set_high"]], [y, y], color=color, linewidth=4)
        ax.plot(100 * row["estimate"], y, "o", color="white", markeredgecolor=color, ms=6)
        ax.annotate(
            row["verdict"], (1.01, y), xycoords=("axes fraction", "data"), va="center",
            fontsize=8, color=color,
        )  # fmt: skip
    ax.set_yticks(range(len(rows)), [row["label"] for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Δ test accuracy, changed − reference (pp)")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(
        "Each component's worth: thick, the family interval for new seeds on this test set;\n"
        "thin, for new seeds and new test sets (the verdict's)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def residuals_figure(runs: pd.DataFrame, colour_by: str) -> Figure:
    """Residual against fitted value per run, coloured by one factor: a funnel or a curve
    says the model misses something."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for level, marker in ((-1, "o"), (1, "s")):
        chosen = runs[runs[colour_by] == level]
        label = f"{colour_by} {'reference' if level < 0 else 'changed'}"
        ax.plot(100 * chosen["fitted"], 100 * chosen["residual"], marker, ms=4, label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="fitted test accuracy (%)", ylabel="residual (pp)", title="Residuals")
    ax.legend()
    fig.tight_layout()
    return fig


def budget_curves_figure(
    curves: dict[str, list[tuple[str, pd.DataFrame]]], margin: float, declared: tuple[int, ...]
) -> Figure:
    """curves: per panel (a component), its effects by budget (label, frame with budget,
    estimate, low, high), drawn on one shared scale with their bands, the ±margin band and the
    declared budgets."""
    columns = min(len(curves), 3)
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False, sharey=True
    )
    for ax, (title, effects) in zip(axes.flat, curves.items(), strict=False):
        ax.axhspan(-100 * margin, 100 * margin, color="tab:green", alpha=0.15, label=MARGIN_LABEL)
        ax.axhline(0, color="gray", linewidth=0.8)
        for budget in declared:
            ax.axvline(budget, color="gray", linestyle=":", linewidth=0.8)
        for i, (label, frame) in enumerate(effects):
            color = f"C{i}"
            ax.plot(frame["budget"], 100 * frame["estimate"], ".-", color=color, label=label)
            ax.fill_between(
                frame["budget"], 100 * frame["low"], 100 * frame["high"], color=color, alpha=0.2
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training budget (epochs)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Δ test accuracy (pp)")
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "Effect (changed − reference) at each budget: the epoch chosen by validation among "
        "1..k;\nband: the family's interval for new seeds and new test sets; dotted: the "
        "declared budgets",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def clock_figure(clock: pd.DataFrame) -> Figure:
    """clock: per arm and budget, mean training seconds and mean test accuracy: accuracy
    against training time, and against epochs."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for i, (arm, frame) in enumerate(clock.groupby("arm", sort=False)):
        for ax, x in zip(axes, ("seconds", "budget"), strict=True):
            ax.plot(frame[x], 100 * frame["accuracy"], ".-", color=f"C{i % 10}", label=arm)
    axes[0].set(xlabel="training time (s, mean over seeds)", ylabel="test accuracy (%)")
    axes[1].set(xlabel="training budget (epochs)")
    axes[0].set_title("against training time", fontsize=10)
    axes[1].set_title("against epochs", fontsize=10)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Test accuracy at each budget (the epoch chosen by validation), mean over seeds")
    fig.tight_layout()
    return fig
