"""What a study is asked to train, built once from the command line (or run_all's presets) and
passed down; every default is defined here or next to the thing it configures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from harness import UserError
from harness.stats.design import MARGIN, MAX_SEEDS, PILOT_SEEDS
from harness.study.factorial import load_factorial
from harness.study.plan import Design, Plan, arm_from_spec, check_evaluation_seeds, tuned_label
from harness.study.specs import REFERENCE, Spec, load_spec
from harness.study.tuning import (
    DEFAULT_EPOCH_CAP,
    DEFAULT_STUDY,
    REPEAT_SEED_STRIDE,
    SEARCH_SEED,
    TRIAL_SEEDS_FROM,
)

DEFAULT_TRIALS = 40
DEFAULT_RETRAIN_SEEDS = 10  # a selected config earns a verdict on more seeds than a pilot


@dataclass(frozen=True)
class StudySettings:
    """Which seeds and epochs each arm trains, and how verdicts are reached."""

    # seeds 0..N-1 (None: each spec's own count), or explicit ones; until_decided ignores both
    seeds: int | None = None
    seed_list: tuple[int, ...] | None = None
    epochs: int | None = None  # None: each spec's own
    margin: float = MARGIN
    until_decided: bool = False
    pilot_seeds: int = PILOT_SEEDS
    max_seeds: int | None = None  # None: MAX_SEEDS per arm, or the factorial spec's max_seeds
    pooled_pilot: bool = False  # one spread from all the arms' pilots (see Design)
    # a factorial spec (ablations/factorials/NAME.toml): its cells on the seeds above (None:
    # the spec's), with until_decided its replicates as the pilot, more as the pilot says
    factorial: str | None = None
    # replications of the factorial on new seeds that the study should hold (run_all: one)
    replications: int = 0

    def design(self) -> Design | None:
        """Seeds until decided, if asked for: the pilot's and the cap's seed counts."""
        if not self.until_decided:
            return None
        if self.pilot_seeds < 2:
            raise UserError("--pilot-seeds: the pilot needs at least 2 seeds to measure spread")
        max_seeds = self.max_seeds or MAX_SEEDS
        if max_seeds < self.pilot_seeds:
            raise UserError("--max-seeds must be at least --pilot-seeds")
        return Design(self.pilot_seeds, max_seeds, self.pooled_pilot)

    def check_seeds(self) -> None:
        """No evaluation seed may be a search's trial seed (plan.check_evaluation_seeds)."""
        check_evaluation_seeds(self.seed_list or range(max(self.seeds or 0, self.max_seeds or 0)))

    def seeds_for(self, spec: Spec) -> list[int]:
        if self.until_decided:
            return list(range(self.pilot_seeds))
        if self.seed_list:
            return list(self.seed_list)
        return list(range(self.seeds or spec.seeds))

    def plan(self, specs: list[Spec], engine: str) -> Plan:
        """The arms asked for, the reference on every seed any of them uses; with a factorial,
        its cells, and of the specs those that are one of its cells, on the cells' seeds (so
        the one-at-a-time comparisons are read off the factorial's runs)."""
        self.check_seeds()
        if self.factorial:
            return self.factorial_plan(specs, engine)
        design = self.design()
        arms = {REFERENCE: arm_from_spec(load_spec(REFERENCE), [], self.epochs)}
        for spec in specs:
            arms[spec.name] = arm_from_spec(spec, self.seeds_for(spec), self.epochs)
        return Plan(arms, engine, self.margin, design).with_reference_seeds()

    def factorial_plan(self, specs: list[Spec], engine: str) -> Plan:
        factorial = load_factorial(self.factorial)
        pilot = len(factorial.seeds)
        design = None
        if self.until_decided:
            if pilot < 2:
                raise UserError("--until-decided: the factorial's pilot needs at least 2 seeds")
            max_seeds = self.max_seeds or factorial.max_seeds
            if max_seeds < pilot:
                raise UserError(f"--max-seeds must be at least the factorial's {pilot} seeds")
            design = Design(pilot, max_seeds)
            seeds = list(range(pilot))
        else:
            seeds = list(self.seed_list or range(self.seeds or pilot))
        if factorial.residual_df(len(seeds)) < 1:
            raise UserError(
                f"{len(seeds)} seed(s) per cell leave the factorial's model no error degrees of "
                "freedom: pass more --seeds"
            )
        factorial = factorial.with_seeds(seeds)
        reference = arm_from_spec(load_spec(REFERENCE), seeds, self.epochs)
        cells = {config for _, config in factorial.cell_configs(reference.config).values()}
        arms = {REFERENCE: reference}
        for spec in specs:
            arm = arm_from_spec(spec, seeds, self.epochs)
            if arm.config in cells and spec.name != REFERENCE:
                arms[spec.name] = arm
        return Plan(arms, engine, self.margin, design, factorial=factorial)


@dataclass(frozen=True)
class SearchSettings:
    study: str = DEFAULT_STUDY
    storage: str | None = None  # None: SQLite in the results folder
    trials: int = DEFAULT_TRIALS
    epoch_cap: int = DEFAULT_EPOCH_CAP
    seed: int = SEARCH_SEED  # the trials' training seed, and the sampler's in a serial search
    timeout: float | None = None
    repeats: int = 1  # independent searches, each its own study, trial seed and sampler seed

    def __post_init__(self) -> None:
        if self.seed < TRIAL_SEEDS_FROM:
            raise UserError(
                f"--seed {self.seed}: the search's trial seeds start at {TRIAL_SEEDS_FROM:,} "
                "(smaller ones are evaluation seeds)"
            )

    def repeat(self, number: int) -> SearchSettings:
        """The settings of search `number` (0: the first) of the repeats: its own study, and
        trial and sampler seeds that no other search and no evaluation run uses."""
        study = self.study if number == 0 else f"{self.study}-repeat{number + 1}"
        seed = self.seed + number * REPEAT_SEED_STRIDE
        return dataclasses.replace(self, study=study, seed=seed, repeats=1)

    def labels(self) -> list[str]:
        """The tuned arms' labels, one per repeat."""
        return [tuned_label(number) for number in range(self.repeats)]

    def storage_url(self, results_dir: Path) -> str:
        # relative to the working directory, as --results-dir is
        if self.storage:
            return self.storage
        database = str(Path(results_dir) / "search.db")  # quoted: a '?' or '#' stays in the path
        return URL.create("sqlite", database=database).render_as_string(hide_password=False)

    def describe(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The settings as the plan keeps them: the storage without its password."""
        return dataclasses.asdict(self) | {
            "storage": summary["storage"],
            "sampler": "unseeded (a shared storage)" if self.storage else f"seed {self.seed}",
        }

    def sampler_seed(self, worker: int = 0) -> int | None:
        """A shared storage gets unseeded samplers (see open_study); each local worker its own
        seed, else their first, random trials would be the same."""
        return None if self.storage else self.seed + worker
