"""The experiment configuration: one dataclass whose defaults are the reference network.

Everything that changes what a run computes lives here, so that its hash names "the same
experiment". The seed is kept apart: runs of one config over several seeds share the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from harness import UserError


class ConfigError(UserError):
    """A config file or override that cannot be used; the message names the file and key."""


@dataclasses.dataclass(frozen=True)
class Config:
    hidden_widths: tuple[int, ...] = (512, 256, 128)
    batchnorm: bool = True
    dropout: tuple[float, ...] = (0.3, 0.2, 0.0)  # after each hidden layer's activation
    activation: str = "relu"
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-4  # coupled L2, as torch.optim.Adam(weight_decay=...) applies it
    batch_size: int = 128
    epochs: int = 15
    scheduler: str = "plateau"  # ReduceLROnPlateau on validation accuracy, or "none"
    scheduler_factor: float = 0.5
    scheduler_patience: int = 1
    shift: int = 0  # augmentation: random translation of each training image, up to N pixels
    val_size: int = 5000  # held out of the official 60,000 training images, stratified

    def __post_init__(self) -> None:
        problems = []
        if not self.hidden_widths or min(self.hidden_widths) < 1:
            problems.append("hidden_widths: needs one or more positive widths")
        if len(self.dropout) != len(self.hidden_widths):
            problems.append(
                f"dropout: {len(self.dropout)} rates for {len(self.hidden_widths)} hidden layers"
            )
        if any(not 0.0 <= p < 1.0 for p in self.dropout):
            problems.append("dropout: rates must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation: {self.activation!r} is not one of {ACTIVATIONS}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler: {self.scheduler!r} is not one of {SCHEDULERS}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 < self.scheduler_factor < 1:
            problems.append("lr > 0, weight_decay >= 0 and 0 < scheduler_factor < 1 are required")
        if self.batch_size < 1 or self.epochs < 1 or self.scheduler_patience < 0:
            problems.append("batch_size >= 1, epochs >= 1 and scheduler_patience >= 0 are required")
        if not 0 <= self.shift <= 4:
            problems.append("shift: must be between 0 and 4 pixels")
        if not 0 < self.val_size < 60_000:
            problems.append("val_size: must be between 1 and 59,999")
        if problems:
            raise ConfigError("; ".join(problems))

    def hash(self) -> str:
        """A short stable id of the experiment (the seed is not part of it)."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists, as they come back from a stored record."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


ACTIVATIONS = ("relu", "gelu", "tanh")
SCHEDULERS = ("plateau", "none")
FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Config)


def _coerce(key: str, value: Any) -> Any:
    """Checks a TOML value against the field's type; TOML arrays become tuples."""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown key {key!r} (known: {', '.join(FIELD_TYPES)})")
    expected = FIELD_TYPES[key]
    if isinstance(expected, types.GenericAlias):  # tuple[int, ...] or tuple[float, ...]
        item = typing.get_args(expected)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_coerce_scalar(key, item, v) for v in value)
    return _coerce_scalar(key, expected, value)


def _coerce_scalar(key: str, expected: type, value: Any) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    return value


def with_overrides(base: Config, overrides: dict[str, Any], source: str = "overrides") -> Config:
    """The base config with the given keys replaced; errors name the source and key."""
    try:
        return dataclasses.replace(base, **{k: _coerce(k, v) for k, v in overrides.items()})
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); TOML files are UTF-8: save it so"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax error: {error}") from None


def load_config(path: Path | None = None, assignments: list[str] = ()) -> Config:
    """The reference, then a TOML file's keys, then KEY=VALUE assignments (VALUE in TOML syntax),
    applied together: hidden_widths and dropout may change as one."""
    config = Config()
    if path is not None:
        config = with_overrides(config, read_toml(path), source=str(path))
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        overrides |= parse_assignment(assignment)
    if not overrides:
        return config
    try:
        return with_overrides(config, overrides, source=" ".join(assignments))
    except ConfigError as error:
        raise ConfigError(str(error), "set") from None


def parse_assignment(assignment: str) -> dict[str, Any]:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ConfigError(f"{assignment}: expected KEY=VALUE, e.g. lr=0.002", "set")
    try:
        return {key.strip(): tomllib.loads(f"v = {value}")["v"]}
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{assignment}: {value!r} is not a TOML value", "set") from None


def config_from_dict(data: dict[str, Any]) -> Config:
    """A stored config (JSON lists for tuples) back as a Config: every field, each checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a table of settings, got {data!r}")
    missing = [key for key in FIELD_TYPES if key not in data]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")
    return with_overrides(Config(), data, source="config")
