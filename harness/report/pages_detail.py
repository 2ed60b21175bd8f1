"""Markdown for the detail pages: ablations.md, per_digit.md, claims.md, search.md and one page
per arm. Like harness.report.pages, they format numbers computed elsewhere and compute none."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import StudyData, confused_pairs
from harness.report.pages import (
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
from harness.stats import test_sets
from harness.stats.expected_max import expected_max_curve
from harness.stats.inference import BCA_MIN_N
from harness.study.retune import is_baseline
from harness.study.specs import REFERENCE
from harness.study.tuning import pruner_rungs


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
            f"{test_sets.TEST_SET_BLOCKS} blocks of consecutive images as the sampled units "
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


def stacked_trials_text(search: dict) -> str:
    """How a stacked search ran its trials (harness.study.stacked_search); nothing for one
    trial at a time per worker."""
    per_round = search.get("trials_per_round")
    if not per_round:
        return ""
    return (
        f" Trials were asked {per_round} at a time (Optuna's ask-and-tell) and trained as "
        "stacks of one network shape, each member its own hyperparameters, pruned on its own; "
        "the sampler learned between rounds only."
    )


def search_page(data: StudyData, frame: pd.DataFrame) -> str:
    search, searches = data.search, data.searches
    reference = data.plan.reference.config.to_dict()
    counts = search["counts"]
    importances = search.get("importances")
    seconds = search.get("wall_seconds")
    settings = data.plan.search
    cap = settings.get("epoch_cap", search["config"]["epochs"])
    rungs = ", ".join(str(epoch) for epoch in pruner_rungs(cap))
    labels = [label for label in searches if label in set(frame["variant"])]
    return join(
        [
            "# Hyperparameter search",
            f"Optuna study `{search['study']}` (storage `{search['storage']}`), TPE sampler "
            f"({settings.get('sampler', 'seed not recorded')}); a successive-halving pruner "
            f"lets a trial go on past epochs {rungs} only if its validation accuracy is in the "
            "best third of the trials that reached that epoch. The first trial is the "
            f"reference, its epochs capped at {cap}; a trial trains for up to {cap} epochs. The "
            "objective is one run's best validation accuracy (training seed "
            f"{settings.get('seed', 'not recorded')}, which no arm uses); the test set is not "
            "read." + stacked_trials_text(search),
            f"Trials: {counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed. Best validation accuracy "
            f"**{pct(search['best_value'])}** (trial {search['best_trial']}). From the first "
            "trial's start to the last one's end: "
            + ("not recorded." if seconds is None else f"{seconds / 60:.1f} min."),
            "## Tuned vs reference on the test set",
            "The best config re-trained over the seeds below, paired with the reference on the "
            "same seeds; a family of its own. The comparison is conditional on the search's "
            "choice: another search can pick another config"
            + (", as the repeats below show." if len(searches) > 1 else "."),
            table(accuracy_rows(frame[frame["variant"].isin([REFERENCE, *labels])])),
            table(comparison_rows(frame, labels)),
            *(repeats_section(searches, frame) if len(searches) > 1 else []),
            *expected_best_section(searches),
            "## Best config beside the reference",
            table(
                [
                    {"parameter": k, "reference": _short(v)}
                    | {label: _short(s["config"][k]) for label, s in searches.items()}
                    for k, v in reference.items()
                ]
            ),
            "## Search space",
            table(
                [{"parameter": k, "distribution": v} for k, v in sorted(search["space"].items())]
            ),
            f"## Parameter importances (PED-ANOVA, study `{search['study']}`)",
            "Too few complete trials for importances."
            if importances is None
            else table([{"parameter": k, "importance": number(v)} for k, v in importances.items()]),
            f"![Optimization history]({plot_file('search_history')})",
        ]
    )


REPEAT_PARAMS = (
    "hidden_widths",
    "batchnorm",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "shift",
)


def repeats_section(searches: dict[str, dict[str, Any]], frame: pd.DataFrame) -> list[str]:
    """Each independent search's choice, and what it is worth re-trained: the search's variance."""
    by_label = frame.set_index("variant")
    rows, best, tuned = [], [], []
    for label, search in searches.items():
        counts = search["counts"]
        row: dict[str, Any] = {
            "search": label,
            "study": f"`{search['study']}`",
            "trial seed": search.get("trial_seed", "n/a"),
            "complete / pruned": f"{counts.get('complete', 0)} / {counts.get('pruned', 0)}",
            "best val acc": pct(search["best_value"]),
        }
        row |= {k: _short(search["config"][k]) for k in REPEAT_PARAMS}
        best.append(search["best_value"])
        if label in by_label.index:
            arm = by_label.loc[label]
            tuned.append(arm["mean"])
            row["test accuracy (mean ± sd)"] = f"{pct(arm['mean'])} ± {pp(arm['sd'], sign='')}"
            row["Δ [CI behind the verdict], verdict"] = (
                f"{points(arm['diff'])} {interval(arm['verdict_ci'], points)} {arm['verdict']}"
            )
        rows.append(row)
    spread = f"the best validation accuracies span {pp(max(best) - min(best), sign='')}"
    if len(tuned) > 1:
        spread += (
            f", the re-trained choices' mean test accuracies {pct(min(tuned))} to "
            f"{pct(max(tuned))} (sd {pp(float(np.std(tuned, ddof=1)), sign='')} over searches)"
        )
    return [
        "## The search's own variance",
        f"{len(searches)} independent searches of the same space and budget, each its own "
        "Optuna study, trial seed and sampler seed (all disjoint from the evaluation seeds), "
        f"each choice re-trained on the same seeds as the reference: {spread}.",
        table(rows),
    ]


EXPECTED_BEST_AT = (1, 2, 5, 10, 20, 40, 100, 1000)


def expected_best_section(searches: dict[str, dict[str, Any]]) -> list[str]:
    """The expected best validation accuracy of a search of n trials (stats.expected_max)."""
    rows: dict[int, dict[str, Any]] = {}
    for label, search in searches.items():
        curve = expected_max_curve(trial_values(search))
        last = int(curve["n"].iloc[-1])
        for row in curve.itertuples():
            if row.n in EXPECTED_BEST_AT or row.n == last:
                cells = rows.setdefault(row.n, {"trials n": row.n})
                cells[label] = f"{pct(row.expected)} {interval((row.low, row.high))}"
    return [
        "## Expected best validation accuracy by number of trials",
        "What a search of n trials is expected to find, estimated from each search's N trials "
        "(Tang et al. 2020's unbiased estimator of Dodge et al. 2019's expected maximum, n of "
        "the N drawn without replacement; 95% percentile bootstrap over trials, as the tuning "
        "playbook's study-variance bootstrap). A curve that flattens says that more trials of "
        "this search would buy little validation accuracy. Read it with two caveats: the "
        "trials are TPE's, each guided by the earlier ones, not independent draws; and a "
        "pruned trial counts at its last validation accuracy before it was stopped, less than "
        "it would have reached, so the curve's left end is pessimistic. Blank: a search with "
        "fewer trials.",
        table([rows[n] for n in sorted(rows)]),
        f"![Expected best validation accuracy by trials]({plot_file('search_expected_best')})",
    ]


def trial_values(search: dict[str, Any]) -> np.ndarray:
    """Each finished trial's validation accuracy (a pruned one's when it was stopped)."""
    return np.array(
        [t["value"] for t in search["trials"] if t["state"] in FINISHED and t["value"] is not None]
    )


FINISHED = ("complete", "pruned")


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


def _short(value: Any) -> str:
    """A config value for a table: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return json.dumps(value)
