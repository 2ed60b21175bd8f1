"""The factorial's analysis from the stored runs and their per-image predictions: its effects
(harness.stats.factorial_model) for the primary study, each replication and all seeds pooled,
at the full budget and at every training budget k.

One error budget covers every effect at every declared budget: each interval is at
1 − α/(effects × declared budgets).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.analysis import StudyData, at_budget, epoch_tests
from harness.report.markdown import seed_range
from harness.stats import factorial_model as model
from harness.stats.verdicts import family_confidence
from harness.study.factorial_design import Factorial


@dataclass(frozen=True)
class Replication:
    seeds: tuple[int, ...]
    effects: pd.DataFrame  # effect_table on these seeds alone
    agreement: pd.DataFrame  # replication_agreement with the primary study

    def agreement_counts(self, kinds) -> tuple[int, int, int]:
        """Of these kinds of effect: how many verdicts agree with the primary's, how many
        estimates are consistent with it, and how many effects there are."""
        agreement = self.agreement[self.agreement["kind"].isin(kinds)]
        same, consistent = agreement["same_verdict"].sum(), agreement["consistent"].sum()
        return int(same), int(consistent), len(agreement)


@dataclass(frozen=True)
class FactorialAnalysis:
    """The primary study's analysis (its seeds only), each finished replication's beside it,
    the pooled one over all of them, and the answer's (pooled, else primary) at every budget."""

    factorial: Factorial  # with the primary study's seeds
    runs: pd.DataFrame  # one row per run: cell, coded factors, seed, accuracy, fitted, residual
    effects: pd.DataFrame  # harness.stats.factorial_model.effect_table
    anova: pd.DataFrame
    pooling: tuple[float, float, int]  # F, p, df of the terms pooled into error
    replications: list[Replication]
    pooled: pd.DataFrame | None  # effect_table over every seed, where there are replications
    # effect_table of the answer's seeds at every budget k = 1..E (column budget; declared: its
    # verdict is one of the family's); None where the runs kept no epoch's test evaluation
    by_budget: pd.DataFrame | None
    budgets: tuple[int, ...]  # the declared budgets, the full one last

    @property
    def factors(self) -> list[str]:
        return self.factorial.factor_names

    @property
    def answer(self) -> pd.DataFrame:
        """The study's best estimate: every seed pooled where there are replications."""
        return self.pooled if self.pooled is not None else self.effects

    @property
    def answer_seeds(self) -> tuple[int, ...]:
        return self.factorial.seeds + tuple(s for r in self.replications for s in r.seeds)

    @property
    def level(self) -> float:
        return float(self.effects["level"].iloc[0])


def factorial_analysis(data: StudyData) -> FactorialAnalysis | None:
    """The analysis once every cell has finished on every seed (a balanced design: the effects'
    meaning rests on it); None for a study without a factorial or one still training."""
    plan = data.plan
    if plan is None or plan.factorial is None:
        return None
    every = data.cell_runs()
    factors = plan.factorial.factor_names
    cells = len(plan.factorial.cells())
    confidence = family_confidence(len(model.factorial_effects(factors)) * len(data.budgets))

    def runs_on(seeds: tuple[int, ...]) -> pd.DataFrame | None:
        runs = every[every["seed"].isin(seeds)].reset_index(drop=True) if len(every) else every
        return runs if len(runs) == cells * len(seeds) else None  # balanced or nothing

    def effects_on(runs: pd.DataFrame, budget: int | None = None) -> pd.DataFrame:
        accuracy, correct = at_budget(data.frame.loc[runs["record"]], budget)
        runs = runs.assign(accuracy=accuracy)
        return model.effect_table(runs, factors, plan.margin, correct, confidence)

    primary_seeds = plan.primary_seeds()
    runs = runs_on(primary_seeds)
    if runs is None:
        return None
    effects = effects_on(runs)
    replications = []
    for seeds in plan.replications:
        if (replicated := runs_on(seeds)) is not None:
            again = effects_on(replicated)
            agreement = model.replication_agreement(effects, again)
            replications.append(Replication(seeds, again, agreement))
    answer_runs = runs
    pooled = None
    if replications:
        answer_runs = runs_on(primary_seeds + tuple(s for r in replications for s in r.seeds))
        pooled = effects_on(answer_runs)
    by_budget = None
    if epoch_tests(data.frame.loc[answer_runs["record"]]):
        by_budget = pd.concat(
            [
                effects_on(answer_runs, k).assign(budget=k, declared=k in data.budgets)
                for k in range(1, plan.reference.config.epochs + 1)
            ],
            ignore_index=True,
        )
    return FactorialAnalysis(
        plan.factorial.with_seeds(primary_seeds),
        model.residuals(runs, factors),
        effects,
        model.anova_table(runs, factors),
        model.pooling_test(runs, factors),
        replications,
        pooled,
        by_budget,
        data.budgets,
    )


def effects_table(analysis: FactorialAnalysis) -> pd.DataFrame:
    """Every effect of every analysis (primary, each replication, pooled) at the full budget,
    then the answer's at every budget, for the CSV: every number on the pages recomputes from
    this file."""
    frames = [
        analysis.effects.assign(analysis="primary", seeds=seed_range(analysis.factorial.seeds))
    ]
    for replication in analysis.replications:
        seeds = seed_range(replication.seeds)
        frames.append(replication.effects.assign(analysis="replication", seeds=seeds))
    if analysis.pooled is not None:
        frames.append(
            analysis.pooled.assign(analysis="pooled", seeds=seed_range(analysis.answer_seeds))
        )
    if analysis.by_budget is not None:
        name = "pooled" if analysis.pooled is not None else "primary"
        seeds = seed_range(analysis.answer_seeds)
        frames.append(analysis.by_budget.assign(analysis=f"{name}, by budget", seeds=seeds))
    return pd.concat(frames, ignore_index=True)


def diverged_cell_runs(data: StudyData) -> int:
    """Stored runs of the factorial's cells on its seeds that diverged."""
    plan = data.plan
    hashes = {config.hash() for config in plan.cells().values()}
    frame = data.frame
    if frame.empty:
        return 0
    chosen = (
        frame["config_hash"].isin(hashes)
        & frame["seed"].isin(plan.factorial.seeds)
        & data.under_conditions()
        & (frame["status"] != "ok")
    )
    return int(chosen.sum())
