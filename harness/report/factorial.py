"""The factorial's analysis as the reports show it: its effects (harness.stats.factorial) from the
stored runs and predictions, the page factorial.md, and the index's first table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.analysis import StudyData, correct_matrix
from harness.report.pages import bold_verdict, interval, join, plot_file, points, pp, pvalue, table
from harness.stats import factorial as model
from harness.stats.test_sets import TEST_SET_BLOCKS, block_accuracies
from harness.study.factorial import Factorial


@dataclass(frozen=True)
class FactorialAnalysis:
    factorial: Factorial
    runs: pd.DataFrame  # one row per run: cell, coded factors, seed, accuracy, fitted, residual
    effects: pd.DataFrame  # harness.stats.factorial.effect_table
    anova: pd.DataFrame
    pooling: tuple[float, float, int]  # F, p, df of the terms pooled into error
    expected_runs: int

    @property
    def factors(self) -> list[str]:
        return [f.name for f in self.factorial.factors]


def factorial_analysis(data: StudyData) -> FactorialAnalysis | None:
    """The analysis once every cell has finished on every seed (a balanced design: the effects'
    meaning rests on it); None for a study without a factorial or one still training."""
    plan = data.plan
    if plan is None or plan.factorial is None:
        return None
    runs = data.cell_runs()
    expected = len(plan.factorial.cells()) * len(plan.factorial.seeds)
    factors = [f.name for f in plan.factorial.factors]
    if len(runs) < expected:
        return None
    blocks = block_accuracies(correct_matrix(data.frame.loc[runs["record"]]))
    effects = model.effect_table(runs, factors, plan.margin, blocks)
    return FactorialAnalysis(
        plan.factorial,
        model.residuals(runs, factors),
        effects,
        model.anova_table(runs, factors),
        model.pooling_test(runs, factors),
        expected,
    )


def change(factorial: Factorial, name: str) -> str:
    """ "batchnorm: on → off" for a factor; an interaction's name as it is."""
    factor = next((f for f in factorial.factors if f.name == name), None)
    return f"{name}: {factor.levels[0]} → {factor.levels[1]}" if factor else name


def effect_rows(analysis: FactorialAnalysis, kind: str) -> list[dict]:
    rows = []
    for row in analysis.effects[analysis.effects["kind"] == kind].itertuples():
        rows.append(
            {
                "effect": change(analysis.factorial, row.effect),
                "Δ (pp)": points(row.estimate),
                "[family CI], new seeds and test sets": interval((row.low, row.high), points),
                "verdict": bold_verdict(row.verdict),
                "this test set only: [family CI], verdict": (
                    f"{interval((row.set_low, row.set_high), points)} {row.set_verdict}"
                ),
                "test-set floor (±)": pp(row.test_set_floor, sign=""),
                "se: seeds, images (pp)": f"{pp(row.se_seeds, 3, '')}, {pp(row.se_images, 3, '')}",
            }
        )
    return rows


def design_line(analysis: FactorialAnalysis) -> str:
    f = analysis.factorial
    k, cells, seeds = len(f.factors), len(f.cells()), len(f.seeds)
    shape = f"2^{k}"
    if f.resolution is not None:
        shape = f"2^({k}−{k - cells.bit_length() + 1}) fraction of resolution {f.resolution},"
    return (
        f"A {shape} factorial over {', '.join(analysis.factors)}: {cells} cells × {seeds} "
        f"seeds = {len(analysis.runs)} runs, every cell on the same seeds."
    )


def index_section(analysis: FactorialAnalysis | None, margin: float) -> list[str]:
    """The index's first section: main effects, then simple effects at the reference."""
    if analysis is None:
        return []
    m = len(analysis.effects)
    return [
        "## The factorial: what each component is worth",
        design_line(analysis)
        + f" Δ = accuracy with the factor changed − with it at the reference level. One error "
        f"budget (α = 0.05, Bonferroni) over all {m} effects of [factorial.md](factorial.md) "
        f"(main effects, interactions, simple effects), equivalence margin ±{100 * margin:.2f} pp; "
        "verdicts for new seeds and new test sets drawn like MNIST's, and for this test set only "
        "beside them.",
        "**Main effects** (the change averaged over every combination of the other factors):",
        table(effect_rows(analysis, model.KINDS[0])),
        "**Simple effects at the reference** (changing one factor in the reference recipe, "
        "estimated from all runs through the model):",
        table(effect_rows(analysis, model.KINDS[2])),
    ]


def factorial_page(analysis: FactorialAnalysis | None, data: StudyData) -> str:
    if analysis is None:
        plan = data.plan
        expected = len(plan.factorial.cells()) * len(plan.factorial.seeds)
        return join(
            [
                "# Factorial",
                f"{len(data.cell_runs())} of {expected} cell runs finished: the analysis waits for "
                "every cell on every seed (rerun the command to finish them).",
            ]
        )
    f_stat, p, df = analysis.pooling
    formula = model.model_formula(analysis.factors, len(analysis.factorial.seeds))
    level = analysis.effects["level"].iloc[0]
    pooled = (
        f"F = {f_stat:.2f} on {df} df, p = {pvalue(p)}" if df else "not testable (no replicates)"
    )
    return join(
        [
            "# Factorial: main effects, interactions, simple effects",
            design_line(analysis),
            "## Main effects",
            table(effect_rows(analysis, model.KINDS[0])),
            "## Simple effects at the reference",
            "What changing one factor alone in the reference recipe does, estimated from every "
            "run through the model (so under its assumption that interactions of three or more "
            "factors are negligible; the pooling test below checks it).",
            table(effect_rows(analysis, model.KINDS[2])),
            "## Two-factor interactions",
            "Half of (A's effect where B is changed − A's effect where B is at the reference).",
            table(effect_rows(analysis, model.KINDS[1])),
            f"![interactions]({plot_file('factorial_interactions')})",
            "## How these numbers were computed",
            f"- Model: statsmodels OLS, `{formula}`, factors coded −1 at the reference level "
            "and +1 at the other, an effect = 2β. Standard errors HC3 (they hold when cells "
            "differ in spread, as no-BatchNorm cells do).",
            f"- One error budget: every interval above is at {100 * level:.3f}% (Bonferroni over "
            f"all {len(analysis.effects)} effects), so all hold together with probability ≥ 95% "
            "and each verdict is read off the interval printed beside it.",
            "- Populations: the first interval is for new seeds *and* new test sets drawn like "
            f"MNIST's (its two halves as strata, {TEST_SET_BLOCKS} blocks of consecutive images "
            "as units; the effect's variation over blocks, less the runs' seed × block noise, is "
            "added to the seed part, Satterthwaite degrees of freedom); the second for new seeds "
            "on this test set. The test-set floor is the image part's half-width: it does not "
            "shrink with seeds, so a population verdict of equivalence needs |Δ| + floor < margin "
            "whatever the seeds.",
            f"- Pooling rule: interactions of three or more factors are pooled into error "
            f"(hierarchical ordering). Their F test against the replicates' pure error: {pooled}.",
            '- Verdicts: better / worse where the interval excludes 0 ("…, within the margin" '
            "where it also lies inside ±margin), equivalent where it lies inside ±margin, else "
            "inconclusive.",
            "## ANOVA (type II, HC3-robust F tests)",
            analysis.anova.reset_index(names="term").to_markdown(index=False, floatfmt=".4g"),
            "## Residuals",
            f"![residuals]({plot_file('factorial_residuals')})",
        ]
    )
