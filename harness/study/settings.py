"""What a study is asked to train: every option of a command goes through one of these settings,
built field by field by the command line (or run_all's presets), checked here as a whole, and
passed down. Every default is defined here or next to the thing it configures. An error names
the setting it is about (UserError.setting); the command line names its option, which is the
setting's name with dashes (`seed_list` is `--seed-list`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from harness import UserError
from harness.core.config import Config
from harness.stats.budgets import check_budgets
from harness.stats.design import MAX_SEEDS, PILOT_SEEDS
from harness.stats.verdicts import MARGIN
from harness.study.factorial_design import load_factorial
from harness.study.plan import (
    TRIAL_SEEDS_FROM,
    Design,
    Plan,
    arm_from_spec,
    check_evaluation_seeds,
    tuned_label,
)
from harness.study.specs import REFERENCE, SPECS_DIR, Spec, load_spec, load_specs, spec_names

DEFAULT_TRIALS = 40
DEFAULT_RETRAIN_SEEDS = 10  # a selected config earns a verdict on more seeds than a pilot
DEFAULT_STUDY = "mlp"
# Twice the reference's 15 epochs: a trial may train as long as the reference and longer (the
# reference's best validation epoch is often its last)
DEFAULT_SEARCH_EPOCHS = 30
SEARCH_SEED = TRIAL_SEEDS_FROM  # the first search's trial seed; repeat r adds r * stride
REPEAT_SEED_STRIDE = 1_000
RETUNABLE = {"lr": (1e-4, 1e-2), "weight_decay": (1e-6, 1e-2)}  # --retune's log-uniform ranges
RETUNE_TRIALS = 8


@dataclass(frozen=True)
class StudySettings:
    """Which arms and cells train on which seeds and epochs, and how verdicts are reached."""

    specs_dir: Path = SPECS_DIR  # ablations/: the specs, and factorials/ inside it
    base: Config = field(default_factory=Config)  # the reference recipe every spec changes
    specs: tuple[str, ...] | None = None  # the ablations asked for (None: every spec)
    # seeds 0..N-1 (None: each spec's own count), or explicit ones; until_decided ignores both
    seeds: int | None = None
    seed_list: tuple[int, ...] | None = None
    epochs: int | None = None  # None: each spec's own
    margin: float = MARGIN
    until_decided: bool = False
    pilot_seeds: int = PILOT_SEEDS
    max_seeds: int | None = None  # None: MAX_SEEDS per arm, or the factorial spec's max_seeds
    pooled_pilot: bool = False  # one spread from all the arms' pilots (see Design)
    # a factorial spec (<specs_dir>/factorials/NAME.toml): its cells on the seeds above (None:
    # the spec's), with until_decided its replicates as the pilot, more as the pilot says
    factorial: str | None = None
    replications: int = 0  # replications of the factorial on new seeds the study should hold
    replicate: bool = False  # one replication more than the study has finished
    retune: tuple[str, ...] = ()  # --retune: each arm also at its own values of these
    retune_trials: int = RETUNE_TRIALS
    # the training budgets (epochs) whose verdicts join the study's error budget, beside the
    # full one (None: the plan's default, harness.stats.budgets.declared_budgets)
    budgets: tuple[int, ...] | None = None
    # validation accuracies (fractions) whose time to reach the reports give (None: derived
    # from the reference's runs)
    targets: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.until_decided and (self.seeds or self.seed_list):
            raise UserError(
                "the pilot's spread chooses the seeds: give no seeds or seed list",
                "until_decided",
            )
        if self.replicate and (self.seed_list or self.until_decided):
            raise UserError(
                "a replication takes as many new seeds as the primary study used, after every "
                "seed it used: give no seed list, nor seeds until decided",
                "replicate",
            )
        if self.replicate and not self.factorial:
            raise UserError("repeats a factorial study: name the factorial too", "replicate")
        if self.factorial and self.specs is not None:
            raise UserError(
                "runs the specs that are its cells: name no ablation and not all", "factorial"
            )
        if self.retune and (self.factorial or self.until_decided):
            raise UserError(
                "retunes one-at-a-time arms on fixed seeds: not with a factorial or seeds "
                "until decided",
                "retune",
            )
        unknown = [name for name in self.retune if name not in RETUNABLE]
        if unknown or len(set(self.retune)) < len(self.retune):
            raise UserError(
                f"expected one or more of {', '.join(RETUNABLE)}, comma-separated, each once",
                "retune",
            )
        one_at_a_time = self.until_decided and not self.factorial  # a factorial's pilot: its seeds
        if one_at_a_time and self.pilot_seeds < 2:
            raise UserError("the pilot needs at least 2 seeds to measure spread", "pilot_seeds")
        if one_at_a_time and (self.max_seeds or MAX_SEEDS) < self.pilot_seeds:
            raise UserError("must be at least the pilot's seeds", "max_seeds")
        if self.budgets is not None:
            check_budgets(self.budgets)
        if self.targets is not None and not all(0 < t < 1 for t in self.targets):
            raise UserError("expected validation accuracies in pp, between 0 and 100", "targets")
        check_evaluation_seeds(self.seed_list or range(max(self.seeds or 0, self.max_seeds or 0)))

    def load_specs(self) -> list[Spec]:
        """The asked-for specs (every spec for a factorial or None), and the factorial's spec,
        all parsed before anything trains; a broken spec that was not asked for is no reason
        to stop."""
        names = spec_names(self.specs_dir) if self.specs is None else list(self.specs)
        specs = load_specs(names, self.specs_dir, self.base)
        if self.factorial:
            load_factorial(self.factorial, self.specs_dir, self.reference().config)
        return specs

    def reference(self) -> Spec:
        return load_spec(REFERENCE, self.specs_dir, self.base)

    def design(self) -> Design | None:
        """Seeds until decided, if asked for: the pilot's and the cap's seed counts."""
        if not self.until_decided:
            return None
        return Design(self.pilot_seeds, self.max_seeds or MAX_SEEDS, self.pooled_pilot)

    def seeds_for(self, spec: Spec) -> list[int]:
        if self.until_decided:
            return list(range(self.pilot_seeds))
        if self.seed_list:
            return list(self.seed_list)
        return list(range(self.seeds or spec.seeds))

    def plan(self, specs: list[Spec], conditions) -> Plan:
        """The arms asked for, the reference on every seed any of them uses; with a factorial,
        its cells, and of the specs those that are one of its cells, on the cells' seeds (so
        the one-at-a-time comparisons are read off the factorial's runs)."""
        if self.factorial:
            return self._factorial_plan(specs, conditions)
        arms = {REFERENCE: arm_from_spec(self.reference(), [], self.epochs)}
        for spec in specs:
            arms[spec.name] = arm_from_spec(spec, self.seeds_for(spec), self.epochs)
        plan = Plan(
            arms, conditions, self.margin, self.design(), budgets=self.budgets,
            targets=self.targets,
        )  # fmt: skip
        return plan.with_reference_seeds()

    def _factorial_plan(self, specs: list[Spec], conditions) -> Plan:
        factorial = load_factorial(self.factorial, self.specs_dir, self.reference().config)
        pilot = len(factorial.seeds)
        design = None
        if self.until_decided:
            if pilot < 2:
                raise UserError("the factorial's pilot needs at least 2 seeds", "until_decided")
            max_seeds = self.max_seeds or factorial.max_seeds
            if max_seeds < pilot:
                raise UserError(f"must be at least the factorial's {pilot} seeds", "max_seeds")
            design = Design(pilot, max_seeds)
            seeds = list(range(pilot))
        else:
            seeds = list(self.seed_list or range(self.seeds or pilot))
        if factorial.residual_df(len(seeds)) < 1:
            raise UserError(
                f"{len(seeds)} seed(s) per cell leave the factorial's model no error degrees of "
                "freedom: give more seeds",
                "seeds",
            )
        factorial = factorial.with_seeds(seeds)
        reference = arm_from_spec(self.reference(), seeds, self.epochs)
        cells = {config for _, config in factorial.cell_configs(reference.config).values()}
        arms = {REFERENCE: reference}
        for spec in specs:
            arm = arm_from_spec(spec, seeds, self.epochs)
            if arm.config in cells and spec.name != REFERENCE:
                arms[spec.name] = arm
        return Plan(
            arms, conditions, self.margin, design, factorial=factorial, budgets=self.budgets,
            targets=self.targets,
        )  # fmt: skip


