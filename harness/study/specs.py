"""Ablation specs: one TOML file per variant in ablations/ (or another specs folder), found by
name, no registry.

description = "BatchNorm removed from every hidden layer"
seeds = 5              # optional: this spec's default number of seeds
[config]               # overrides of the base recipe (the reference: harness.core.config.Config,
batchnorm = false      # changed by a command's --set)
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import UserError
from harness.core.config import Config, ConfigError, read_toml, with_overrides

SPECS_DIR = Path(__file__).resolve().parents[2] / "ablations"
SPECS_DIR_ENV = "HARNESS_SPECS_DIR"
REFERENCE = "reference"
DEFAULT_SEEDS = 5
SPEC_KEYS = {"description": str, "seeds": int, "config": dict}


class SpecError(UserError):
    pass


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    config: Config
    seeds: int = DEFAULT_SEEDS


def resolve_specs_dir(arg: str | Path | None = None) -> Path:
    """The specs folder: the option, else $HARNESS_SPECS_DIR, else the project's ablations/."""
    return Path(arg or os.environ.get(SPECS_DIR_ENV) or SPECS_DIR)


def spec_names(specs_dir: Path = SPECS_DIR) -> list[str]:
    if not Path(specs_dir).is_dir():
        raise SpecError(f"{specs_dir}: no such folder of ablation specs", "specs_dir")
    return sorted(path.stem for path in Path(specs_dir).glob("*.toml"))


def load_spec(name: str, specs_dir: Path = SPECS_DIR, base: Config | None = None) -> Spec:
    """The spec NAME.toml of the folder, its overrides applied to base (the reference)."""
    path = Path(specs_dir) / f"{name}.toml"
    if not path.is_file():
        raise SpecError(unknown_name_message(name, spec_names(specs_dir)))
    try:
        table = read_toml(path)
    except ConfigError as error:  # unreadable, not UTF-8, bad TOML: a broken spec like any
        raise SpecError(str(error)) from None
    return parse_spec(name, table, str(path), base or Config())


def parse_spec(name: str, table: dict[str, Any], source: str, base: Config | None = None) -> Spec:
    for key, value in table.items():
        if key not in SPEC_KEYS:
            raise SpecError(f"{source}: unknown key {key!r} (known: {', '.join(SPEC_KEYS)})")
        if type(value) is not SPEC_KEYS[key]:
            raise SpecError(f"{source}: {key}: expected {SPEC_KEYS[key].__name__}, got {value!r}")
    if "description" not in table:
        raise SpecError(f"{source}: missing key 'description' (one line saying what changes)")
    seeds = table.get("seeds", DEFAULT_SEEDS)
    if seeds < 1:
        raise SpecError(f"{source}: seeds: expected at least 1, got {seeds}")
    try:
        config = with_overrides(base or Config(), table.get("config", {}), f"{source} [config]")
    except ConfigError as error:
        raise SpecError(str(error)) from error
    return Spec(name, table["description"], config, seeds)


def load_specs(
    names: list[str], specs_dir: Path = SPECS_DIR, base: Config | None = None
) -> list[Spec]:
    """The named specs, all parsed before anything trains; a broken spec that was not asked
    for is no reason to stop."""
    return [load_spec(name, specs_dir, base) for name in names]


def every_spec(specs_dir: Path = SPECS_DIR, base: Config | None = None) -> list[Spec | SpecError]:
    """Each spec in the folder, or the error that makes it unusable (for --list)."""
    found: list[Spec | SpecError] = []
    for name in spec_names(specs_dir):
        try:
            found.append(load_spec(name, specs_dir, base))
        except SpecError as error:
            found.append(error)
    return found


def unknown_name_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return f"unknown ablation {name!r}{hint} (known: {', '.join(known)})"
