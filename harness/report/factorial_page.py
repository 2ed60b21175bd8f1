"""The factorial's pages: factorial.md, and the index's first table (the numbers:
harness.report.factorial_analysis)."""

from __future__ import annotations

from harness.report.analysis import StudyData
from harness.report.factorial_analysis import FactorialAnalysis, Replication, diverged_cell_runs
from harness.report.markdown import (
    interval,
    join,
    plot_file,
    points,
    pp,
    pvalue,
    seed_range,
    table,
)
from harness.report.verdict_tables import bold_verdict
from harness.stats import factorial_model as model
from harness.stats.population import TEST_SET_BLOCKS
from harness.study.factorial_design import Factorial
from harness.study.plan import Design

SHORT = dict(zip(model.KINDS, ("main", "interaction", "simple, at the reference"), strict=True))


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


def replication_rows(analysis: FactorialAnalysis, replication: Replication, kinds) -> list[dict]:
    """Primary, replication, their difference and the pooled estimate, effect by effect."""
    rows = []
    pooled = analysis.pooled
    for i, row in analysis.effects.iterrows():
        if row["kind"] not in kinds:
            continue
        again, agree = replication.effects.loc[i], replication.agreement.loc[i]
        cells = {
            "effect": f"{change(analysis.factorial, row['effect'])} ({SHORT[row['kind']]})",
            "primary": _estimate(row),
            f"replication (seeds {seed_range(replication.seeds)})": _estimate(again),
            "difference [family CI]": f"{points(agree['difference'])} "
            f"{interval((agree['low'], agree['high']), points)} "
            + ("consistent" if agree["consistent"] else "**differ**"),
        }
        if pooled is not None:
            cells["pooled, all seeds"] = _estimate(pooled.loc[i])
        rows.append(cells)
    return rows


def replication_section(analysis: FactorialAnalysis, kinds) -> list[str]:
    parts = []
    for replication in analysis.replications:
        same, consistent, total = replication.agreement_counts(kinds)
        parts += [
            f"### Replication on seeds {seed_range(replication.seeds)}",
            f"The same {len(analysis.factorial.cells())} cells on new seeds, disjoint from every "
            f"seed the primary study used. Verdicts agree on {same} "
            f"of {total} effects; the replication's estimate is consistent with the "
            f"primary's (their difference's interval, at the family's level and on this test "
            f"set, which both share, holds 0) for {consistent} of "
            f"{total}. The pooled column is the model fitted to every seed, the "
            "study's best estimate; the primary is the analysis the plan named first.",
            table(replication_rows(analysis, replication, kinds)),
        ]
    return parts


def _estimate(row) -> str:
    """ "−0.12 [−0.20, −0.04] **worse**": Δ, its family interval for new seeds and test sets
    and the verdict read off it."""
    bounds = interval((row["low"], row["high"]), points)
    return f"{points(row['estimate'])} {bounds} {bold_verdict(row['verdict'])}"


def design_line(analysis: FactorialAnalysis, until_decided: Design | None = None) -> str:
    f = analysis.factorial
    k, cells, seeds = len(f.factors), len(f.cells()), len(f.seeds)
    shape = f"2^{k}"
    if f.resolution is not None:
        shape = f"2^({k}−{k - cells.bit_length() + 1}) fraction of resolution {f.resolution},"
    line = (
        f"A {shape} factorial over {', '.join(analysis.factors)}: {cells} cells × {seeds} "
        f"seed{'s' if seeds > 1 else ''} ({seed_range(f.seeds)}) = {len(analysis.runs)} runs, "
        "every cell on the same seeds."
    )
    if until_decided is not None:
        line += (
            f" Seeds until decided: a pilot of {until_decided.pilot_seeds} seeds per cell, then "
            f"as many as its pooled residual spread planned for the least precise main or simple "
            f"effect (80% power at ±margin, the family's level), at most {until_decided.max_seeds}."
        )
    if analysis.replications:
        again = [f"seeds {seed_range(r.seeds)}" for r in analysis.replications]
        line += f" Primary study; replicated on {', '.join(again)} (below)."
    return line


def simple_effects_line(analysis: FactorialAnalysis) -> str:
    """How the simple effects were estimated, which decides what they assume."""
    simple = analysis.effects[analysis.effects["kind"] == model.KINDS[2]]
    if set(simple["method"]) == {model.CELLS}:
        return (
            "What changing one factor alone in the reference recipe does: the reference cell "
            "against the cell one change away, their own runs paired by seed, the error the "
            "replicates' pure error pooled over every cell. No interaction is assumed away."
        )
    return (
        "What changing one factor alone in the reference recipe does, read off the model (a "
        "fraction holds no cell one change away, or one seed leaves no pure error): so under its "
        "assumption that interactions of three or more factors are negligible; the pooling test "
        "below checks it, with little power."
    )


def factorial_page(analysis: FactorialAnalysis | None, data: StudyData) -> str:
    if analysis is None:
        plan = data.plan
        seeds = plan.primary_seeds()
        expected = len(plan.factorial.cells()) * len(seeds)
        done = data.cell_runs()
        done = done[done["seed"].isin(seeds)] if len(done) else done
        diverged = diverged_cell_runs(data)
        return join(
            [
                "# Factorial",
                f"{len(done)} of the primary study's {expected} cell runs finished, "
                f"{diverged} diverged: the analysis needs every cell on every seed. "
                + (
                    "A diverged run is stored and not trained again: the flags name it."
                    if diverged
                    else "Rerun the command to train the rest."
                ),
            ]
        )
    f_stat, p, df = analysis.pooling
    formula = model.model_formula(analysis.factors, len(analysis.factorial.seeds))
    level = analysis.effects["level"].iloc[0]
    pooled = (
        f"F = {f_stat:.2f} on {df} df, p = {pvalue(p)}"
        if df
        else "not testable (no pure error left)"
    )
    return join(
        [
            "# Factorial: main effects, interactions, simple effects",
            design_line(analysis, data.plan.design),
            "## Main effects",
            table(effect_rows(analysis, model.KINDS[0])),
            "## Simple effects at the reference",
            simple_effects_line(analysis),
            table(effect_rows(analysis, model.KINDS[2])),
            "## Two-factor interactions",
            "Half of (A's effect where B is changed − A's effect where B is at the reference).",
            table(effect_rows(analysis, model.KINDS[1])),
            f"![interactions]({plot_file('factorial_interactions')})",
            *(
                ["## Replications", *replication_section(analysis, model.KINDS)]
                if analysis.replications
                else []
            ),
            "## How these numbers were computed",
            f"- Model: statsmodels OLS, `{formula}`, factors coded −1 at the reference level "
            "and +1 at the other, an effect = 2β. Standard errors HC3 (they hold when cells "
            "differ in spread, as no-BatchNorm cells do).",
            f"- One error budget: every interval above is at {100 * level:.3f}% (Bonferroni over "
            f"all {len(analysis.effects)} effects at each of the declared budgets, "
            f"{', '.join(map(str, analysis.budgets))} epochs), so all hold together with "
            "probability ≥ 95% "
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
