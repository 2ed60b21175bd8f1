"""The analysis of a two-level factorial: a linear model fitted by statsmodels, its effects with
intervals for new seeds and new test sets, and verdicts under one error budget.

Each factor is coded −1 at the reference level and +1 at the other (effect coding), so an
effect is a difference of accuracies, "changed − reference", as in the one-at-a-time tables:

- main effect of A: 2β_A, the change averaged over every combination of the other factors;
- interaction A×B: 2β_AB, half of (A's effect where B is changed − A's effect where B is not);
- simple effect of A at the reference: what changing A alone in the reference recipe does (the
  one-at-a-time question).

Main effects and interactions come from a model of main effects, two-factor interactions and
the seed as a block (every cell trains on the same seeds, which also fix the validation split).
Interactions of three or more factors are pooled into its error, the hierarchical-ordering
principle (Box, Hunter & Hunter §5.12; Wu & Hamada); in an orthogonal design that leaves these
estimates unbiased whatever those interactions are, and only enlarges the error. Cells differ in
spread (no-BatchNorm runs are noisier), so standard errors are HC3 (MacKinnon & White 1985).

A simple effect is a contrast of two cells, so interactions of three or more factors do bias the
model's version of it (2(β_A − Σ_B β_AB)) where they exist; `pooling_test` can only say whether
they are large, with little power. So where the design holds both cells and replicates, a
simple effect is the cells' own contrast, paired by seed, its error the replicates' pure error
pooled over every cell (the saturated model: a cell mean each and the seed block): it assumes no
interaction away. A fraction holds no cell one change away from the reference; there, and with
one seed, it is the model's, and the page says so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from harness.stats.design import planned_seeds
from harness.stats.population import (
    cell_by_image_variance,
    contrast_by_seed,
    image_floor,
    image_part,
    pooled_image_floor,
)
from harness.stats.verdicts import family_confidence, interval_verdict

KINDS = ("main effect", "interaction", "simple effect at the reference")
CELLS, MODEL = "cells", "model"  # how a simple effect was estimated


@dataclass(frozen=True)
class Effect:
    kind: str
    name: str
    weights: dict[str, float]  # over the model's parameters: the estimate is weights · β


def model_formula(factors: list[str], seeds: int) -> str:
    """Main effects and two-factor interactions, plus the seed as a block where there are
    several."""
    terms = " + ".join(factors)
    block = " + C(seed)" if seeds > 1 else ""
    return f"accuracy ~ ({terms})**2{block}"


def fit_factorial(runs: pd.DataFrame, factors: list[str]):
    """statsmodels OLS of runs.accuracy on the coded factors (columns of ±1) with HC3 errors."""
    formula = model_formula(factors, runs["seed"].nunique())
    return smf.ols(formula, data=runs).fit(cov_type="HC3")


def factorial_effects(factors: list[str]) -> list[Effect]:
    """Main effects, two-factor interactions and simple effects at the reference, in that
    order, as linear combinations of the model's parameters."""
    effects = [Effect(KINDS[0], f, {f: 2.0}) for f in factors]
    pairs = combinations(factors, 2)
    effects += [Effect(KINDS[1], f"{a} × {b}", {f"{a}:{b}": 2.0}) for a, b in pairs]
    for f in factors:
        weights = {f: 2.0}
        for g in factors:
            if g != f:
                weights[_interaction(f, g, factors)] = -2.0  # g at its reference level, −1
        effects.append(Effect(KINDS[2], f, weights))
    return effects


