"""Expected best validation accuracy of a search of n trials, from one search's N trials.

Dodge et al. 2019 ("Show Your Work") plot E[max of n trials] against n: a curve that flattens
says that more trials would buy little. Their estimator draws with replacement and is biased;
Tang et al. 2020 ("Showing Your Work Doesn't Always Work") give the unbiased one, drawing n of
the N trials without replacement: with v_(1) <= ... <= v_(N),

    E[max of n] = sum_{i=n..N} C(i-1, n-1) / C(N, n) * v_(i).

The interval resamples the trials (percentile bootstrap, seeded), as the tuning playbook's
study-variance bootstrap does; at n near N it is a lower-leaning interval, since a resample
holds fewer distinct best trials.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import special, stats

CONFIDENCE = 0.95
RESAMPLES = 2_000


def expected_max(values: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """Tang et al.'s unbiased estimate of the best of n trials drawn without replacement from
    the given N (along axis); 1 <= n <= N."""
    ordered = np.moveaxis(np.sort(np.asarray(values, dtype=float), axis=axis), axis, -1)
    total = ordered.shape[-1]
    if not 1 <= n <= total:
        raise ValueError(f"n must lie in 1..{total}, got {n}")
    rank = np.arange(1, total + 1)
    log_weight = _log_comb(rank - 1, n - 1) - _log_comb(total, n)  # -inf below rank n
    return ordered @ np.exp(log_weight)


def _expected_max_along(sample: np.ndarray, axis: int, n: int) -> np.ndarray:
    return expected_max(sample, n, axis)


def _log_comb(a: np.ndarray | int, b: int) -> np.ndarray:
    """log C(a, b), -inf where a < b (in log space: C(N, n) overflows floats from N ~ 1,030)."""
    a = np.asarray(a, dtype=float)
    with np.errstate(invalid="ignore"):
        value = special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)
    return np.where(a >= b, value, -np.inf)


def expected_max_curve(
    values: np.ndarray, confidence: float = CONFIDENCE, seed: int = 0
) -> pd.DataFrame:
    """E[max of n] for n = 1..N with its bootstrap interval: columns n, expected, low, high."""
    values = np.asarray(values, dtype=float)
    rows = []
    for n in range(1, len(values) + 1):
        estimate = float(expected_max(values, n))
        if len(values) < 2:
            low = high = np.nan
        else:
            interval = stats.bootstrap(
                (values,),
                functools.partial(_expected_max_along, n=n),
                confidence_level=confidence,
                n_resamples=RESAMPLES,
                method="percentile",
                rng=np.random.default_rng(seed),
            ).confidence_interval
            low, high = interval.low, interval.high
        rows.append({"n": n, "expected": estimate, "low": low, "high": high})
    return pd.DataFrame(rows)
