"""Small pure statistics over per-seed results; scipy does the work, these fix the conventions.

Every function returns NaN where the data cannot support the number (fewer than two seeds, say):
a report shows that as "n/a" rather than a made-up interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
NAN = float("nan")
WILCOXON_MIN_N = 5  # below five pairs the exact two-sided p-value cannot go under 0.0625


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean with a Student-t interval for the mean (NaN bounds below two values)."""
    x = np.asarray(values, dtype=float)
    if (degenerate := _degenerate_interval(x)) is not None:
        return degenerate
    mean = float(x.mean())
    low, high = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return Interval(mean, float(low), float(high))


def bootstrap_ci(
    values: list[float], confidence: float = CONFIDENCE, n_resamples: int = 9999, seed: int = 0
) -> Interval:
    """Mean with a BCa bootstrap interval (seeded, so a report is reproducible)."""
    x = np.asarray(values, dtype=float)
    if (degenerate := _degenerate_interval(x)) is not None:
        return degenerate
    mean = float(x.mean())
    result = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        mean, float(result.confidence_interval.low), float(result.confidence_interval.high)
    )


def paired_difference_ci(
    variant: list[float], reference: list[float], confidence: float = CONFIDENCE
) -> Interval:
    """Mean of variant − reference over paired seeds, with a Student-t interval."""
    return mean_ci(_differences(variant, reference), confidence)


def paired_t_pvalue(variant: list[float], reference: list[float]) -> float:
    d = _differences(variant, reference)
    if len(d) < 2 or np.ptp(d) == 0:
        return NAN
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def wilcoxon_pvalue(variant: list[float], reference: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value; NaN below WILCOXON_MIN_N or all-zero differences."""
    d = _differences(variant, reference)
    if len(d) < WILCOXON_MIN_N or not np.any(d):
        return NAN
    return float(stats.wilcoxon(d).pvalue)


def cohens_dz(variant: list[float], reference: list[float]) -> float:
    """Paired effect size: mean difference over the standard deviation of the differences."""
    d = _differences(variant, reference)
    if len(d) < 2 or np.std(d, ddof=1) == 0:
        return NAN
    return float(d.mean() / np.std(d, ddof=1))


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values; NaN entries stay NaN and do not count."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [NAN] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted


def binomial_ci(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """A single run's accuracy on a test set with a Wilson score interval."""
    interval = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return Interval(successes / trials, float(interval.low), float(interval.high))


def _degenerate_interval(x: np.ndarray) -> Interval | None:
    """No interval below two values; a zero-width one when all values are equal."""
    if len(x) < 2:
        return Interval(float(x.mean()) if len(x) else NAN, NAN, NAN)
    if np.ptp(x) == 0:
        return Interval(float(x[0]), float(x[0]), float(x[0]))
    return None


def _differences(variant: list[float], reference: list[float]) -> np.ndarray:
    a, b = np.asarray(variant, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return a - b
