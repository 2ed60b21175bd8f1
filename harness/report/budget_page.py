"""The budget page, budgets.md: each component's worth at every training budget (curves, the
verdicts at the declared budgets, where each settles), the time to target accuracies, and the
arms against the reference at equal training time. The numbers: harness.report.budget_analysis
and harness.report.factorial_analysis."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.budget_analysis import BudgetAnalysis
from harness.report.factorial_analysis import FactorialAnalysis
from harness.report.factorial_page import SHORT, change
from harness.report.markdown import interval, join, missing, pct, plot_file, points, table
from harness.report.verdict_tables import bold_verdict
from harness.stats import factorial_model as model


def settles_text(budget: float | None, epochs: int) -> str:
    if budget is None or missing(budget):
        return f"still moving at {epochs}"
    return f"from {int(budget)}" if budget > 1 else "from 1 (every budget)"


def factorial_budget_rows(
    factorial: FactorialAnalysis, budgets: BudgetAnalysis
) -> list[dict[str, str]]:
    """Main and simple effects at each declared budget: Δ [family CI] verdict, and where the
    verdict settles."""
    table_ = factorial.by_budget
    settle = budgets.settles.set_index(["kind", "effect"])["settles_from"]
    rows = []
    for kind in (model.KINDS[0], model.KINDS[2]):
        for effect in factorial.factors:
            cells = {"effect": f"{change(factorial.factorial, effect)} ({SHORT[kind]})"}
            chosen = table_[(table_["kind"] == kind) & (table_["effect"] == effect)]
            for row in chosen[chosen["declared"]].itertuples():
                cells[f"{row.budget} epochs"] = _estimate(
                    row.estimate, row.low, row.high, row.verdict
                )
            cells["verdict settles"] = settles_text(settle.get((kind, effect)), budgets.epochs)
            rows.append(cells)
    return rows


def arm_budget_rows(budgets: BudgetAnalysis) -> list[dict[str, str]]:
    settle = budgets.settles[budgets.settles["kind"] == "one at a time"].set_index("effect")
    rows = []
    for arm, group in budgets.arms.groupby("arm", sort=False):
        cells = {"variant": arm}
        for row in group[group["declared"]].itertuples():
            low, high = row.population_family_ci
            cells[f"{row.budget} epochs"] = _estimate(row.diff, low, high, row.verdict)
        cells["verdict settles"] = settles_text(settle["settles_from"].get(arm), budgets.epochs)
        rows.append(cells)
    return rows


def _estimate(estimate: float, low: float, high: float, verdict: str) -> str:
    return f"{points(estimate)} {interval((low, high), points)} {bold_verdict(verdict)}"


def _median(values: tuple[float, float, float]) -> str:
    """Kaplan–Meier's median with its interval, in 3 significant digits."""
    median, low, high = values
    if missing(median):
        return "n/a"
    if math.isinf(median):
        return "not reached by half"
    if missing(low):
        return f"{median:.3g}"
    return f"{median:.3g} [{low:.3g}, " + ("∞)" if math.isinf(high) else f"{high:.3g}]")


def target_rows(budgets: BudgetAnalysis) -> list[dict[str, str]]:
    rows = []
    for (arm, target), group in budgets.times.groupby(["arm", "target"], sort=False):
        row = group.iloc[0]
        rows.append(
            {
                "arm or cell": arm,
                "target (val)": pct(target),
                "reached": f"{row['reached']} of {row['runs']}",
                "median epochs [95% CI]": _median(row["epochs"]),
                "median seconds [95% CI]": _median(row["seconds"]),
            }
        )
    return rows


def _ratio(ratio) -> str:
    if missing(ratio.ratio):
        return "n/a"
    return f"{ratio.ratio:.2f}× [{ratio.low:.2f}, {ratio.high:.2f}]"


def ratio_rows(budgets: BudgetAnalysis, factorial: FactorialAnalysis | None) -> list[dict]:
    rows = []
    for row in budgets.ratios.itertuples():
        name = row.change
        if row.kind == "main effect" and factorial is not None:
            name = f"{change(factorial.factorial, row.change)} (main)"
        rows.append(
            {
                "change": name,
                "target (val)": pct(row.target),
                "time ratio, epochs [95% CI]": _ratio(row.epochs),
                "time ratio, seconds [95% CI]": _ratio(row.seconds),
            }
        )
    return rows