def effect_table(
    runs: pd.DataFrame,
    factors: list[str],
    margin: float,
    correct: np.ndarray | None = None,
    confidence: float | None = None,
) -> pd.DataFrame:
    """Every effect with its estimate and intervals at the given confidence (default: the
    family's, Bonferroni over all of them, so that one error budget covers every verdict and
    the printed interval is the one the verdict used), and the unadjusted 95% one.

    correct[run, image] (runs in runs' order) adds the test-image part (harness.stats.population,
    with its floor from every cell's correctness pooled):
    `low`/`high`/`verdict` are then for new seeds and new test sets, `set_low`/`set_high`/
    `set_verdict` for this test set only; both on the seed part's degrees of freedom. Without
    it the two are the same.
    """
    fit = fit_factorial(runs, factors)
    effects = factorial_effects(factors)
    level = family_confidence(len(effects)) if confidence is None else confidence
    if fit.df_resid < 1:
        raise ValueError(f"{len(runs)} runs leave no residual degrees of freedom for this model")
    cells = _cell_contrasts(runs, factors)
    tau2 = _cell_by_image_variance(runs, correct) if correct is not None else 0.0
    rows = []
    for effect in effects:
        simple = effect.kind == KINDS[2]
        if simple and cells is not None:
            weights, seed_var, df = cells[effect.name]
            estimate, method = float(weights @ runs["accuracy"].to_numpy()), CELLS
        else:
            vector = np.array([effect.weights.get(name, 0.0) for name in fit.params.index])
            estimate = float(vector @ fit.params.to_numpy())
            seed_var = float(vector @ fit.cov_params().to_numpy() @ vector)
            weights, df = vector @ fit.model.pinv_wexog, float(fit.df_resid)
            method = MODEL if simple else ""
        image_var = 0.0
        if correct is not None:
            cell_weights = pd.Series(weights).groupby(runs["cell"].to_numpy()).sum()
            floor = pooled_image_floor(tau2, cell_weights.to_numpy(), correct.shape[1])
            per_seed = contrast_by_seed(weights, correct, runs["seed"].to_numpy())
            image_var = image_part(per_seed, floor)
        half = _t(level, df) * math.sqrt(seed_var + image_var)
        set_half = _t(level, df) * math.sqrt(seed_var)
        low, high = estimate - half, estimate + half
        set_low, set_high = estimate - set_half, estimate + set_half
        total = math.sqrt(seed_var + image_var)
        rows.append(
            {
                "kind": effect.kind,
                "effect": effect.name,
                "method": method,
                "estimate": estimate,
                "se_seeds": math.sqrt(seed_var),
                "se_images": math.sqrt(image_var),
                "low": low,
                "high": high,
                "verdict": interval_verdict(low, high, margin),
                "set_low": set_low,
                "set_high": set_high,
                "set_verdict": interval_verdict(set_low, set_high, margin),
                "low_95": estimate - _t(0.95, df) * total,
                "high_95": estimate + _t(0.95, df) * total,
                "p": float(2 * stats.t.sf(abs(estimate) / total, df)) if total else 0.0,
                "level": level,
                "df_seeds": df,
                # the image part's half-width: what no number of seeds removes
                "test_set_floor": image_floor(image_var, level),
            }
        )
    return pd.DataFrame(rows)


def _cell_contrasts(
    runs: pd.DataFrame, factors: list[str]
) -> dict[str, tuple[np.ndarray, float, float]] | None:
    """Per factor, its simple effect at the reference as the contrast of two cells' runs paired
    by seed: (weights over runs, the estimate's variance from the pure error pooled over every
    cell, its degrees of freedom). None where a cell is missing or there is one seed."""
    seeds = runs["seed"].nunique()
    coded = runs[factors].to_numpy()
    reference = (coded == -1).all(axis=1)
    if seeds < 2 or reference.sum() != seeds:
        return None
    saturated = smf.ols("accuracy ~ C(cell) + C(seed)", data=runs).fit()
    if saturated.df_resid < 1:
        return None
    contrasts = {}
    for index, factor in enumerate(factors):
        changed = (coded[:, index] == 1) & (np.delete(coded, index, axis=1) == -1).all(axis=1)
        if changed.sum() != seeds:
            return None
        weights = (changed.astype(float) - reference.astype(float)) / seeds
        variance = float(saturated.mse_resid) * 2 / seeds
        contrasts[factor] = (weights, variance, float(saturated.df_resid))
    return contrasts


def _cell_by_image_variance(runs: pd.DataFrame, correct: np.ndarray) -> float:
    """population.cell_by_image_variance of the runs' correctness, on the seeds every cell holds."""
    common = set.intersection(*(set(group) for _, group in runs.groupby("cell")["seed"]))
    seeds = sorted(common)
    cells = sorted(runs["cell"].unique())
    position = {(c, s): i for i, (c, s) in enumerate(zip(runs["cell"], runs["seed"], strict=True))}
    rows = [[position[(c, s)] for s in seeds] for c in cells]
    return cell_by_image_variance(np.asarray(correct)[np.array(rows)]) if seeds else 0.0


