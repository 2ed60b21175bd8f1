"""Markdown reports with plots, derived from stored runs alone (no training).

    python -m harness.report [--results-dir DIR] [--out DIR] [--epochs N]

The study is the current set of specs in ablations/ (plus the tuned network, once a search has
stored one). A variant's runs are the stored runs whose config hash equals its current config's:
runs stored under an older version of a spec are counted and named, never mixed in. The same
stored runs always give byte-identical reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from harness import cli, stats  # noqa: E402
from harness.config import Config  # noqa: E402
from harness.specs import REFERENCE, load_spec, spec_names  # noqa: E402
from harness.store import RunStore  # noqa: E402

REPORTS_DIR_ENV = "HARNESS_REPORTS_DIR"
DEFAULT_REPORTS_DIR = Path("reports")
TUNED = "tuned"
TUNED_FILE = "tuned.json"  # written by harness.search: the best config and the study's summary
PNG = {"metadata": {"Software": None}, "dpi": 110}


def resolve_reports_dir(arg: str | Path | None = None) -> Path:
    """--reports-dir, else $HARNESS_REPORTS_DIR, else ./reports."""
    return Path(arg or os.environ.get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_DIR)


@dataclass
class Study:
    """The variants as currently defined and every stored run."""

    variants: dict[str, Config]  # the reference first
    descriptions: dict[str, str]
    frame: pd.DataFrame
    search: dict[str, Any] | None = None

    def runs(self, label: str) -> pd.DataFrame:
        """All stored runs of the label's current config (diverged ones included), by seed."""
        if self.frame.empty:
            return self.frame
        selected = self.frame[self.frame["config_hash"] == self.variants[label].hash()]
        return selected.sort_values("seed").reset_index(drop=True)

    def ok_runs(self, label: str) -> pd.DataFrame:
        runs = self.runs(label)
        return runs[runs["status"] == "ok"].reset_index(drop=True) if len(runs) else runs

    def stale_count(self, label: str) -> int:
        """Runs stored under this label with a config that is no longer the spec's."""
        if self.frame.empty:
            return 0
        frame = self.frame
        return int(
            (
                (frame["label"] == label) & (frame["config_hash"] != self.variants[label].hash())
            ).sum()
        )

    def labels_with_runs(self) -> list[str]:
        return [label for label in self.variants if len(self.runs(label))]


def load_study(results_dir: Path, epochs: int | None = None) -> Study:
    """Current specs (epochs overridden if asked) plus the tuned network, and the stored runs."""
    variants, descriptions = {}, {}
    for name in [REFERENCE] + [n for n in spec_names() if n != REFERENCE]:
        spec = load_spec(name)
        config = spec.config if epochs is None else dataclasses.replace(spec.config, epochs=epochs)
        variants[name], descriptions[name] = config, spec.description
    search = None
    tuned_path = Path(results_dir) / TUNED_FILE
    if tuned_path.exists():
        search = json.loads(tuned_path.read_text())
        variants[TUNED] = Config(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in search["config"].items()}
        )
        descriptions[TUNED] = f"best of Optuna study {search['study']!r} on validation accuracy"
    return Study(variants, descriptions, RunStore(results_dir).frame(), search)


# ---------------------------------------------------------------- numbers


def paired(study: Study, label: str, column: str) -> tuple[list[float], list[float]]:
    """The column for variant and reference over the seeds where both finished."""
    variant, reference = study.ok_runs(label), study.ok_runs(REFERENCE)
    merged = variant.merge(reference, on="seed", suffixes=("", "_ref"))
    return merged[column].tolist(), merged[f"{column}_ref"].tolist()


