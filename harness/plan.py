"""The study as data: which arms (label → config × seeds) were asked for, saved with the results.

Every command that trains writes what it trains into results/plan.json, merged with what is
there; the report, a rerun and a resume read it back instead of re-deriving the study from
today's spec files and flags. So `ablate --all --epochs 3` followed by a plain `report` reports
those 3-epoch runs, and a spec edited since is not silently mixed with older runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import UserError
from harness.config import Config, config_from_dict
from harness.specs import REFERENCE, Spec

PLAN_FILE = "plan.json"
TUNED = "tuned"
DEFAULT_MARGIN = 0.001  # 0.1 percentage points: the smallest accuracy difference that matters


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
    pilot's spread (Stein's two-stage design, harness.design), at most max_seeds."""

    pilot_seeds: int
    max_seeds: int


@dataclass(frozen=True)
class Plan:
    arms: dict[str, Arm]  # the reference first
    engine: str  # harness.training.engine: which runs of an arm count
    margin: float = DEFAULT_MARGIN
    design: Design | None = None
    search: dict[str, Any] = field(default_factory=dict)  # the search's settings, if one ran

    @property
    def reference(self) -> Arm:
        return self.arms[REFERENCE]

    def merged_into(self, older: Plan | None) -> Plan:
        """This plan's arms over an older plan's: an arm of the same config keeps every seed
        either asked for, a changed config replaces the arm; the reference gets every seed any
        arm uses. A different engine or reference would pair runs that do not compare."""
        if older is None:
            return self.with_reference_seeds()
        if older.engine != self.engine:
            raise PlanError(
                f"its study was trained with engine {older.engine}, this command's is "
                f"{self.engine} (device, threads per run, stacking): pass the same --workers/"
                "--threads/--device/--stack, or another --results-dir"
            )
        changes = _differences(older.reference.config, self.reference.config)
        if changes:
            raise PlanError(
                f"its reference differs from this command's ({changes}): pass another "
                "--results-dir for this study"
            )
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
        ).with_reference_seeds()

    def with_reference_seeds(self) -> Plan:
        seeds = sorted({s for arm in self.arms.values() for s in arm.seeds})
        reference = dataclasses.replace(self.reference, seeds=tuple(seeds))
        others = {k: v for k, v in self.arms.items() if k != REFERENCE}
        return dataclasses.replace(self, arms={REFERENCE: reference, **others})

    def tasks(self) -> list[Task]:
        """Every (arm, seed) run, the reference's first."""
        tasks = []
        for arm in self.arms.values():
            tasks += [Task(arm.label, arm.config, seed) for seed in arm.seeds]
        return tasks

    def with_arm(self, arm: Arm) -> Plan:
        return dataclasses.replace(self, arms={**self.arms, arm.label: arm}).with_reference_seeds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "margin": self.margin,
            "design": dataclasses.asdict(self.design) if self.design else None,
            "search": self.search,
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
        arms = {
            a["label"]: Arm(
                a["label"], a["description"], config_from_dict(a["config"]), tuple(a["seeds"])
            )
            for a in data["arms"]
        }
        design = Design(**data["design"]) if data.get("design") else None
        return cls(arms, data["engine"], data["margin"], design, data.get("search") or {})


def arm_from_spec(spec: Spec, seeds: list[int], epochs: int | None = None) -> Arm:
    config = spec.config if epochs is None else dataclasses.replace(spec.config, epochs=epochs)
    return Arm(spec.name, spec.description, config, tuple(seeds))


def load_plan(results_dir: Path) -> Plan | None:
    path = Path(results_dir) / PLAN_FILE
    if not path.is_file():
        return None
    return Plan.from_dict(json.loads(path.read_text()))


def save_plan(plan: Plan, results_dir: Path) -> Path:
    """Atomically, as the store writes records: a reader never sees half a plan."""
    path = Path(results_dir) / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".partial", delete=False) as f:
        json.dump(plan.to_dict(), f, indent=1)
    os.replace(f.name, path)
    return path


def update_plan(plan: Plan, results_dir: Path) -> Plan:
    """Merges the plan into the saved one and saves the result."""
    try:
        merged = plan.merged_into(load_plan(results_dir))
    except PlanError as error:
        raise PlanError(f"{Path(results_dir) / PLAN_FILE}: {error}") from None
    save_plan(merged, results_dir)
    return merged


SEARCH_SUMMARY_FILE = "tuned.json"  # the search's summary: the tuned config and its study


def load_search_summary(results_dir: Path) -> dict[str, Any] | None:
    path = Path(results_dir) / SEARCH_SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def tuned_arm(summary: dict[str, Any], seeds: list[int]) -> Arm:
    description = f"best of Optuna study {summary['study']!r} on validation accuracy"
    return Arm(TUNED, description, config_from_dict(summary["config"]), tuple(seeds))
