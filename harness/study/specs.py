"""Ablation specs: one TOML file per variant in ablations/, found by name, no registry.

description = "BatchNorm removed from every hidden layer"
seeds = 5              # optional: this spec's default number of seeds
[config]               # overrides relative to the reference (harness.core.config.Config)
batchnorm = false
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import UserError
from harness.core.config import Config, ConfigError, read_toml, with_overrides

SPECS_DIR = Path(__file__).resolve().parents[2] / "ablations"
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


def spec_names(specs_dir: Path = SPECS_DIR) -> list[str]:
    return sorted(path.stem for path in Path(specs_dir).glob("*.toml"))


def load_spec(name: str, specs_dir: Path = SPECS_DIR) -> Spec:
    path = Path(specs_dir) / f"{name}.toml"
    if not path.is_file():
        raise SpecError(unknown_name_message(name, spec_names(specs_dir)))
    try:
        table = read_toml(path)
    except ConfigError as error:  # unreadable, not UTF-8, bad TOML: a broken spec like any
        raise SpecError(str(error)) from None
    return parse_spec(name, table, str(path))


def parse_spec(name: str, table: dict[str, Any], source: str) -> Spec:
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
        config = with_overrides(Config(), table.get("config", {}), source=f"{source} [config]")
    except ConfigError as error:
        raise SpecError(str(error)) from error
    return Spec(name, table["description"], config, seeds)


def load_specs(names: list[str], specs_dir: Path = SPECS_DIR) -> list[Spec]:
    """The named specs, all parsed before anything trains; a broken spec that was not asked
    for is no reason to stop."""
    return [load_spec(name, specs_dir) for name in names]


def every_spec(specs_dir: Path = SPECS_DIR) -> list[Spec | SpecError]:
    """Each spec in the folder, or the error that makes it unusable (for --list)."""
    found: list[Spec | SpecError] = []
    for name in spec_names(specs_dir):
        try:
            found.append(load_spec(name, specs_dir))
        except SpecError as error:
            found.append(error)
    return found


def unknown_name_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return f"unknown ablation {name!r}{hint} (known: {', '.join(known)})"