@dataclass(frozen=True)
class SearchSettings:
    """The hyperparameter search: its study, storage, trials, the epochs a trial may train, the
    trials' seed, the independent repeats, and the seeds its choice is re-trained on."""

    study: str = DEFAULT_STUDY
    storage: str | None = None  # None: SQLite in the results folder
    trials: int = DEFAULT_TRIALS
    search_epochs: int = DEFAULT_SEARCH_EPOCHS  # a trial's epochs are at most this
    seed: int = SEARCH_SEED  # the trials' training seed, and the sampler's in a serial search
    timeout: float | None = None
    repeats: int = 1  # independent searches, each its own study, trial seed and sampler seed
    retrain_seeds: int = DEFAULT_RETRAIN_SEEDS  # each choice is re-trained on seeds 0..N-1

    def __post_init__(self) -> None:
        if self.seed < TRIAL_SEEDS_FROM:
            raise UserError(
                f"the search's trial seeds start at {TRIAL_SEEDS_FROM:,} (smaller ones are "
                "evaluation seeds)",
                "seed",
            )
        if self.storage is not None:
            check_storage_url(self.storage)
        check_evaluation_seeds(range(self.retrain_seeds))

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
        # relative to the working directory, as the results folder is
        if self.storage:
            return self.storage
        database = str(Path(results_dir) / "search.db")  # quoted: a '?' or '#' stays in the path
        return URL.create("sqlite", database=database).render_as_string(hide_password=False)

    def describe(self) -> dict[str, Any]:
        """The settings as the plan keeps them for the search page: the storage without its
        password, and how the sampler was seeded."""
        return dataclasses.asdict(self) | {
            "storage": redacted(self.storage) if self.storage else "SQLite in the results folder",
            "sampler": "unseeded (a shared storage)" if self.storage else f"seed {self.seed}",
        }

    def sampler_seed(self, worker: int = 0) -> int | None:
        """A shared storage gets unseeded samplers (see open_study); each local worker its own
        seed, else their first, random trials would be the same."""
        return None if self.storage else self.seed + worker


