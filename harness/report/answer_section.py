"""The answer, first on the index: each component's worth in one table and one figure (its main
effect and its effect in the reference recipe, each with its family interval, the seed and
test-image parts of it, and the verdict), whether the replication agrees, and how the verdict
depends on the training budget. The numbers: harness.report.factorial_analysis and
harness.report.budget_analysis."""

from __future__ import annotations

from typing import Any

from harness.report.budget_analysis import BudgetAnalysis
from harness.report.budget_page import factorial_settles_line
from harness.report.factorial_analysis import FactorialAnalysis
from harness.report.factorial_page import change, design_line
from harness.report.markdown import interval, plot_file, points, seed_range, table
from harness.report.verdict_tables import bold_verdict
from harness.stats import factorial_model as model

ANSWER_PLOT = "answer"
KIND_LABEL = {model.KINDS[0]: "averaged over the others", model.KINDS[2]: "in the reference recipe"}


def answer_rows(analysis: FactorialAnalysis) -> list[dict[str, Any]]:
    """Per component, its main effect then its simple effect at the reference, from the study's
    best estimate (every seed, where there are replications): what the table and figure show."""
    effects = analysis.answer
    rows = []
    for factor in analysis.factors:
        for kind in (model.KINDS[0], model.KINDS[2]):
            row = effects[(effects["kind"] == kind) & (effects["effect"] == factor)].iloc[0]
            rows.append(
                {
                    "component": change(analysis.factorial, factor),
                    "kind": kind,
                    "label": f"{change(analysis.factorial, factor)}, {KIND_LABEL[kind]}",
                    **{key: row[key] for key in ("estimate", "low", "high", "verdict")},
                    **{key: row[key] for key in ("set_low", "set_high", "set_verdict")},
                    **{key: row[key] for key in ("se_seeds", "se_images", "method")},
                }
            )
    return rows


def answer_table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "component": f"**{row['component']}**" if row["kind"] == model.KINDS[0] else "",
            "where": KIND_LABEL[row["kind"]],
            "Δ (pp)": points(row["estimate"]),
            "[family CI], new seeds and test sets": interval((row["low"], row["high"]), points),
            "verdict": bold_verdict(row["verdict"]),
            "se: seeds, images (pp)": f"{100 * row['se_seeds']:.3f}, {100 * row['se_images']:.3f}",
            "this test set only": (
                f"{interval((row['set_low'], row['set_high']), points)} {row['set_verdict']}"
            ),
        }
        for row in rows
    ]


def answer_section(
    analysis: FactorialAnalysis | None, budgets: BudgetAnalysis | None, margin: float
) -> list[str]:
    if analysis is None:
        return []
    rows = answer_rows(analysis)
    effects = analysis.answer
    seeds, level = analysis.answer_seeds, 100 * analysis.level
    on_seeds = f"all {len(seeds)} seeds" if len(seeds) > 1 else "1 seed"
    on_seeds += f" ({seed_range(seeds)})"
    simple = {row["method"] for row in rows if row["kind"] == model.KINDS[2]}
    how_simple = (
        "the reference cell against the cell one change away, their own runs paired by seed"
        if simple == {model.CELLS}
        else "read off the model (main effects and two-factor interactions), which assumes "
        "higher interactions away"
    )
    parts = [
        "## What each component is worth",
        design_line(analysis),
        f"Δ = test accuracy with the component changed − at the reference level (pp), on "
        f"{on_seeds}. *Averaged over the others*: the main effect, "
        f"over every combination of the other components; *in the reference recipe*: changing "
        f"it alone ({how_simple}). Each verdict speaks for **new seeds and new test sets drawn "
        f"like MNIST's**, read off an interval at {level:.2f}% (one error budget, α = 0.05, over "
        f"the {len(effects)} effects of [factorial.md](factorial.md) at each declared budget, "
        f"{', '.join(map(str, analysis.budgets))} epochs); ±{100 * margin:.2f} pp "
        "counts as no difference. The interval's width comes from two standard errors: the "
        "seeds' (shrinks with more seeds) and the test images' (does not); *this test set "
        "only* leaves the second out.",
        table(answer_table(rows)),
        f"![each component's worth]({plot_file(ANSWER_PLOT)})",
    ]
    for replication in analysis.replications:
        same, consistent, total = replication.agreement_counts((model.KINDS[0], model.KINDS[2]))
        parts.append(
            f"**Replicated** on seeds {seed_range(replication.seeds)} (the same cells, new "
            f"seeds) against the primary seeds {seed_range(analysis.factorial.seeds)}: verdicts "
            f"agree on {same} of {total} of these "
            f"effects, and the two estimates are consistent (their difference's family interval "
            f"holds 0) for {consistent} of {total}; "
            "[factorial.md](factorial.md#replications) has each side by side."
        )
    settles = factorial_settles_line(budgets, effects)
    if settles:
        parts += [
            f"**By training budget** ([budgets.md](budgets.md)): each effect at every budget "
            f"k = 1..{budgets.epochs} epochs, the epoch chosen by validation among 1..k. The "
            f"main effects' verdicts settle: {settles}.",
            f"![effect by training budget]({plot_file('budget_curves')})",
        ]
    return parts
