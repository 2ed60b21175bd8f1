"""Markdown for the verdict tables: the one-at-a-time verdicts, the search's tuned arms and the
arms at their own --retune values, each family with the interval that decided it.

Like every page, these only format what harness.report.analysis computed.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.report.analysis import ABLATIONS, RETUNED, SELECTED, StudyData
from harness.report.markdown import (
    integer,
    interval,
    missing,
    pct,
    points,
    pp,
    seeds,
    table,
)
from harness.stats import population, verdicts
from harness.stats.inference import POWER
from harness.study.plan import RETUNED_SUFFIX, is_baseline
from harness.study.search import RETUNE_SEED, TPE_STARTUP_TRIALS, RetuneSummary, range_text
from harness.study.specs import REFERENCE


def verdict_rows(frame: pd.DataFrame, margin: float, labels: list[str] | None = None) -> list[dict]:
    """The index's first table: what each comparison decided, and what more seeds would buy."""
    return [
        {
            "variant": row.variant,
            "n": integer(row.n_pairs),
            "Δ (pp)": points(row.diff),
            "[family CI], new seeds and test sets": interval(row.population_family_ci, points),
            "verdict": bold_verdict(row.verdict),
            "this test set only: [family CI], verdict": f"{interval(row.family_ci, points)} "
            f"{row.verdict_this_test_set}",
            "test-set floor (±)": pp(row.test_set_floor, sign=""),
            "smallest detectable Δ": pp(row.mde, sign=""),
            f"seeds for ±{100 * margin:.2f} pp": seeds(row.seeds_needed),
        }
        for row in frame.itertuples()
        if not is_baseline(row.variant) and (labels is None or row.variant in labels)
    ]


def bold_verdict(verdict: str) -> str:
    """A decided direction in bold: "**worse**", "**worse**, within the margin"."""
    direction, comma, rest = verdict.partition(",")
    return f"**{direction}**{comma}{rest}" if direction in ("better", "worse") else verdict


def reference_line(frame: pd.DataFrame) -> str:
    ref = frame.set_index("variant").loc[REFERENCE]
    return (
        f"Reference: **{pct(ref['mean'])}** test accuracy over {ref['n']} seeds: "
        f"{interval(ref['t_ci'])} for new seeds on this test set (95% t interval), "
        f"{interval(ref['images_ci'])} for new seeds and new test sets drawn like it."
    )


def verdict_section(data: StudyData, frame: pd.DataFrame) -> list[str]:
    margin = 100 * data.plan.margin
    ablations = frame[frame["family"] == ABLATIONS]
    tested = int(ablations["n_pairs"].gt(0).sum()) if "n_pairs" in frame else 0
    budgets = data.budgets  # each arm's verdict at each declared budget is one of the family
    size = max(tested * len(budgets), 1)
    level = 100 * (1 - verdicts.ALPHA / size)
    over = f"the {size} verdicts" + (
        f" ({tested} arms at each of the declared budgets, {', '.join(map(str, budgets))} "
        "epochs: [budgets.md](budgets.md))"
        if len(budgets) > 1
        else ""
    )
    tuned = frame[frame["family"] == SELECTED]
    parts = [
        "## One-at-a-time verdicts",
        reference_line(frame),
        f"Planned ablations, each paired with the reference on the seeds both finished; one "
        f"error budget (α = 0.05) over {over}; equivalence margin "
        f"±{margin:.2f} pp. A verdict speaks for new seeds *and* new test sets drawn like "
        "MNIST's (its two halves as strata, "
        f"{population.TEST_SET_BLOCKS} blocks of consecutive images as the sampled units: a new "
        "test set moves the number too, and that part does not shrink with seeds); the verdict "
        "for new seeds on this test set alone follows it. Each is read off the interval beside "
        f"it, at {level:.2f}% (1 − 0.05/{size}), so that all {size} hold together "
        "with probability at least 95% and some verdict is wrong in at most 5% of such studies "
        "(Bonferroni).",
        table(verdict_rows(ablations, data.plan.margin)),
        '**better** / **worse**: the interval excludes 0 ("…, within the margin" where it '
        f"also lies within ±{margin:.2f} pp: a real difference too small to matter). "
        f"**equivalent**: the interval lies within ±{margin:.2f} pp. **inconclusive**: "
        "neither; the last column says how many seeds a paired t-test needs to find a "
        f"{margin:.2f} pp difference 80% of the time at the family's level, from an 80% upper "
        "confidence bound of this arm's spread (a few seeds' sd undershoots as often as not), "
        "on this test set: for new test sets the test-image part comes on top, whatever the "
        "seeds. Smallest detectable Δ: the difference the current seeds find 80% of the time "
        "at that level; a smaller one can hide in an inconclusive verdict. Test-set floor: the "
        "half-width that the interval for new test sets keeps however many seeds are trained "
        "(its test-image part, at the family's level): no number of seeds decides "
        f"equivalence where |Δ| + floor ≥ {margin:.2f} pp, nor a difference where |Δ| ≤ floor; "
        "only a larger test set would. The 95% intervals of ablations.md are per comparison, "
        "not the family's.",
    ]
    if data.plan.stein_design is not None:
        bound = [
            f"{row.variant} ({100 * row.power_at_cap:.0f}%)"
            for row in ablations.itertuples()
            if not missing(getattr(row, "power_at_cap", math.nan))
        ]
        parts.append(
            "Seeds until decided: Stein's test, whose spread is the pilot's, has no test-image "
            "part, so these verdicts speak for new seeds on this test set only. The plan "
            f"promised {100 * POWER:.0f}% power to find a {margin:.2f} pp difference; "
            + (
                f"the cap of {data.plan.stein_design.max_seeds} seeds cut the seeds of "
                + ", ".join(bound)
                + ", in brackets the power each has at the cap."
                if bound
                else "the cap cut no arm's seeds."
            )
        )
    if len(tuned):
        parts += [
            "### Selected by the search",
            table(verdict_rows(tuned, data.plan.margin)),
            "The tuned network is its own family: it was chosen as the best of a search's "
            "trials on validation accuracy, so its comparison is conditional on that choice: "
            "one search is one draw of a noisy procedure, and another search (other trial "
            "seeds, or its workers taking another path) can choose another config"
            + (
                f"; here {len(tuned)} independent searches' choices, each re-trained "
                "(tuned-repeatK: the K-th search), one error budget over them."
                if len(tuned) > 1
                else "."
            ),
        ]
        sds = frame.set_index("variant")["sd"]
        for label in tuned["variant"]:
            if sds[label] > 2 * sds[REFERENCE]:
                parts.append(
                    f"⚠ {label}'s seed-to-seed sd ({100 * sds[label]:.2f} pp) is more than "
                    f"twice the reference's ({100 * sds[REFERENCE]:.2f} pp): one run of it says "
                    "less than one run of the reference, and a few seeds can move its mean a lot."
                )
    return parts + retuned_section(data, frame)