def summary_frame(study: Study) -> pd.DataFrame:
    """One row per variant with runs: accuracy with intervals, paired comparison, details."""
    rows = []
    for label in study.labels_with_runs():
        runs, ok = study.runs(label), study.ok_runs(label)
        accuracy = ok["test_accuracy"].tolist() if len(ok) else []
        variant, reference = paired(study, label, "test_accuracy") if len(ok) else ([], [])
        difference = stats.paired_difference_ci(variant, reference)
        rows.append(
            {
                "variant": label,
                "n": len(ok),
                "diverged": len(runs) - len(ok),
                "parameters": int(runs["parameters"].iloc[0]),
                "mean": stats.mean_ci(accuracy).estimate,
                "std": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else math.nan,
                "t_ci": stats.mean_ci(accuracy)[1:],
                "bca_ci": stats.bootstrap_ci(accuracy)[1:],
                "n_pairs": len(variant),
                "diff": difference.estimate if label != REFERENCE else math.nan,
                "diff_ci": difference[1:] if label != REFERENCE else (math.nan, math.nan),
                "p_t": stats.paired_t_pvalue(variant, reference)
                if label != REFERENCE
                else math.nan,
                "p_wilcoxon": (
                    stats.wilcoxon_pvalue(variant, reference) if label != REFERENCE else math.nan
                ),
                "d_z": stats.cohens_dz(variant, reference) if label != REFERENCE else math.nan,
                "test_loss": _mean(ok, "test_loss"),
                "best_val": _mean(ok, "best_val_accuracy"),
                "best_epoch": _mean(ok, "best_epoch"),
                "gap": _mean(ok, "train_val_gap"),
                "seconds_per_epoch": _mean(runs, "seconds_per_epoch"),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"] = stats.holm(frame["p_t"].tolist())
    order = frame["diff"].fillna(math.inf).rank(method="first", ascending=False)
    return frame.assign(_order=order).sort_values("_order").drop(columns="_order")


def _mean(frame: pd.DataFrame, column: str) -> float:
    values = frame[column].dropna() if len(frame) else []
    return float(np.mean(values)) if len(values) else math.nan


# ---------------------------------------------------------------- formatting


def pct(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def pp(x: float) -> str:
    """A difference in percentage points."""
    return "n/a" if math.isnan(x) else f"{100 * x:+.2f} pp"


def interval(bounds: tuple[float, float], fmt=pct) -> str:
    low, high = bounds
    return "n/a" if math.isnan(low) else f"[{fmt(low)}, {fmt(high)}]"


def pvalue(p: float) -> str:
    return "n/a" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def number(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def comparison_rows(summary: pd.DataFrame, labels: list[str] | None = None) -> list[dict]:
    """The paired comparison each ablation prints: accuracy with CI, difference with CI, p."""
    rows = []
    for row in summary.itertuples():
        if labels is not None and row.variant not in labels and row.variant != REFERENCE:
            continue
        rows.append(
            {
                "variant": row.variant,
                "n": row.n,
                "test accuracy": pct(row.mean),
                "95% CI": interval(row.t_ci),
                "Δ vs reference": pp(row.diff) if row.variant != REFERENCE else "—",
                "Δ 95% CI": interval(row.diff_ci, pp) if row.variant != REFERENCE else "—",
                "p (paired t)": pvalue(row.p_t) if row.variant != REFERENCE else "—",
                "p (Holm)": pvalue(row.p_holm) if row.variant != REFERENCE else "—",
            }
        )
    return rows


def comparison_markdown(study: Study, labels: list[str]) -> str:
    summary = summary_frame(study)
    if summary.empty:
        return "no stored runs for these variants"
    return table(comparison_rows(summary, labels))


def flags(study: Study, summary: pd.DataFrame) -> list[str]:
    """Integrity notes: stale runs, diverged runs, variants with fewer seeds than the reference."""
    notes = []
    reference_n = len(study.ok_runs(REFERENCE))
    for label in study.variants:
        stale = study.stale_count(label)
        if stale:
            notes.append(
                f"`{label}`: {stale} run(s) stored under an older version of its spec "
                "are ignored; only runs of the current spec are used."
            )
    for row in summary.itertuples():
        if row.diverged:
            notes.append(
                f"`{row.variant}`: {row.diverged} run(s) diverged (non-finite loss); "
                "they are excluded from the statistics."
            )
        if row.variant != REFERENCE and row.n < reference_n:
            notes.append(
                f"`{row.variant}`: fewer seeds than the reference ({row.n} vs "
                f"{reference_n}); its paired statistics use {row.n_pairs} pairs."
            )
    missing = [label for label in study.variants if not len(study.runs(label))]
    if missing:
        notes.append("Not run yet: " + ", ".join(f"`{m}`" for m in missing) + ".")
    return notes


# ---------------------------------------------------------------- sections


def summary_section(study: Study, summary: pd.DataFrame) -> str:
    accuracy_rows, detail_rows = [], []
    for row in summary.itertuples():
        is_ref = row.variant == REFERENCE
        accuracy_rows.append(
            {
                "variant": f"[{row.variant}](variants/{row.variant}.md)",
                "n": row.n,
                "params": f"{row.parameters:,}",
                "test acc (mean ± sd)": f"{pct(row.mean)} ± {number(100 * row.std, 2)}",
                "95% CI (t)": interval(row.t_ci),
                "95% CI (BCa)": interval(row.bca_ci),
                "Δ vs ref": "—" if is_ref else pp(row.diff),
                "Δ 95% CI": "—" if is_ref else interval(row.diff_ci, pp),
                "p (t)": "—" if is_ref else pvalue(row.p_t),
                "p (Holm)": "—" if is_ref else pvalue(row.p_holm),
                "p (Wilcoxon)": "—" if is_ref else pvalue(row.p_wilcoxon),
                "d_z": "—" if is_ref else number(row.d_z, 2),
            }
        )
        detail_rows.append(
            {
                "variant": row.variant,
                "test loss": number(row.test_loss, 4),
                "best val acc": pct(row.best_val),
                "best epoch (mean)": number(row.best_epoch, 1),
                "train − val gap": pp(row.gap),
                "s / epoch": number(row.seconds_per_epoch, 2),
                "diverged": row.diverged,
            }
        )
    notes = "\n".join(f"- {note}" for note in flags(study, summary))
    return (
        "\n\n".join(
            [
                "# Ablation summary",
                "Sorted by paired effect on test accuracy. Intervals are 95%: Student t for "
                "means, BCa bootstrap (9,999 resamples, seeded) beside it. Δ is variant − "
                "reference over the seeds both ran (same split, data order, and initialization "
                "where shapes match); p (t) is a paired t-test, Holm-adjusted across all variants "
                f"in the table; Wilcoxon signed-rank is shown from n ≥ {stats.WILCOXON_MIN_N} "
                "pairs; d_z is the mean difference over the standard deviation of the "
                "differences. n/a: not computable "
                "(fewer than two seeds, or no variation).",
                table(accuracy_rows),
                "## Training details (means over seeds)",
                "Train − val gap: training accuracy (running, in train mode, with dropout) minus "
                "validation accuracy at the best epoch.",
                table(detail_rows),
                "![Paired differences](plots/forest.png)",
                "![Training curves](plots/curves_all.png)",
                "## Notes" if notes else "",
                notes,
            ]
        ).strip()
        + "\n"
    )


def per_digit_rows(study: Study, label: str) -> list[dict]:
    ok, reference = study.ok_runs(label), study.ok_runs(REFERENCE)
    merged = ok.merge(reference, on="seed", suffixes=("", "_ref"))
    rows = []
    for digit in range(10):
        values = [acc[digit] for acc in ok["per_digit_accuracy"]]
        variant = [acc[digit] for acc in merged["per_digit_accuracy"]]
        ref = [acc[digit] for acc in merged["per_digit_accuracy_ref"]]
        row = {
            "digit": digit,
            "accuracy": pct(stats.mean_ci(values).estimate),
            "95% CI": interval(stats.mean_ci(values)[1:]),
        }
        if label != REFERENCE:
            difference = stats.paired_difference_ci(variant, ref)
            row["Δ vs ref"] = pp(difference.estimate)
            row["Δ 95% CI"] = interval(difference[1:], pp)
        rows.append(row)
    return rows


def confused_pairs(study: Study, label: str, top: int = 5) -> list[dict]:
    """Most frequent (true → predicted) errors, summed over seeds."""
    ok = study.ok_runs(label)
    confusion = np.sum([np.array(m) for m in ok["confusion_matrix"]], axis=0)
    errors = confusion.copy()
    np.fill_diagonal(errors, 0)
    per_digit_errors = errors.sum(axis=1)
    pairs = sorted(
        ((errors[t, p], t, p) for t in range(10) for p in range(10) if t != p),
        key=lambda x: (-x[0], x[1], x[2]),
    )[:top]
    return [
        {
            "true → predicted": f"{t} → {p}",
            "mean count per run": number(count / len(ok), 1),
            "share of the digit's errors": pct(count / per_digit_errors[t], 1),
        }
        for count, t, p in pairs
    ]


def easiest_and_hardest(study: Study, label: str) -> tuple[int, int, np.ndarray]:
    means = np.mean([np.array(a) for a in study.ok_runs(label)["per_digit_accuracy"]], axis=0)
    return int(np.argmax(means)), int(np.argmin(means)), means


def per_digit_section(study: Study) -> str:
    parts = [
        "# Per-digit breakdown",
        "Each digit's test accuracy, mean over seeds with a 95% Student-t interval, and its "
        "paired difference against the reference on the same seeds.",
    ]
    for label in study.labels_with_runs():
        if not len(study.ok_runs(label)):
            continue
        easiest, hardest, means = easiest_and_hardest(study, label)
        parts += [
            f"## {label}",
            f"Easiest digit: **{easiest}** ({pct(means[easiest])}); hardest: "
            f"**{hardest}** ({pct(means[hardest])}).",
            table(per_digit_rows(study, label)),
            "Most-confused pairs (summed over seeds):",
            table(confused_pairs(study, label)),
            f"![Per-digit accuracy of {label}](plots/per_digit_{label}.png)",
        ]
    return "\n\n".join(parts) + "\n"


def variant_page(study: Study, summary: pd.DataFrame, label: str) -> str:
    runs = study.runs(label)
    config = study.variants[label].to_dict()
    reference = study.variants[REFERENCE].to_dict()
    changes = {k: v for k, v in config.items() if reference[k] != v}
    per_run = [
        {
            "seed": r.seed,
            "status": r.status,
            "test acc": pct(r.test_accuracy) if r.status == "ok" else "—",
            "95% CI (Wilson, this run)": (
                interval(stats.binomial_ci(_correct(r), _tested(r))[1:])
                if r.status == "ok"
                else "—"
            ),
            "best epoch": r.best_epoch if r.status == "ok" else f"diverged @ {r.diverged_epoch}",
        }
        for r in runs.itertuples()
    ]
    parts = [
        f"# {label}",
        study.descriptions[label],
        "Changes from the reference: "
        + (", ".join(f"`{k} = {json.dumps(v)}`" for k, v in changes.items()) or "none"),
        f"Config hash `{study.variants[label].hash()}`.",
        "## Paired comparison against the reference",
        table(comparison_rows(summary, [label])),
        "## Runs",
        table(per_run),
    ]
    if len(study.ok_runs(label)):
        parts += [
            "## Per digit",
            table(per_digit_rows(study, label)),
            f"![Training curves of {label}](../plots/curves_{label}.png)",
            f"![Per-digit accuracy of {label}](../plots/per_digit_{label}.png)",
        ]
    return "\n\n".join(parts) + "\n"


def _correct(run: Any) -> int:
    return int(np.trace(np.array(run.confusion_matrix)))


def _tested(run: Any) -> int:
    return int(np.sum(run.confusion_matrix))


# ---------------------------------------------------------------- claims

WRITE_UP = {
    "test_accuracy": 0.9816,
    "test_loss": 0.0654,
    "best_val_accuracy": 0.9824,
    "best_epoch": 10,
    "train_val_gap": 0.0008,
    "parameters": 568_970,
    "easiest": (1, 0.9921),
    "hardest": (9, 0.9693),
    "confused_with_9": {3, 4},
}


def claims_rows(study: Study) -> list[dict]:
    ok = study.ok_runs(REFERENCE)
    if not len(ok):
        return []
    rows = []

    def covered(claim: str, column: str, value: float, fmt=pct) -> None:
        ci = stats.mean_ci(ok[column].tolist())
        holds = not math.isnan(ci.low) and ci.low <= value <= ci.high
        rows.append(
            _claim(
                claim,
                holds,
                f"measured {fmt(ci.estimate)}, 95% CI {interval(ci[1:], fmt)}",
                "the 95% CI of the mean covers the value",
            )
        )

    covered("test accuracy 98.16%", "test_accuracy", WRITE_UP["test_accuracy"])
    lowest = ok["test_accuracy"].min()
    rows.append(
        _claim(
            "exceeds the 98% target",
            bool(lowest > 0.98),
            f"lowest of {len(ok)} seeds: {pct(lowest)}",
            "holds on every seed",
        )
    )
    covered("test loss 0.0654", "test_loss", WRITE_UP["test_loss"], lambda x: number(x, 4))
    covered("best validation accuracy 98.24%", "best_val_accuracy", WRITE_UP["best_val_accuracy"])
    covered("best epoch 10", "best_epoch", WRITE_UP["best_epoch"], lambda x: number(x, 1))
    covered("train–validation gap 0.08%", "train_val_gap", WRITE_UP["train_val_gap"])
    parameters = int(ok["parameters"].iloc[0])
    rows.append(
        _claim(
            "568,970 parameters",
            parameters == WRITE_UP["parameters"],
            f"the described architecture has {parameters:,} "
            f"({parameters - WRITE_UP['parameters']:+,}: the last BatchNorm's γ, β)",
            "exact count",
        )
    )
    easiest, hardest, means = easiest_and_hardest(study, REFERENCE)
    for claim, (digit, value), found in [
        ("digit 1 easiest at 99.21%", WRITE_UP["easiest"], easiest),
        ("digit 9 hardest at 96.93%", WRITE_UP["hardest"], hardest),
    ]:
        ci = stats.mean_ci([a[digit] for a in ok["per_digit_accuracy"]])
        holds = found == digit and not math.isnan(ci.low) and ci.low <= value <= ci.high
        rows.append(
            _claim(
                claim,
                holds,
                f"measured: digit {found} ({pct(means[found])}); "
                f"digit {digit} at {pct(ci.estimate)}, CI {interval(ci[1:])}",
                "extreme on the mean, and the 95% CI covers the value",
            )
        )
    confusion = np.sum([np.array(m) for m in ok["confusion_matrix"]], axis=0)
    row_9 = confusion[9].copy()
    row_9[9] = -1
    top_two = {int(d) for d in np.argsort(-row_9, kind="stable")[:2]}
    rows.append(
        _claim(
            "digit 9 most confused with 3 and 4",
            top_two == WRITE_UP["confused_with_9"],
            f"9's two most frequent wrong predictions: {sorted(top_two)}",
            "the two most frequent predictions for a true 9, summed over seeds",
        )
    )
    devices = sorted(set(e["device"] for e in ok["environment"]))
    rows.append(
        _claim(
            "trained on CPU only",
            devices == ["cpu"],
            f"devices: {', '.join(devices)}",
            "every reference run's device",
        )
    )
    return rows


def _claim(claim: str, holds: bool, measured: str, rule: str) -> dict:
    return {"claim": claim, "": "✅" if holds else "❌", "measured": measured, "rule": rule}


# ---------------------------------------------------------------- plots


def plot_all(study: Study, summary: pd.DataFrame, plots: Path) -> None:
    plots.mkdir(parents=True, exist_ok=True)
    labels = [label for label in study.labels_with_runs() if len(study.ok_runs(label))]
    for label in labels:
        _plot_curves(study, [label], plots / f"curves_{label}.png", band=True)
        _plot_per_digit(study, label, plots / f"per_digit_{label}.png")
    if labels:
        _plot_curves(study, labels, plots / "curves_all.png", band=False)
    if len(study.ok_runs(REFERENCE)):
        _plot_confusion(study, plots / "confusion_reference.png")
    _plot_forest(summary, plots / "forest.png")


def _curve(runs: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    epochs = min(len(h) for h in runs["history"])
    values = np.array([[e[key] for e in h[:epochs]] for h in runs["history"]])
    bands = [stats.mean_ci(values[:, i].tolist()) for i in range(epochs)]
    return (
        np.arange(1, epochs + 1),
        np.array([b.estimate for b in bands]),
        np.array([[b.low, b.high] for b in bands]),
    )


def _plot_curves(study: Study, labels: list[str], path: Path, band: bool) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label in labels:
        runs = study.ok_runs(label)
        for ax, key in zip(axes, ["val_accuracy", "train_loss"], strict=True):
            x, mean, ci = _curve(runs, key)
            scale = 100 if key == "val_accuracy" else 1
            ax.plot(x, scale * mean, marker=".", label=f"{label} (n={len(runs)})")
            if band and len(runs) > 1:
                ax.fill_between(x, scale * ci[:, 0], scale * ci[:, 1], alpha=0.25)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy (%)", title="Validation accuracy")
    axes[1].set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    axes[0].legend(fontsize=8)
    fig.suptitle("mean over seeds" + (" with 95% CI band" if band else ""))
    fig.tight_layout()
    fig.savefig(path, **PNG)
    plt.close(fig)


def _plot_per_digit(study: Study, label: str, path: Path) -> None:
    runs = study.ok_runs(label)
    cis = [stats.mean_ci([a[d] for a in runs["per_digit_accuracy"]]) for d in range(10)]
    means = np.array([c.estimate for c in cis]) * 100
    errors = np.array([[c.estimate - c.low, c.high - c.estimate] for c in cis]).T * 100
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(10), means, yerr=None if np.isnan(errors).any() else errors, capsize=3)
    ax.set(
        xticks=range(10),
        xlabel="digit",
        ylabel="test accuracy (%)",
        ylim=(max(0, means.min() - 3), 100),
        title=f"{label}: per-digit accuracy (mean, 95% CI, n={len(runs)})",
    )
    fig.tight_layout()
    fig.savefig(path, **PNG)
    plt.close(fig)


def _plot_confusion(study: Study, path: Path) -> None:
    runs = study.ok_runs(REFERENCE)
    confusion = np.sum([np.array(m) for m in runs["confusion_matrix"]], axis=0)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for t in range(10):
        for p in range(10):
            ax.text(
                p,
                t,
                str(confusion[t, p]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if t == p else "black",
            )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted",
        ylabel="true",
        title=f"reference: test confusion matrix, summed over {len(runs)} seeds",
    )
    fig.tight_layout()
    fig.savefig(path, **PNG)
    plt.close(fig)


def _plot_forest(summary: pd.DataFrame, path: Path) -> None:
    rows = summary[summary["variant"] != REFERENCE] if len(summary) else summary
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(rows), 1) + 1.2))
    for y, row in enumerate(rows.itertuples()):
        low, high = row.diff_ci
        if not math.isnan(low):
            ax.plot([100 * low, 100 * high], [y, y], color="tab:blue")
        ax.plot(100 * row.diff, y, "o", color="tab:blue")
    ax.axvline(0, color="gray", linestyle="--")
    ax.set(
        yticks=range(len(rows)),
        yticklabels=list(rows["variant"]) if len(rows) else [],
        xlabel="paired difference in test accuracy vs reference (percentage points)",
        title="variant − reference, mean and 95% CI over seeds",
    )
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, **PNG)
    plt.close(fig)


