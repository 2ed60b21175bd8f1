"""The study as data: which arms (label → config × seeds) were asked for, saved with the results.

Every command that trains writes what it trains into results/plan.json, merged with what is
there; the report, a rerun and a resume read it back instead of re-deriving the study from
today's spec files and flags. So `ablate --all --epochs 3` followed by a plain `report` reports
those 3-epoch runs, and a spec edited since is not silently mixed with older runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import UserError
from harness.core.config import Config, ConfigError, config_from_dict
from harness.core.data import MNIST_SOURCE
from harness.core.store import RunConditions, write_json_atomically
from harness.stats.verdicts import MARGIN
from harness.study.factorial_design import Factorial
from harness.study.specs import REFERENCE, Spec

PLAN_FILE = "plan.json"
TUNED = "tuned"  # the search's choice; with --repeats, tuned-repeat2, tuned-repeat3, ...
RETUNED_SUFFIX = "-retuned"  # an arm at its own --retune values
RETUNED_REFERENCE = REFERENCE + RETUNED_SUFFIX
# Trials train on seeds from TRIAL_SEEDS_FROM, evaluation runs on smaller ones (the plan
# refuses others): were a trial's seed one the winner is re-trained on, that re-trained run
# would be the very trial selected as the best of the search, its luck included, and the tuned
# arm's paired difference would be biased upwards.
TRIAL_SEEDS_FROM = 1_000_000


def is_tuned(label: str) -> bool:
    """An arm chosen by a search (its own family: selected, not planned)."""
    return label == TUNED or label.startswith(f"{TUNED}-repeat")


def tuned_label(repeat: int) -> str:
    """repeat 0 is the search; repeats 1, 2, ... are the independent searches of --repeats."""
    return TUNED if repeat == 0 else f"{TUNED}-repeat{repeat + 1}"


def retuned_label(label: str) -> str:
    return label + RETUNED_SUFFIX


def is_retuned(label: str) -> bool:
    return label.endswith(RETUNED_SUFFIX)


def is_baseline(label: str) -> bool:
    """The reference, or the retuned reference: what other arms are compared with."""
    return label in (REFERENCE, RETUNED_REFERENCE)


def baseline_of(label: str) -> str:
    """The arm a comparison pairs with: the retuned reference for a retuned arm."""
    return RETUNED_REFERENCE if is_retuned(label) else REFERENCE


def check_evaluation_seeds(seeds: Iterable[int]) -> None:
    trial_seeds = sorted(seed for seed in set(seeds) if seed >= TRIAL_SEEDS_FROM)
    if trial_seeds:
        raise PlanError(
            f"seed {trial_seeds[0]:,} is reserved for the search's trials (seeds from "
            f"{TRIAL_SEEDS_FROM:,}): evaluate on smaller seeds",
            "seeds",
        )


class PlanError(UserError):
    pass


def _differences(old: Config, new: Config) -> str:
    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{key} {a[key]} → {b[key]}" for key in a if a[key] != b[key])


@dataclass(frozen=True)
class Task:
    """One run to train: an arm's config with one seed."""

    label: str
    config: Config
    seed: int

    def describe(self) -> str:
        return f"{self.label} seed {self.seed}"


@dataclass(frozen=True)
class Arm:
    label: str
    description: str
    config: Config
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Design:
    """Seeds until decided: a pilot of pilot_seeds per arm, then each arm's seed count from the
    pilot's spread (Stein's two-stage design, harness.stats.design), at most max_seeds; pooled:
    one spread from all the planned ablations' pilots, and so one seed count for them all."""

    pilot_seeds: int
    max_seeds: int
    pooled: bool = False  # plans saved before pooling planned from each arm's own pilot