def replication_agreement(primary: pd.DataFrame, replication: pd.DataFrame) -> pd.DataFrame:
    """Per effect, replication − primary (two effect_tables of one design on disjoint seeds)
    with an interval at the family's level: both studies see the same test set, so only their
    seed parts are independent and the difference's variance is the sum of those. `consistent`:
    the interval holds 0, i.e. the replication does not contradict the primary study."""
    difference = replication["estimate"] - primary["estimate"]
    v1, v2 = primary["se_seeds"] ** 2, replication["se_seeds"] ** 2
    se = np.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / primary["df_seeds"] + v2**2 / replication["df_seeds"])
    half = stats.t.ppf((1 + primary["level"]) / 2, df) * se
    return pd.DataFrame(
        {
            "kind": primary["kind"],
            "effect": primary["effect"],
            "difference": difference,
            "low": difference - half,
            "high": difference + half,
            "consistent": (difference - half <= 0) & (difference + half >= 0),
            "same_verdict": primary["verdict"] == replication["verdict"],
        }
    )


def planned_replicates(
    pilot: pd.DataFrame, factors: list[str], margin: float, max_seeds: int
) -> int:
    """Replicates (seeds per cell, the pilot's included) for seeds until decided: the residual
    spread pools every cell, so the pilot's standard error of the least precise main or simple
    effect, scaled to one replicate, plans as a paired arm's spread would
    (design.planned_seeds: power to decide |Δ| = margin at the whole family's level, on the
    model's residual degrees of freedom). Interactions are reported, not planned for; the
    effects' sizes never enter (that would bias the final test). The plan is for this test
    set: the test-image part of a population interval does not shrink with replicates, so an
    effect near the margin may stay open for new test sets at any count. The final analysis is
    the ordinary model, not Stein's test; tests/test_factorial.py simulates its error rate."""
    n0 = pilot["seed"].nunique()
    table = effect_table(pilot, factors, margin)
    planned = table[table["kind"] != KINDS[1]]
    spread = float(planned["se_seeds"].max()) * math.sqrt(n0)
    df = int(table["df_seeds"].iloc[0])
    return planned_seeds(spread, n0, margin, max_seeds, family_size=len(table), df=df)


def anova_table(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """The model's type-II ANOVA with HC3-robust F tests (statsmodels' anova_lm)."""
    return anova_lm(fit_factorial(runs, factors), typ=2, robust="hc3")


def pooling_test(runs: pd.DataFrame, factors: list[str]) -> tuple[float, float, int]:
    """F, p and degrees of freedom of the terms pooled into error (interactions of three or
    more factors) against the saturated model's pure error between replicates; NaN without
    replicates. A small p says a pooled term is real and the simple effects are biased."""
    seeds = runs["seed"].nunique()
    if seeds < 2:
        return math.nan, math.nan, 0
    reduced = smf.ols(model_formula(factors, seeds), data=runs).fit()
    saturated = smf.ols(f"accuracy ~ {' * '.join(factors)} + C(seed)", data=runs).fit()
    if saturated.df_resid < 1 or reduced.df_resid == saturated.df_resid:
        return math.nan, math.nan, 0
    test = anova_lm(reduced, saturated)
    return float(test["F"].iloc[1]), float(test["Pr(>F)"].iloc[1]), int(test["df_diff"].iloc[1])


def residuals(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Fitted values and residuals, run by run, for the residual plot."""
    fit = fit_factorial(runs, factors)
    return runs.assign(fitted=fit.fittedvalues, residual=fit.resid)


def _interaction(f: str, g: str, factors: list[str]) -> str:
    """patsy names an interaction by its factors in formula order."""
    a, b = sorted((f, g), key=factors.index)
    return f"{a}:{b}"


@functools.lru_cache(maxsize=1024)  # a table asks for the same few quantiles dozens of times
def _t(confidence: float, df: float) -> float:
    return float(stats.t.ppf((1 + confidence) / 2, df))