def retuned_section(data: StudyData, frame: pd.DataFrame) -> list[str]:
    """--retune: each ablation's verdict at the reference's settings and at its own, side by
    side, the retuned ones a family of their own (paired with the retuned reference)."""
    retuned = frame[(frame["family"] == RETUNED) & ~frame["variant"].map(is_baseline)]
    if not len(retuned):
        return []
    by_label = frame.set_index("variant")
    searches = data.retuned
    reference = searches.get(REFERENCE)
    rows = []
    for row in retuned.itertuples():
        label = row.variant.removesuffix(RETUNED_SUFFIX)
        found = searches.get(label)
        fixed = by_label.loc[label] if label in by_label.index else None
        rows.append(
            {
                "variant": label,
                "its own values; best val acc": _values(found),
                "at the reference's settings: Δ [family CI], verdict": "n/a"
                if fixed is None
                else f"{points(fixed['diff'])} {interval(fixed['verdict_ci'], points)} "
                f"{bold_verdict(fixed['verdict'])}",
                "at its own: Δ [family CI], verdict": f"{points(row.diff)} "
                f"{interval(row.verdict_ci, points)} {bold_verdict(row.verdict)}",
                "pairs": integer(row.n_pairs),
            }
        )
    trials = sorted({s.trials for s in searches.values()})
    params = sorted({p for s in searches.values() for p in s.params})
    return [
        "### At each arm's own settings (--retune)",
        f"Every arm, the reference too, got the same search for its own {', '.join(params)}: "
        f"{' or '.join(map(str, trials))} full training runs on validation data (trial seed "
        f"{RETUNE_SEED:,}, which no arm is evaluated on; the first at the arm's own "
        f"values, then TPE seeded alike, whose first {TPE_STARTUP_TRIALS} trials are random "
        "draws, the same values for every arm; log-uniform ranges "
        f"{range_text(params)}), the best "
        "validation accuracy picking. Each retuned arm is then paired with the retuned "
        f"reference ({_values(reference)}) on the same seeds; one error budget over the "
        f"{len(retuned)} retuned verdict(s), for the population of the verdicts above. Weight "
        "decay is not retuned for an arm that has none: its absence is what the arm studies.",
        table(rows),
        f"What the budget can rule out: that a verdict above is an artefact of settings tuned "
        f"for the reference, within {' or '.join(map(str, trials))} trials' reach; where "
        "both verdicts agree, the component's worth does not hinge on the learning rate. What "
        "it cannot: a wider search (other ranges, more trials, the other hyperparameters) "
        "could move either arm further, and each arm's chosen values are one search's noisy "
        "pick on one validation split.",
    ]


def _values(found: RetuneSummary | None) -> str:
    if found is None:
        return "n/a"
    values = ", ".join(f"{p} {v:.3g}" for p, v in found.values.items())
    return f"{values}; val {pct(found.best_value)}"