def check_storage_url(url: str) -> None:
    """A storage URL that SQLAlchemy reads as meant, else one line that never shows it (it may
    hold a password): an '@' in a password must be written %40, a port must be a number."""
    netloc = url.partition("://")[2].split("/", 1)[0]
    if "://" not in url or netloc.count("@") > 1:
        raise UserError(
            "not a database URL of the form DIALECT://USER:PASSWORD@HOST:PORT/DATABASE (an '@' "
            "inside the user or password is written %40)",
            "storage",
        )
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018  (parsing the port is the check)
    except (ArgumentError, ValueError):
        raise UserError(
            "not a database URL of the form DIALECT://USER:PASSWORD@HOST:PORT/DATABASE (the "
            "port, where given, a number)",
            "storage",
        ) from None
    if not re.fullmatch(r"[a-z0-9+]+", parsed.drivername):
        raise UserError(f"unknown database dialect {parsed.drivername!r}", "storage")


SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword")


def redacted(storage: str) -> str:
    """The URL without its password, whether as user:password@ or as a query parameter."""
    try:
        url = make_url(storage)
    except (ArgumentError, ValueError):
        return "(an unparsable URL)"
    secrets = {key: "hidden" for key in url.query if key.lower() in SECRET_QUERY_KEYS}
    return url.update_query_dict(secrets).render_as_string(hide_password=True)