# ---------------------------------------------------------------- index


def index_page(study: Study, summary: pd.DataFrame, sections: list[tuple[str, str]]) -> str:
    included = pd.concat([study.runs(label) for label in study.labels_with_runs()])
    environments = pd.DataFrame(list(included["environment"]))
    seeds = sorted(set(included["seed"]))
    epochs = sorted({study.variants[label].epochs for label in study.labels_with_runs()})
    dates = sorted(environments["timestamp"].str[:10])
    what = [
        f"- **Variants**: {len(study.labels_with_runs())} ({', '.join(study.labels_with_runs())})",
        f"- **Runs**: {len(included)} ({int((included['status'] != 'ok').sum())} diverged), "
        f"seeds {_ranges(seeds)}, epochs {', '.join(map(str, epochs))}",
        f"- **CPU**: {_unique(environments['cpu'])}; **device**: "
        f"{_unique(environments['device'])}; **torch threads per run**: "
        f"{_unique(environments['threads'])}",
        f"- **Versions**: torch {_unique(environments['torch'])}, Python "
        f"{_unique(environments['python'])}",
        f"- **Dates**: {dates[0]} to {dates[-1]}; **git commits**: "
        f"{_unique(environments['git_commit'].fillna('unknown').str[:12])}",
    ]
    headline = [
        {k: v for k, v in row.items() if k not in ("p (paired t)",)}
        for row in comparison_rows(summary)
    ]
    links = [f"- [{title}]({file})" for title, file in sections]
    return (
        "\n\n".join(
            [
                "# MNIST MLP ablation report",
                "Generated by `python -m harness.report` from the stored runs alone.",
                "## What was run, on what",
                "\n".join(what),
                "## Headline",
                "Test accuracy, mean over seeds with a 95% Student-t interval; Δ is the "
                "paired difference against the reference on the same seeds (Holm-adjusted paired "
                "t-test).",
                table(headline),
                "## Sections",
                "\n".join(links),
            ]
        )
        + "\n"
    )


