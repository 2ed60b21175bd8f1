"""The search page: what the search found, the tuned arm against the reference, the repeats'
spread, and the expected best validation accuracy of n trials."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import StudyData
from harness.report.detail_pages import accuracy_rows, comparison_rows, short
from harness.report.markdown import interval, join, number, pct, plot_file, points, pp, table
from harness.stats.expected_max import expected_max_curve
from harness.study.search import SearchSummary, pruner_rungs
from harness.study.specs import REFERENCE


def stacked_trials_text(search: SearchSummary) -> str:
    """How a stacked search ran its trials (harness.study.search._stacked); nothing for one
    trial at a time per worker."""
    per_round = search.trials_per_round
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
    counts = search.counts
    importances = search.importances
    seconds = search.wall_seconds
    settings = data.plan.search
    # the cap as saved (search_epochs; epoch_cap in plans before the name was unified)
    cap = settings.get("search_epochs", settings.get("epoch_cap", search.config.epochs))
    rungs = ", ".join(str(epoch) for epoch in pruner_rungs(cap))
    labels = [label for label in searches if label in set(frame["variant"])]
    return join(
        [
            "# Hyperparameter search",
            f"Optuna study `{search.study}` (storage `{search.storage}`), TPE sampler "
            f"({settings.get('sampler', 'seed not recorded')}); a successive-halving pruner "
            f"lets a trial go on past epochs {rungs} only if its validation accuracy is in the "
            "best third of the trials that reached that epoch. The first trial is the "
            f"reference, its epochs capped at {cap}; a trial trains for up to {cap} epochs. The "
            "objective is one run's best validation accuracy (training seed "
            f"{settings.get('seed', 'not recorded')}, which no arm uses); the test set is not "
            "read." + stacked_trials_text(search),
            f"Trials: {counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
            f"{counts.get('fail', 0)} failed. Best validation accuracy "
            f"**{pct(search.best_value)}** (trial {search.best_trial}). From the first "
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
                    {"parameter": k, "reference": short(v)}
                    | {label: short(s.config.to_dict()[k]) for label, s in searches.items()}
                    for k, v in reference.items()
                ]
            ),
            "## Search space",
            table([{"parameter": k, "distribution": v} for k, v in sorted(search.space.items())]),
            f"## Parameter importances (PED-ANOVA, study `{search.study}`)",
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


def repeats_section(searches: dict[str, SearchSummary], frame: pd.DataFrame) -> list[str]:
    """Each independent search's choice, and what it is worth re-trained: the search's variance."""
    by_label = frame.set_index("variant")
    rows, best, tuned = [], [], []
    for label, search in searches.items():
        counts = search.counts
        row: dict[str, Any] = {
            "search": label,
            "study": f"`{search.study}`",
            "trial seed": "n/a" if search.trial_seed is None else search.trial_seed,
            "complete / pruned": f"{counts.get('complete', 0)} / {counts.get('pruned', 0)}",
            "best val acc": pct(search.best_value),
        }
        config = search.config.to_dict()
        row |= {k: short(config[k]) for k in REPEAT_PARAMS}
        best.append(search.best_value)
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


def expected_best_section(searches: dict[str, SearchSummary]) -> list[str]:
    """The expected best validation accuracy of a search of n trials (stats.expected_max)."""
    rows: dict[int, dict[str, Any]] = {}
    for label, search in searches.items():
        curve = expected_max_curve(np.array(search.trial_values()))
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
