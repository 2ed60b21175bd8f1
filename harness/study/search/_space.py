"""The search space: the MLP family around the reference, one table of parameters.

Each parameter is listed once, with its Optuna distribution, its value in a config (which makes
the reference the first trial) and what a drawn value changes in the base config. The first
hidden width halves layer by layer; the number of hidden layers is the base's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from harness.core.config import Config

WIDTHS = (512, 768, 1024)  # the first hidden layer's width; the reference's own is added
MIN_EPOCHS = 8  # a trial trains at least this many epochs (or the cap, if lower)


@dataclass(frozen=True)
class Parameter:
    """One dimension of the search."""

    name: str
    distribution: BaseDistribution
    of: Callable[[Config], Any]  # its value in a config
    apply: Callable[[dict[str, Any], Any], None]  # a drawn value into the config's overrides
    needs: str | None = None  # drawn only where this boolean parameter drew True


def space(base: Config, search_epochs: int) -> list[Parameter]:
    """The parameters in the order a trial draws them."""
    layers = len(base.hidden_widths)

    def setting(key: str) -> Callable[[dict[str, Any], Any], None]:
        return lambda overrides, value: overrides.__setitem__(key, value)

    def dropout(layer: int) -> Parameter:
        def apply(overrides: dict[str, Any], value: float) -> None:
            overrides.setdefault("dropout", list(base.dropout))[layer] = value

        high = 0.5 if layer < layers - 1 else 0.3  # the last layer's capped lower, as the ref's 0
        return Parameter(
            f"dropout_{layer + 1}", FloatDistribution(0.0, high), lambda c: c.dropout[layer], apply
        )

    def weight_decay_on(overrides: dict[str, Any], on: bool) -> None:
        if not on:
            overrides["weight_decay"] = 0.0

    return [
        Parameter(
            "width",
            CategoricalDistribution(width_choices(base)),
            lambda c: c.hidden_widths[0],
            lambda overrides, width: overrides.__setitem__(
                "hidden_widths", halved_widths(width, layers)
            ),
        ),
        Parameter(
            "use_weight_decay",
            CategoricalDistribution([True, False]),
            lambda c: c.weight_decay > 0,
            weight_decay_on,
        ),
        Parameter(
            "weight_decay",
            FloatDistribution(1e-6, 1e-3, log=True),
            lambda c: c.weight_decay,
            setting("weight_decay"),
            needs="use_weight_decay",
        ),
        Parameter(
            "batchnorm",
            CategoricalDistribution([True, False]),
            lambda c: c.batchnorm,
            setting("batchnorm"),
        ),
        *(dropout(layer) for layer in range(layers)),
        Parameter("lr", FloatDistribution(3e-4, 5e-3, log=True), lambda c: c.lr, setting("lr")),
        Parameter(
            "batch_size",
            CategoricalDistribution(sorted({128, 256, 512, base.batch_size})),
            lambda c: c.batch_size,
            setting("batch_size"),
        ),
        Parameter(
            "scheduler_factor",
            FloatDistribution(0.1, 0.7),
            lambda c: c.scheduler_factor,
            setting("scheduler_factor"),
        ),
        Parameter(
            "scheduler_patience",
            IntDistribution(0, 3),
            lambda c: c.scheduler_patience,
            setting("scheduler_patience"),
        ),
        Parameter(
            "epochs",
            IntDistribution(min(MIN_EPOCHS, search_epochs), search_epochs),
            lambda c: min(c.epochs, search_epochs),
            setting("epochs"),
        ),
        Parameter("shift", IntDistribution(0, 2), lambda c: c.shift, setting("shift")),
    ]


def suggest_config(trial: optuna.Trial, base: Config, search_epochs: int) -> Config:
    """The config a trial draws: each parameter of the space, in its order."""
    overrides: dict[str, Any] = {}
    drawn: dict[str, Any] = {}
    for parameter in space(base, search_epochs):
        if parameter.needs is not None and not drawn[parameter.needs]:
            continue
        drawn[parameter.name] = value = _suggest(trial, parameter.name, parameter.distribution)
        parameter.apply(overrides, value)
    if "dropout" in overrides:
        overrides["dropout"] = tuple(overrides["dropout"])
    return dataclasses.replace(base, **overrides)


def reference_params(reference: Config, search_epochs: int) -> dict[str, Any]:
    """The reference in the space's terms: a new study's first trial, so that the search starts
    from the known baseline and can only improve on it."""
    return {p.name: p.of(reference) for p in space(reference, search_epochs)}


def width_choices(base: Config) -> list[int]:
    return sorted({*WIDTHS, base.hidden_widths[0]})


def halved_widths(width: int, layers: int) -> tuple[int, ...]:
    return tuple(max(1, width // 2**i) for i in range(layers))


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Trial.suggest_* for a distribution of the table."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