def equal_time_rows(budgets: BudgetAnalysis) -> list[dict[str, str]]:
    return [
        {
            "variant": row.arm,
            "epochs: variant, reference": f"{row.variant_epochs}, {row.reference_epochs}",
            "training time (s)": f"{row.seconds:.1f}",
            "Δ at equal time [family CI], verdict": _estimate(
                row.diff, *row.population_family_ci, row.verdict
            ),
        }
        for row in budgets.equal_time.itertuples()
    ]


def budget_page(budgets: BudgetAnalysis, factorial: FactorialAnalysis | None, margin: float) -> str:
    declared = ", ".join(map(str, budgets.budgets))
    level = factorial.level if factorial is not None else None
    parts = [
        "# The worth of each component at every training budget",
        f"Every run was evaluated on the test set after each of its {budgets.epochs} epochs, "
        "apart from everything it decided: at budget k a run is read at the epoch a k-epoch run "
        "would have chosen, by validation accuracy among its epochs 1..k (the first k epochs "
        "of a longer run are a k-epoch run, bit for bit: the data order and the plateau "
        "scheduler do not look ahead). So each effect is a curve over k. Its verdicts at the "
        f"declared budgets ({declared} epochs) are members of the study's one error budget; the "
        "curves between them are at the same level, descriptive. A verdict *settles* at the "
        "first budget from which it stays what it is at the last; where it changes at the last "
        f"budget it is still moving at {budgets.epochs}: a longer run could change it.",
        f"![effect by training budget]({plot_file('budget_curves')})",
    ]
    if factorial is not None and factorial.by_budget is not None:
        seeds = ", ".join(map(str, factorial.answer_seeds))
        parts += [
            "## The factorial's effects by budget",
            f"Every seed ({seeds}); Δ [family CI at {100 * level:.3f}%, new seeds and new test "
            f"sets] and its verdict, equivalence margin ±{100 * margin:.2f} pp.",
            table(factorial_budget_rows(factorial, budgets)),
        ]
    if len(budgets.arms):
        parts += [
            "## One-at-a-time arms by budget",
            "Each arm paired with the reference by seed; Δ [family CI, new seeds and new test "
            "sets] and its verdict.",
            table(arm_budget_rows(budgets)),
        ]
    parts += [
        "## Time to target",
        "Epochs and seconds until a run's validation accuracy first reaches each target "
        f"({', '.join(pct(t) for t in budgets.targets)}: "
        + (
            "the study's own"
            if budgets.targets_chosen
            else "from the reference's runs, its mean validation accuracy after a fifth of its "
            "epochs and its mean best less the margin, each rounded down to 0.05 pp"
        )
        + "). A run that never reaches a target within its epochs is censored there, not "
        "dropped: the median is Kaplan–Meier's (lifelines), and the time ratio is a Weibull "
        "accelerated-failure-time model's exp(β) with the runs interval-censored (each run is "
        "seen only at epoch ends): above 1 the change makes the target take longer, below 1 "
        "shorter; for a factor, the ratio of its change averaged over the other factors. "
        "Seconds are the runs' own timings (training and validation), on a machine shared with "
        "other work while they ran: read them as rough.",
        table(target_rows(budgets)),
        table(ratio_rows(budgets, factorial)),
        f"![accuracy against training time]({plot_file('budget_clock')})",
    ]
    if len(budgets.equal_time):
        parts += [
            "## At equal training time",
            "Each arm against the reference where both trained for the same time: the faster "
            "at its full budget, the slower at the budget that fits in that time (mean seconds "
            "of its runs), paired by seed; the test-image part included, at the family's level.",
            table(equal_time_rows(budgets)),
        ]
    return join(parts)


def factorial_settles_line(budgets: BudgetAnalysis | None, effects: pd.DataFrame) -> str:
    """One sentence for the answer page: where the main effects' verdicts settle."""
    if budgets is None or budgets.settles.empty:
        return ""
    mains = budgets.settles[budgets.settles["kind"] == model.KINDS[0]].set_index("effect")
    return "; ".join(
        f"{effect} {settles_text(mains['settles_from'].get(effect), budgets.epochs)}"
        for effect in effects[effects["kind"] == model.KINDS[0]]["effect"]
        if effect in mains.index
    )