def _unique(values: pd.Series) -> str:
    return ", ".join(str(v) for v in sorted(set(values)))


def _ranges(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def claims_section(study: Study) -> str:
    rows = claims_rows(study)
    body = table(rows) if rows else "No reference runs stored yet."
    return (
        "\n\n".join(
            [
                "# The write-up's claims, checked",
                f"Against the reference's {len(study.ok_runs(REFERENCE))} stored seeds. A claimed "
                "value holds (✅) when the rule in its row is met.",
                body,
                "![Reference confusion matrix](plots/confusion_reference.png)",
            ]
        )
        + "\n"
    )


def write_reports(study: Study, out: Path) -> Path:
    """Writes every section and plot under out; returns the index's path."""
    from harness.search import search_section  # the search report needs optuna only here

    out = Path(out)
    (out / "variants").mkdir(parents=True, exist_ok=True)
    summary = summary_frame(study)
    if summary.empty:
        (out / "README.md").write_text("# MNIST MLP ablation report\n\nNo stored runs yet.\n")
        return out / "README.md"
    plot_all(study, summary, out / "plots")
    sections = [
        ("Ablation summary", "ablations.md"),
        ("Per-digit breakdown", "per_digit.md"),
        ("The write-up's claims, checked", "claims.md"),
    ]
    (out / "ablations.md").write_text(summary_section(study, summary))
    (out / "per_digit.md").write_text(per_digit_section(study))
    (out / "claims.md").write_text(claims_section(study))
    if study.search is not None:
        (out / "search.md").write_text(search_section(study, summary, out / "plots"))
        sections.append(("Hyperparameter search", "search.md"))
    for label in study.labels_with_runs():
        (out / "variants" / f"{label}.md").write_text(variant_page(study, summary, label))
        sections.append((f"Variant: {label}", f"variants/{label}.md"))
    runs_table(study).to_csv(out / "runs.csv", index=False)
    sections.append(("Every run behind these tables (CSV)", "runs.csv"))
    (out / "README.md").write_text(index_page(study, summary, sections))
    return out / "README.md"


def runs_table(study: Study) -> pd.DataFrame:
    """One row per run the report uses, so that a reader can recompute every number."""
    columns = [
        "seed",
        "status",
        "diverged_epoch",
        "test_accuracy",
        "test_loss",
        "best_val_accuracy",
        "best_epoch",
        "train_val_gap",
        "seconds_per_epoch",
        "parameters",
        "config_hash",
    ]
    frames = []
    for label in study.labels_with_runs():
        runs = study.runs(label).reindex(columns=[*columns, "per_digit_accuracy"])
        digits = pd.DataFrame(
            [a if isinstance(a, list) else [math.nan] * 10 for a in runs["per_digit_accuracy"]],
            columns=[f"digit_{d}_accuracy" for d in range(10)],
        )
        frames.append(pd.concat([runs[columns].assign(variant=label), digits], axis=1))
    table = pd.concat(frames, ignore_index=True)
    return table[["variant", *table.columns.drop("variant")]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--results-dir", help="stored runs (default: $HARNESS_RESULTS_DIR, else ./results)"
    )
    parser.add_argument(
        "--out", help="output folder (default: $HARNESS_REPORTS_DIR, else ./reports)"
    )
    parser.add_argument(
        "--epochs", type=int, help="the epochs the study was run with, if overridden"
    )
    args = parser.parse_args(argv)
    study = load_study(cli.results_dir(args), epochs=args.epochs)
    index = write_reports(study, resolve_reports_dir(args.out))
    print(f"reports: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
