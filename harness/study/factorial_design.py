"""Factorial studies: every combination of two-level factors, each cell trained on the same seeds.

A factorial uses every run for every estimate (Box, Hunter & Hunter, *Statistics for
Experimenters*, ch. 5): with N runs a main effect is the difference of two halves of them, so
its standard error is 2σ/√N, and the design also measures how the factors interact. A spec is a
TOML file in ablations/factorials/:

    description = "BatchNorm, dropout, weight decay, scheduler, width: every combination"
    seeds = 2             # replicates: every cell on seeds 0..seeds-1
    # resolution = 5      # optional: a fractional design of this resolution instead
    [factors.batchnorm]   # two levels, each as overrides of the reference; the reference's first
    on = {}
    off = { batchnorm = false }

Levels are two per factor: the model codes each factor as −1 (reference) / +1, so an effect is
"what changing it from the reference level does".
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.config import Config, ConfigError, read_toml, with_overrides
from harness.core.store import RunConditions
from harness.study.specs import SPECS_DIR, SpecError, unknown_name_message

FACTORIALS = "factorials"  # the factorial specs' folder, inside the specs folder
DEFAULT_FACTORIAL = "components"
RESERVED = {"seed", "accuracy", "cell", "record", "fitted", "residual", "C", "I", "Q"}
FACTORIAL_KEYS = {
    "description": str,
    "seeds": int,
    "max_seeds": int,
    "resolution": int,
    "factors": dict,
}
DEFAULT_MAX_SEEDS = 6  # until decided: at most this many replicates of every cell
CELL_PREFIX = "cell:"  # a cell's label: "cell:" and its non-reference levels


@dataclass(frozen=True)
class Factor:
    name: str
    levels: tuple[str, str]  # the reference level first
    overrides: tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class Factorial:
    name: str
    description: str
    factors: tuple[Factor, ...]
    seeds: tuple[int, ...]
    resolution: int | None = None  # None: the full factorial
    max_seeds: int = DEFAULT_MAX_SEEDS

    @property
    def factor_names(self) -> list[str]:
        return [factor.name for factor in self.factors]

    def cells(self) -> list[tuple[int, ...]]:
        """Each cell as its factors' level indices (0 = reference), sorted: all 2^k
        combinations, or pyDOE's fraction of the requested resolution."""
        import pydoe  # imported here: its import costs most of a second, and only designs need it

        k = len(self.factors)
        if self.resolution is None:
            coded = pydoe.ff2n(k)
        else:  # the fraction that holds the reference recipe: signs flipped to put it in
            coded = pydoe.fracfact_by_res(k, self.resolution)
            base_factors = int(np.log2(len(coded)))  # pyDOE puts the base factors first
            base = next(row for row in coded if all(x < 0 for x in row[:base_factors]))
            coded = coded * -base
        return sorted({tuple(int(x > 0) for x in row) for row in coded})

    def cell_config(self, base: Config, levels: tuple[int, ...]) -> Config:
        overrides: dict[str, Any] = {}
        for factor, level in zip(self.factors, levels, strict=True):
            overrides |= factor.overrides[level]
        return with_overrides(base, overrides, source=f"factorial {self.name!r}")

    def cell_label(self, levels: tuple[int, ...]) -> str:
        pairs = zip(self.factors, levels, strict=True)
        changed = [f"{factor.name}={factor.levels[level]}" for factor, level in pairs if level]
        return CELL_PREFIX + (",".join(changed) or "reference")

    def cell_configs(self, base: Config) -> dict[str, tuple[tuple[int, ...], Config]]:
        """Label → (levels, config) for every cell."""
        return {self.cell_label(c): (c, self.cell_config(base, c)) for c in self.cells()}

    def residual_df(self, seeds: int) -> int:
        """Degrees of freedom left to the error of harness.stats.factorial's model (main
        effects, two-factor interactions, the seed as a block) on `seeds` seeds per cell."""
        k = len(self.factors)
        return len(self.cells()) * seeds - (1 + k + k * (k - 1) // 2 + seeds - 1)

    def design(self) -> Factorial:
        """What the spec asks for, without the seeds (two plans of one design compare equal)."""
        return dataclasses.replace(self, seeds=())

    def with_seeds(self, seeds: Iterable[int]) -> Factorial:
        return dataclasses.replace(self, seeds=tuple(sorted(set(seeds))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "seeds": list(self.seeds),
            "resolution": self.resolution,
            "max_seeds": self.max_seeds,
            "factors": {
                f.name: {level: dict(o) for level, o in zip(f.levels, f.overrides, strict=True)}
                for f in self.factors
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config) -> Factorial:
        """A saved factorial, its cells checked on base (the plan's reference)."""
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not all(type(s) is int and s >= 0 for s in seeds):
            raise ValueError(f"factorial seeds: expected integers ≥ 0, got {seeds!r:.60}")
        table = {"description": data["description"], "factors": data["factors"]}
        if data.get("resolution") is not None:
            table["resolution"] = data["resolution"]
        table["max_seeds"] = data.get("max_seeds", DEFAULT_MAX_SEEDS)
        try:
            parsed = parse_factorial(data["name"], table, "factorial", base)
        except SpecError as error:  # a damaged plan.json: read_json_file names the file
            raise ValueError(str(error)) from None
        return parsed.with_seeds(seeds)


def factorial_names(specs_dir: Path = SPECS_DIR) -> list[str]:
    return sorted(path.stem for path in (Path(specs_dir) / FACTORIALS).glob("*.toml"))


def load_factorial(name: str, specs_dir: Path = SPECS_DIR, base: Config | None = None) -> Factorial:
    """The factorial spec <specs_dir>/factorials/NAME.toml, its cells checked on base (the
    reference)."""
    path = Path(specs_dir) / FACTORIALS / f"{name}.toml"
    if not path.is_file():
        message = unknown_name_message(name, factorial_names(specs_dir))
        raise SpecError(message.replace("ablation", "factorial", 1))
    try:
        table = read_toml(path)
    except ConfigError as error:
        raise SpecError(str(error)) from None
    return parse_factorial(name, table, str(path), base or Config())


def parse_factorial(
    name: str, table: dict[str, Any], source: str, base: Config | None = None
) -> Factorial:
    """The spec checked whole before anything trains: keys, two levels per factor, every
    cell's config valid, and a fraction that pyDOE can build."""
    for key, value in table.items():
        if key not in FACTORIAL_KEYS:
            raise SpecError(f"{source}: unknown key {key!r} (known: {', '.join(FACTORIAL_KEYS)})")
        if type(value) is not FACTORIAL_KEYS[key]:
            expected = FACTORIAL_KEYS[key].__name__
            raise SpecError(f"{source}: {key}: expected {expected}, got {value!r:.60}")
    for key in ("description", "factors"):
        if key not in table:
            raise SpecError(f"{source}: missing key {key!r}")
    seeds = table.get("seeds", 2)
    if seeds < 1:
        raise SpecError(f"{source}: seeds: expected at least 1, got {seeds}")
    factors = []
    for factor_name, levels in table["factors"].items():
        if (
            not factor_name.isidentifier()
            or factor_name in RESERVED
            or keyword.iskeyword(factor_name)
        ):
            raise SpecError(
                f"{source}: factors.{factor_name}: a factor's name must be a Python identifier, "
                f"not one of {', '.join(sorted(RESERVED))} (the model's formula names it)"
            )
        if not isinstance(levels, dict) or len(levels) != 2:
            raise SpecError(
                f"{source}: factors.{factor_name}: expected two levels (reference first), each "
                f"a table of overrides, got {levels!r:.60}"
            )
        if not all(isinstance(o, dict) for o in levels.values()):
            raise SpecError(f"{source}: factors.{factor_name}: each level is a table of overrides")
        names, overrides = zip(*levels.items(), strict=True)
        factors.append(Factor(factor_name, names, overrides))
    if len(factors) < 2:
        raise SpecError(f"{source}: a factorial needs at least two factors")
    resolution = table.get("resolution")
    max_seeds = table.get("max_seeds", max(DEFAULT_MAX_SEEDS, seeds))
    if max_seeds < seeds:
        raise SpecError(f"{source}: max_seeds: expected at least seeds ({seeds}), got {max_seeds}")
    factorial = Factorial(
        name, table["description"], tuple(factors), tuple(range(seeds)), resolution, max_seeds
    )
    if resolution is not None and not 5 <= resolution <= len(factors):
        raise SpecError(
            f"{source}: resolution: expected 5 to {len(factors)} (the model estimates every "
            f"two-factor interaction, which a lower resolution aliases), got {resolution}"
        )
    try:
        configs = factorial.cell_configs(base or Config())
    except ConfigError as error:
        raise SpecError(str(error)) from None
    except ValueError as error:  # pyDOE: no fraction of that resolution
        raise SpecError(f"{source}: resolution {resolution}: {error}") from None
    if len({config for _, config in configs.values()}) < len(configs):
        raise SpecError(f"{source}: two cells train the same config: a level changes nothing")
    if factorial.residual_df(seeds) < 1:
        raise SpecError(f"{source}: seeds: {seeds} per cell leave the model no error to test with")
    return factorial


def coded_levels(levels: tuple[int, ...]) -> np.ndarray:
    """A cell's effect coding: −1 at the reference level, +1 at the other."""
    return 2 * np.asarray(levels) - 1


def factorial_runs(
    factorial: Factorial, base: Config, conditions: RunConditions, records: pd.DataFrame
) -> pd.DataFrame:
    """The finished runs of the factorial's cells on its seeds, one row each in cell and seed
    order: the cell's label, each factor coded ±1, the seed, the test accuracy, and `record`,
    the row of `records` it came from. records: one row per stored run, with config_hash, seed,
    engine, platform, data, status and test_accuracy."""
    rows = []
    index = {}
    if len(records):
        finished = records[
            (records["engine"] == conditions.engine)
            & (records["platform"] == conditions.platform)
            & (records["data"] == conditions.data)
            & (records["status"] == "ok")
        ]
        keys = zip(finished["config_hash"], finished["seed"], strict=True)
        index = dict(zip(keys, finished.index, strict=True))
    names = factorial.factor_names
    for label, (levels, config) in factorial.cell_configs(base).items():
        for seed in factorial.seeds:
            i = index.get((config.hash(), seed))
            if i is None:
                continue
            coded = dict(zip(names, coded_levels(levels), strict=True))
            accuracy = float(records["test_accuracy"].loc[i])
            rows.append({"cell": label, **coded, "seed": seed, "accuracy": accuracy, "record": i})
    return pd.DataFrame(rows)