@dataclass(frozen=True)
class Plan:
    arms: dict[str, Arm]  # the reference first
    # which runs of an arm count: its engine, platform and data (a plan saved before the
    # platform was recorded has platform "": the one that holds most of its runs)
    conditions: RunConditions
    margin: float = MARGIN
    design: Design | None = None
    search: dict[str, Any] = field(default_factory=dict)  # the search's settings, if one ran
    factorial: Factorial | None = None  # its cells train on the reference's config, changed
    # the factorial's seeds that each later study on new seeds (--replicate) added; the rest
    # are the primary study's
    replications: tuple[tuple[int, ...], ...] = ()
    # the training budgets (epochs) whose verdicts join the study's error budget beside the
    # full one; None: harness.stats.budgets.declared_budgets of the arms' epochs
    budgets: tuple[int, ...] | None = None
    # validation accuracies whose time to reach the reports give (None: derived from the
    # reference's runs, harness.report.budget_analysis.default_targets)
    targets: tuple[float, ...] | None = None

    @property
    def reference(self) -> Arm:
        return self.arms[REFERENCE]

    @property
    def stein_design(self) -> Design | None:
        """The two-stage design that planned the arms' seeds, if one did: with a factorial,
        seeds until decided plan its replicates, and the arms only follow the cells' seeds."""
        return self.design if self.factorial is None else None

    def primary_seeds(self) -> tuple[int, ...]:
        """The factorial's seeds that no replication added: the primary analysis's."""
        replicated = {seed for seeds in self.replications for seed in seeds}
        factorial_seeds = self.factorial.seeds if self.factorial else ()
        return tuple(seed for seed in factorial_seeds if seed not in replicated)

    def merged_into(self, older: Plan | None) -> Plan:
        """This plan's arms over an older plan's: an arm of the same config keeps every seed
        either asked for, a changed config replaces the arm; the reference gets every seed any
        arm uses. A different engine, data set or reference would pair runs that do not
        compare. On another platform (the study copied to another machine) the study is this
        machine's from now on: its runs train here, the copied ones stay apart."""
        if older is None:
            return self.with_reference_seeds()
        if older.conditions.engine != self.conditions.engine:
            raise PlanError(
                f"its study was trained with engine {older.conditions.engine}, this command's "
                f"is {self.conditions.engine} (device, threads per run, stacking): train with "
                "the same workers, threads, device and stacking, or give another results folder"
            )
        if older.conditions.data != self.conditions.data:
            raise PlanError(
                f"its study was trained on data {older.conditions.data}, this command's data "
                f"folder holds {self.conditions.data}: give its data folder, or another results "
                "folder"
            )
        changes = _differences(older.reference.config, self.reference.config)
        if changes:
            raise PlanError(
                f"its reference differs from this command's ({changes}): give this study "
                "another results folder"
            )
        factorial = self.factorial or older.factorial
        if self.factorial and older.factorial:
            if self.factorial.design() != older.factorial.design():
                raise PlanError(
                    f"its factorial ({older.factorial.name}) differs from this command's "
                    f"({self.factorial.name}, or its spec changed since): give this study "
                    "another results folder"
                )
            factorial = self.factorial.with_seeds(self.factorial.seeds + older.factorial.seeds)
        arms = dict(older.arms)
        for label, arm in self.arms.items():
            if label in arms and arms[label].config == arm.config:
                seeds = sorted(set(arms[label].seeds) | set(arm.seeds))
                arm = dataclasses.replace(arm, seeds=tuple(seeds))
            arms[label] = arm
        return dataclasses.replace(
            self,
            arms=arms,
            design=self.design or older.design,
            search=self.search or older.search,
            budgets=self.budgets or older.budgets,
            targets=self.targets or older.targets,
            factorial=factorial,
            replications=older.replications
            + tuple(r for r in self.replications if r not in older.replications),
        ).with_reference_seeds()

    def with_reference_seeds(self) -> Plan:
        seeds = sorted({s for arm in self.arms.values() for s in arm.seeds})
        reference = dataclasses.replace(self.reference, seeds=tuple(seeds))
        others = {k: v for k, v in self.arms.items() if k != REFERENCE}
        return dataclasses.replace(self, arms={REFERENCE: reference, **others})

    def tasks(self) -> list[Task]:
        """Every (arm, seed) run, the reference's first, then the factorial's cells by seed
        (a cell that is also an arm trains once: the grid skips what is stored or queued)."""
        tasks = []
        for arm in self.arms.values():
            tasks += [Task(arm.label, arm.config, seed) for seed in arm.seeds]
        for seed in self.factorial.seeds if self.factorial else ():
            tasks += [Task(label, config, seed) for label, config in self.cells().items()]
        return tasks

    def cells(self) -> dict[str, Config]:
        """The factorial's cells, label → config, built on the reference's config."""
        if self.factorial is None:
            return {}
        cells = self.factorial.cell_configs(self.reference.config)
        return {label: config for label, (_, config) in cells.items()}

    def with_arm_seeds(self, seeds: list[int]) -> Plan:
        """Every arm on these seeds (a factorial's one-at-a-time arms follow its cells')."""
        arms = {k: dataclasses.replace(a, seeds=tuple(seeds)) for k, a in self.arms.items()}
        return dataclasses.replace(self, arms=arms).with_reference_seeds()

    def with_arm(self, arm: Arm) -> Plan:
        return dataclasses.replace(self, arms={**self.arms, arm.label: arm}).with_reference_seeds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.conditions.engine,
            "platform": self.conditions.platform,
            "data": self.conditions.data,
            "margin": self.margin,
            "design": dataclasses.asdict(self.design) if self.design else None,
            "search": self.search,
            "factorial": self.factorial.to_dict() if self.factorial else None,
            "replications": [list(seeds) for seeds in self.replications],
            "budgets": list(self.budgets) if self.budgets else None,
            "targets": list(self.targets) if self.targets else None,
            "arms": [
                {
                    "label": arm.label,
                    "description": arm.description,
                    "config": arm.config.to_dict(),
                    "config_hash": arm.config.hash(),
                    "seeds": list(arm.seeds),
                }
                for arm in self.arms.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """A saved plan, every field's type checked (TypeError, ValueError or ConfigError)."""
        arms = {}
        for a in _typed(data["arms"], list, "arms"):
            seeds = _typed(a["seeds"], list, "seeds")
            if not all(type(s) is int and s >= 0 for s in seeds):
                raise ValueError(f"seeds: expected integers ≥ 0, got {seeds}")
            label = _typed(a["label"], str, "label")
            description = _typed(a["description"], str, "description")
            arms[label] = Arm(label, description, config_from_dict(a["config"]), tuple(seeds))
        if REFERENCE not in arms:
            raise ValueError("no reference arm")
        design = data.get("design")
        if design is not None:
            design = Design(
                _typed(design["pilot_seeds"], int, "pilot_seeds"),
                _typed(design["max_seeds"], int, "max_seeds"),
                _typed(design.get("pooled", False), bool, "pooled"),
            )
        margin = _typed(data["margin"], float, "margin")
        if not 0 < margin < 1:
            raise ValueError(f"margin: expected a fraction between 0 and 1, got {margin}")
        search = _typed(data.get("search") or {}, dict, "search")
        factorial = data.get("factorial")
        if factorial is not None:
            factorial = Factorial.from_dict(
                _typed(factorial, dict, "factorial"), arms[REFERENCE].config
            )
        conditions = RunConditions(
            _typed(data["engine"], str, "engine"),
            _typed(data.get("platform", ""), str, "platform"),
            _typed(data.get("data", MNIST_SOURCE), str, "data"),
        )
        replications = []
        for seeds in _typed(data.get("replications", []), list, "replications"):
            if not all(type(s) is int and s >= 0 for s in _typed(seeds, list, "replication")):
                raise ValueError(f"replications: expected lists of seeds ≥ 0, got {seeds!r:.60}")
            replications.append(tuple(seeds))
        budgets = data.get("budgets")
        if budgets is not None:
            budgets = tuple(_typed(budgets, list, "budgets"))
            if not all(type(b) is int and b >= 1 for b in budgets):
                raise ValueError(f"budgets: expected epochs ≥ 1, got {budgets!r:.60}")
        targets = data.get("targets")
        if targets is not None:
            targets = tuple(_typed(targets, list, "targets"))
            if not all(type(t) is float and 0 < t < 1 for t in targets):
                raise ValueError(f"targets: expected accuracies in (0, 1), got {targets!r:.60}")
        return cls(
            arms,
            conditions,
            margin,
            design,
            search,
            factorial,
            tuple(replications),
            budgets,
            targets,
        )


T = TypeVar("T")


def _typed(value: Any, expected: type, what: str) -> Any:
    if type(value) is not expected:
        raise TypeError(f"{what}: expected {expected.__name__}, got {value!r:.60}")
    return value


def read_json_file(path: Path, what: str, parse: Callable[[Any], T], remedy: str) -> T:
    """A JSON file the harness wrote, parsed and checked; anything else (truncated, empty, not
    UTF-8, the wrong shape) is one line that names the file and what to do."""
    try:
        return parse(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, ConfigError) as error:
        why = f"missing {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise PlanError(f"{path}: not a readable {what} ({why}); {remedy}") from None
    except OSError as error:
        raise PlanError(f"{path}: cannot read it ({error.strerror})") from None


def as_replication(plan: Plan, saved: Plan | None, resume: bool) -> Plan:
    """The saved factorial study again on new seeds, as many as its primary used and after
    every seed it used (so no run is shared), the command's arms (not the tuned one) following
    the cells; resume: the last replication is unfinished, so its seeds again."""
    if saved is None or saved.factorial is None or plan.factorial is None:
        raise PlanError("no factorial study in the results folder to replicate yet", "replicate")
    if resume and saved.replications:
        seeds = saved.replications[-1]
    else:
        used = {s for arm in saved.arms.values() for s in arm.seeds} | set(saved.factorial.seeds)
        start = max(used) + 1
        seeds = tuple(range(start, start + len(saved.primary_seeds())))
    arms = {
        label: dataclasses.replace(arm, seeds=seeds)
        for label, arm in plan.arms.items()
        if not is_tuned(label)
    }
    replications = saved.replications + (() if seeds in saved.replications else (seeds,))
    return dataclasses.replace(
        plan,
        arms=arms,
        factorial=saved.factorial.with_seeds(seeds),
        design=None,
        replications=replications,
    )


def arm_from_spec(spec: Spec, seeds: list[int], epochs: int | None = None) -> Arm:
    config = spec.config if epochs is None else dataclasses.replace(spec.config, epochs=epochs)
    return Arm(spec.name, spec.description, config, tuple(seeds))


def load_plan(results_dir: Path) -> Plan | None:
    path = Path(results_dir) / PLAN_FILE
    if not path.is_file():
        return None
    remedy = (
        "it names the study's arms and seeds: restore it (a report keeps a copy in its data/ "
        "folder), or move it away and run the command that made the study again"
    )
    return read_json_file(path, "plan", Plan.from_dict, remedy)


def save_plan(plan: Plan, results_dir: Path) -> Path:
    """Saves the plan in the results folder, or one line where it cannot be written."""
    path = Path(results_dir) / PLAN_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, plan.to_dict())
    except OSError as error:
        raise PlanError(
            f"cannot write {path} ({error.strerror}): give a writable results folder",
            "results_dir",
        ) from None
    return path


def update_plan(plan: Plan, results_dir: Path) -> Plan:
    """Merges the plan into the saved one and saves the result."""
    try:
        merged = plan.merged_into(load_plan(results_dir))
    except PlanError as error:
        raise PlanError(f"{Path(results_dir) / PLAN_FILE}: {error}", "results_dir") from None
    save_plan(merged, results_dir)
    return merged
