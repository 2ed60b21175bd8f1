"""Time to a target validation accuracy, with runs that never reach it censored, not dropped.

A run is seen at the end of each epoch, so a run that first reaches the target at epoch k did so
somewhere in (k − 1, k] epochs, or in (seconds after k − 1, seconds after k]: interval-censored;
a run that never reaches it within its E epochs is right-censored at E. lifelines fits both: a
Kaplan–Meier curve per arm (the share of runs that reached the target by each epoch, its median)
and a Weibull accelerated-failure-time model whose exp(coefficient) is a time ratio: how many
times longer (> 1) or shorter (< 1) a change makes the time to the target, with its interval
(MLCommons AlgoPerf compares training methods by such times to a result).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter, WeibullAFTFitter
from lifelines.exceptions import ConvergenceError
from lifelines.utils import median_survival_times

from harness.stats.inference import CONFIDENCE, NAN

MAX_SE = 3.0  # a coefficient's standard error beyond which the model's ratio is no answer


class TimesToTarget(NamedTuple):
    lower: np.ndarray  # [runs] the time at the end of the epoch before the target was reached
    upper: np.ndarray  # [runs] at the end of the epoch it was first reached; inf: never


class TimeRatio(NamedTuple):
    ratio: float
    low: float
    high: float


def times_to_target(val_accuracy: np.ndarray, elapsed: np.ndarray, target: float) -> TimesToTarget:
    """val_accuracy[runs, epochs] and elapsed[runs, epochs] (epochs, or cumulative seconds, at
    each epoch's end; NaN past a run's last epoch): when each run first reached the target."""
    val, elapsed = np.asarray(val_accuracy, dtype=float), np.asarray(elapsed, dtype=float)
    reached = np.nan_to_num(val, nan=-1.0) >= target
    first = reached.argmax(axis=1)
    ever = reached.any(axis=1)
    rows = np.arange(len(val))
    at = elapsed[rows, first]
    before = np.where(first > 0, elapsed[rows, np.maximum(first - 1, 0)], 0.0)
    last = np.array([row[np.isfinite(row)][-1] for row in elapsed])
    return TimesToTarget(np.where(ever, before, last), np.where(ever, at, np.inf))


def median_time(times: TimesToTarget, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Kaplan–Meier's median time to the target (from the interval's upper end: when the run
    was seen to have reached it) with its interval; inf where fewer than half reach it."""
    observed = np.isfinite(times.upper)
    durations = np.where(observed, times.upper, times.lower)
    if not len(durations):
        return NAN, NAN, NAN
    fitter = KaplanMeierFitter(alpha=1 - confidence).fit(durations, observed)
    low, high = median_survival_times(fitter.confidence_interval_).iloc[0]
    return float(fitter.median_survival_time_), float(low), float(high)


def reached_share(times: TimesToTarget, at: np.ndarray) -> np.ndarray:
    """Kaplan–Meier's share of runs that reached the target by each time in `at`."""
    observed = np.isfinite(times.upper)
    durations = np.where(observed, times.upper, times.lower)
    fitter = KaplanMeierFitter().fit(durations, observed)
    return 1 - fitter.survival_function_at_times(at).to_numpy()


def time_ratios(
    times: TimesToTarget, covariates: pd.DataFrame, scale: float = 1.0,
    confidence: float = CONFIDENCE,
) -> dict[str, TimeRatio]:  # fmt: skip
    """Per covariate, the Weibull AFT model's time ratio exp(scale · β) with its interval, the
    runs interval-censored (see the module docstring). scale 2 for factors coded ±1, so that
    the ratio is the change's (−1 → +1); 1 for a 0/1 indicator. NaN where the model cannot be
    fitted (no run reached the target, or every one did at once, or no more runs than the
    model's parameters: a saturated fit's standard errors say nothing) or the covariate's runs
    on one side all missed it. The model is the caller's: e.g. changes and blocks (seeds) at
    once."""
    frame = covariates.reset_index(drop=True).assign(lower=times.lower, upper=times.upper)
    observed = np.isfinite(times.upper)
    parameters = covariates.shape[1] + 2  # and the intercept and the Weibull shape
    if (
        len(frame) <= parameters
        or not observed.any()
        or observed.all()
        and np.ptp(times.upper) == 0
    ):
        return {name: TimeRatio(NAN, NAN, NAN) for name in covariates}
    fitter = WeibullAFTFitter(alpha=1 - confidence)
    try:
        with warnings.catch_warnings():  # lifelines warns of convergence in its own words
            warnings.simplefilter("ignore")
            fitter.fit_interval_censoring(frame, "lower", "upper")
    except (ConvergenceError, ValueError, np.linalg.LinAlgError):
        return {name: TimeRatio(NAN, NAN, NAN) for name in covariates}
    summary = fitter.summary.loc["lambda_"]
    columns = ["coef", *(f"coef {side} {100 * confidence:g}%" for side in ("lower", "upper"))]
    ratios = {}
    for name in covariates:
        se = float(summary.loc[name, "se(coef)"])
        levels = covariates[name].to_numpy()
        # one side never reaches the target (its ratio is infinite: the fit stops anywhere),
        # no standard error, or one of e^3 (a ratio known within a factor of 400 or so)
        separated = not all(observed[levels == side].any() for side in (levels.min(), levels.max()))
        if separated or not 1e-9 < se < MAX_SE:
            ratios[name] = TimeRatio(NAN, NAN, NAN)
            continue
        ratios[name] = TimeRatio(*np.exp(scale * summary.loc[name, columns].to_numpy(dtype=float)))
    return ratios
