"""Small pure statistics over per-seed results; scipy does the work, these fix the conventions.

Every function returns NaN where the data cannot support the number (fewer than two seeds, say):
a report shows that as "n/a" rather than a made-up interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, special, stats

from harness.stats.verdicts import ALPHA

CONFIDENCE = 1 - ALPHA  # an interval for one comparison alone
POWER = 0.8  # what a plan of seeds aims for
NAN = float("nan")
WILCOXON_MIN_N = 5  # below five pairs the exact two-sided p-value cannot go under 0.0625
# BCa is a normal-theory (z, plug-in sd) interval: with few seeds it is too narrow. Coverage of
# the nominal 95% interval for the mean of normal samples, measured by tests/simulations.py (999
# resamples, 20,000 studies each, Monte Carlo SE <= 0.003): n=5 0.833, 10 0.898, 15 0.918,
# 20 0.924, 25 0.931, 30 0.932, 40 0.937 (theory for x-bar +- z*sd_plugin: 0.846, 0.904,
# 0.921, 0.929, 0.933, 0.936, 0.940). The first n of 5/10/15/20/30 with coverage >= 0.93 is 30.
BCA_MIN_N = 30


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
    """Mean with a BCa bootstrap interval (seeded, so a report is reproducible).

    NaN bounds below BCA_MIN_N values: there the "95%" interval covers far less often than it
    says (see BCA_MIN_N), and mean_ci is the honest interval.
    """
    x = np.asarray(values, dtype=float)
    if len(x) < BCA_MIN_N:
        return Interval(float(x.mean()) if len(x) else NAN, NAN, NAN)
    if (degenerate := _degenerate_interval(x)) is not None:
        return degenerate
    low, high = bca_bounds(x, confidence, n_resamples, np.random.default_rng(seed))
    return Interval(float(x.mean()), float(low), float(high))


def bca_bounds(
    x: np.ndarray, confidence: float, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """BCa bounds of the mean along the last axis (rows are independent samples)."""
    result = stats.bootstrap(
        (x,),
        np.mean,
        axis=-1,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        batch=max(1, 5_000_000 // max(1, x.size)),  # bounds memory to ~40 MB
        rng=rng,
    )
    return result.confidence_interval.low, result.confidence_interval.high


def paired_difference_ci(
    variant: list[float], reference: list[float], confidence: float = CONFIDENCE
) -> Interval:
    """Mean of variant − reference over paired seeds, with a Student-t interval."""
    return mean_ci(_differences(variant, reference), confidence)


def paired_t_pvalue(variant: list[float], reference: list[float]) -> float:
    d = _differences(variant, reference)
    if len(d) < 2:
        return NAN
    if np.ptp(d) == 0:  # no spread: identical runs differ by nothing, else t is undefined
        return 1.0 if d[0] == 0 else NAN
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def tost_pvalue(differences: list[float], margin: float) -> float:
    """Paired TOST p-value for |mean difference| < margin: the larger of two one-sided t-tests.

    A small p says the difference is within ±margin, which "not significant" never says.
    """
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return NAN
    if np.ptp(d) == 0:  # no spread: the same difference every time, inside the margin or not
        return 0.0 if abs(d[0]) < margin else 1.0
    above_lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    below_upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(above_lower, below_upper))


def paired_t_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample (paired) t-test at level alpha, from the noncentral t."""
    if n < 2 or not sd > 0:
        return NAN
    df, noncentrality = n - 1, effect / sd * math.sqrt(n)
    critical = stats.t.isf(alpha / 2, df)
    # the lower tail as the upper tail at −noncentrality: nct.cdf is NaN far out in the tail
    return float(
        stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality)
    )


def minimum_detectable_effect(
    sd: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest true mean difference the two-sided paired t-test finds with the given power.

    Says what a "no significant difference" at n seeds can rule out: nothing smaller than this.
    """
    if n < 2 or not sd > 0 or not math.isfinite(sd):
        return NAN
    upper = 1.0  # in units of sd; doubled until the power is reached (n = 2 needs ~ 13 sd)
    while paired_t_power(upper, 1.0, n, alpha) < power:
        upper *= 2
    standardized = optimize.brentq(
        lambda effect: paired_t_power(effect, 1.0, n, alpha) - power, 0.0, upper, xtol=1e-10
    )
    return float(standardized * sd)


def sd_upper_bound(sd: float, n: int, confidence: float = 0.8) -> float:
    """One-sided upper confidence bound of a normal sd estimated from n values: a plan made
    from the point estimate of a 5-seed sd (4 degrees of freedom) undershoots as often as not."""
    if n < 2 or not math.isfinite(sd):
        return NAN
    return float(sd * math.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1)))


def seeds_needed(
    sd: float, effect: float, alpha: float = ALPHA, power: float = POWER, max_n: int = 1000
) -> int:
    """Smallest n >= 2 pairs at which the paired t-test finds `effect` with the given power.

    Returns max_n + 1 when even max_n pairs are not enough. The MDE falls with n, so bisect.
    """
    if not effect > 0 or not math.isfinite(sd):
        raise ValueError(f"need a positive effect and a finite sd, got {effect=}, {sd=}")
    if sd == 0:
        return 2
    if minimum_detectable_effect(sd, max_n, alpha, power) > effect:
        return max_n + 1
    low, high = 1, max_n  # invariant: low is not enough (or < 2), high is enough
    while high - low > 1:
        middle = (low + high) // 2
        if minimum_detectable_effect(sd, middle, alpha, power) <= effect:
            high = middle
        else:
            low = middle
    return high


def hedges_gz(differences: list[float]) -> float:
    """Paired effect size d_z times Hedges' exact small-sample correction J(n - 1).

    d_z = mean / sd overstates the effect with few seeds; J = Γ(m/2) / (√(m/2) Γ((m-1)/2)),
    m = n - 1, removes that bias exactly under normality (the approximation 1 - 3/(4m - 1) is
    within 0.3% of it from n = 4 on). J = 0 at n = 2, where d_z has no finite mean.
    """
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.std(d, ddof=1) == 0:
        return NAN
    m = len(d) - 1
    correction = math.exp(special.gammaln(m / 2) - special.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
    return float(correction * d.mean() / np.std(d, ddof=1))


def wilcoxon_counts_pvalue(variant_correct: list[int], reference_correct: list[int]) -> float:
    """Exact two-sided Wilcoxon signed-rank p-value on whole counts of correct test images.

    Differences of accuracies in floating point break ties at random (0.9812 - 0.9811 is not
    0.9825 - 0.9824), which moves p (0.875 instead of an exact 0.750); integer counts keep ties.
    Zero differences are dropped (Wilcoxon's method), ties get midranks, and the null
    distribution of the signed-rank sum over all 2**m sign patterns (m nonzero pairs) is counted
    exactly for any m, by convolution over the doubled midranks (integers). NaN below
    WILCOXON_MIN_N pairs or with no nonzero difference.
    """
    a, b = np.asarray(variant_correct), np.asarray(reference_correct)
    if not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise TypeError("wilcoxon_counts_pvalue takes integer counts of correct images")
    d = _differences(a, b)
    nonzero = d[d != 0]
    if len(d) < WILCOXON_MIN_N or len(nonzero) == 0:
        return NAN
    ranks = [round(2 * r) for r in stats.rankdata(np.abs(nonzero))]  # doubled midranks
    total = sum(ranks)
    ways = [1] + [0] * total  # ways[s]: sign patterns whose positive ranks sum to s
    for r in ranks:
        ways = [w + (ways[s - r] if s >= r else 0) for s, w in enumerate(ways)]
    observed = abs(2 * sum(r for r, x in zip(ranks, nonzero, strict=True) if x > 0) - total)
    extreme = sum(w for s, w in enumerate(ways) if abs(2 * s - total) >= observed)
    return extreme / 2 ** len(ranks)


def mcnemar_pvalue(only_variant_right: int, only_reference_right: int) -> float:
    """Exact McNemar test on one pair of runs: a two-sided binomial test of the discordant images.

    Only images that one run gets right and the other wrong carry information about which is
    better; under the null each is equally likely to go either way.
    """
    discordant = only_variant_right + only_reference_right
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_variant_right, discordant, 0.5).pvalue)


def prediction_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Where ONE new run (a new seed) will land: mean ± t·sd·√(1 + 1/n).

    The interval for the mean shrinks with n; a single rerun's spread does not.
    """
    x = np.asarray(values, dtype=float)
    if (degenerate := _degenerate_interval(x)) is not None:
        return degenerate
    n = len(x)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) * math.sqrt(1 + 1 / n)
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half))


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
