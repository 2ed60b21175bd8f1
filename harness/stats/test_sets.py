"""Intervals for new seeds and new test sets: the test set is a sample too.

A new test set is drawn like the official one, whose images are not independent: its two halves
differ in difficulty (error rates of 2.0% and 0.78% for a typical run) and blocks of consecutive
images vary 1.9-4x more than independent images would. So the test-image part of an interval
counts the halves as strata and TEST_SET_BLOCKS runs of consecutive images (500 each in MNIST)
as the sampled units (tests/test_stats.py checks its coverage on stored predictions).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from harness.stats.inference import CONFIDENCE, NAN, Interval

TEST_SET_STRATA = 2
TEST_SET_BLOCKS = 20


def accuracy_interval_seeds_and_images(
    correct: np.ndarray,
    confidence: float = CONFIDENCE,
    blocks: int = TEST_SET_BLOCKS,
    strata: int = TEST_SET_STRATA,
) -> Interval:
    """Mean accuracy over seeds with an interval for new seeds AND a new test set drawn like
    this one: correct[s, i] says whether seed s got test image i right. See
    _crossed_mean_interval; blocks=N, strata=1 treats every image as independent."""
    return _crossed_mean_interval(_block_means(correct, blocks, strata), confidence, strata)


def paired_difference_interval_seeds_and_images(
    variant_correct: np.ndarray,
    reference_correct: np.ndarray,
    confidence: float = CONFIDENCE,
    blocks: int = TEST_SET_BLOCKS,
    strata: int = TEST_SET_STRATA,
) -> Interval:
    """Variant − reference accuracy, seeds paired by row and images by column, with an interval
    for new seeds and a new test set (both arms see the same images, so their shared difficulty
    cancels)."""
    differences = _paired_differences(variant_correct, reference_correct)
    return _crossed_mean_interval(_block_means(differences, blocks, strata), confidence, strata)


def test_set_floor(
    variant_correct: np.ndarray,
    reference_correct: np.ndarray,
    confidence: float = CONFIDENCE,
    blocks: int = TEST_SET_BLOCKS,
    strata: int = TEST_SET_STRATA,
) -> float:
    """The half-width that the interval of paired_difference_interval_seeds_and_images keeps
    however many seeds are trained: the test-image part, σ²_unit/N estimated as (MS_units −
    MS_residual)/(SN), at a normal quantile. An equivalence verdict needs |Δ| + floor < margin,
    a difference verdict |Δ| > floor, for new test sets of this size."""
    y = _block_means(_paired_differences(variant_correct, reference_correct), blocks, strata)
    n_seeds, n_units = y.shape
    if n_seeds < 2:
        return NAN
    _, ms_units, ms_residual = _mean_squares(y, strata)
    variance = max(ms_units - ms_residual, 0.0) / (n_seeds * n_units)
    return float(stats.norm.ppf((1 + confidence) / 2) * math.sqrt(variance))


def block_accuracies(
    correct: np.ndarray, blocks: int = TEST_SET_BLOCKS, strata: int = TEST_SET_STRATA
) -> np.ndarray:
    """correct[runs, images] as each run's accuracy on each block of consecutive images."""
    return _block_means(correct, blocks, strata)


def linear_estimate_test_set_variance(
    weights: np.ndarray,
    block_accuracy: np.ndarray,
    seeds: np.ndarray,
    strata: int = TEST_SET_STRATA,
) -> tuple[float, float]:
    """The test-image part of the variance of Σ_r w_r accuracy_r (a factorial's effect, a
    contrast of cells), for a new test set drawn like this one, and its degrees of freedom.

    Every cell trains on the same seeds, so the contrast splits seed by seed: D[s, u] =
    S · Σ_{r of seed s} w_r a[r, u], whose mean over seeds is the estimate on block u. D is then
    a [seeds, units] table like a paired Δ's, and the image part is the crossed design's
    (MS_units − MS_residual)/(SN) (see _crossed_mean_interval and test_set_floor): the
    effect's own variation over blocks, without the seed × block noise that the seed part
    already holds, and without assuming that runs on one seed are independent across cells.
    With one seed there is no residual to take away and the whole spread of D over blocks
    counts (an overstatement). Below zero the part is 0. Needs every seed to hold the same
    cells (a balanced design).
    """
    y = np.asarray(block_accuracy, dtype=float)
    seeds = np.asarray(seeds)
    distinct = np.unique(seeds)
    per_seed = np.array(
        [len(distinct) * (np.asarray(weights)[seeds == s] @ y[seeds == s]) for s in distinct]
    )
    n_seeds, n_units = per_seed.shape
    if n_seeds < 2:
        _, ms_units, _ = _mean_squares(np.vstack([per_seed, per_seed]), strata)
        return max(ms_units / 2, 0.0) / n_units, float(n_units - strata)
    _, ms_units, ms_residual = _mean_squares(per_seed, strata)
    return max(ms_units - ms_residual, 0.0) / (n_seeds * n_units), float(n_units - strata)


def _block_means(y: np.ndarray, blocks: int, strata: int) -> np.ndarray:
    """y[seeds, images] averaged over `blocks` runs of consecutive images, stratum by stratum
    (the first blocks/strata blocks make the first stratum)."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"need a [seeds, images] array, got shape {y.shape}")
    if y.shape[1] % blocks or blocks % strata or blocks // strata < 2:
        raise ValueError(f"{y.shape[1]} images do not split into {blocks} blocks, {strata} strata")
    return y.reshape(y.shape[0], blocks, -1).mean(axis=2)


def _crossed_mean_interval(y: np.ndarray, confidence: float, strata: int = 1) -> Interval:
    """Grand mean of y[seeds, units] with a variance-components interval (crossed design).

    Seeds and test units (images, or blocks of them) are both random samples, crossed. The
    variance of the grand mean is σ²_seed/S + σ²_unit/N + σ²_interaction/(SN), and the two-way
    ANOVA mean squares estimate it without bias: (MS_seeds + MS_units − MS_residual) / (SN) =
    s²_seeds/S + s²_units/N − MS_residual/(SN), with s²_seeds the variance of the per-seed means
    and s²_units that of the per-unit means over seeds, taken within strata (the units are
    drawn stratum by stratum, equally many from each, so differences between strata are no
    noise). The shorter formula without the last term counts the interaction twice. A two-level
    bootstrap (seeds, then images) overstates it the same way (Owen 2007, "The pigeonhole
    bootstrap") and costs resamples; this is exact and O(SN). Degrees of freedom: Satterthwaite's
    for the combination of mean squares. Where the estimate falls below MS_residual/(SN), the
    interaction's share alone (a floor no truth can be under), that floor is used. Checked by
    simulation of new seeds and new images (tests/test_stats.py).
    """
    n_seeds, n_units = y.shape
    if n_seeds < 2 or n_units < 2:
        return Interval(float(y.mean()) if y.size else NAN, NAN, NAN)
    grand = float(y.mean())
    ms_seeds, ms_units, ms_residual = _mean_squares(y, strata)
    df_residual = (n_seeds - 1) * (n_units - 1)
    terms = np.array([ms_seeds, ms_units, -ms_residual]) / (n_seeds * n_units)
    dfs = np.array([n_seeds - 1, n_units - strata, df_residual], dtype=float)
    variance = float(terms.sum())
    if variance < -terms[2]:  # below the interaction's own share: that share alone
        terms, dfs = -terms[2:], dfs[2:]
        variance = float(terms[0])
    if variance == 0:
        return Interval(grand, grand, grand)
    df = variance**2 / float(np.sum(terms**2 / dfs))
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(variance)
    return Interval(grand, float(grand - half), float(grand + half))


def _mean_squares(y: np.ndarray, strata: int) -> tuple[float, float, float]:
    """The two-way ANOVA mean squares of y[seeds, units]: seeds, units (within strata: the
    units are drawn stratum by stratum, so differences between strata are no noise), and the
    residual (the seed × unit interaction)."""
    n_seeds, n_units = y.shape
    seed_means, unit_means = y.mean(axis=1), y.mean(axis=0)
    by_stratum = unit_means.reshape(strata, -1)
    within = by_stratum - by_stratum.mean(axis=1, keepdims=True)
    ms_seeds = n_units * float(seed_means.var(ddof=1))
    ms_units = n_seeds * float((within**2).sum()) / (n_units - strata)
    residual = y - seed_means[:, None] - unit_means[None, :] + y.mean()
    ms_residual = float(np.einsum("ij,ij->", residual, residual)) / ((n_seeds - 1) * (n_units - 1))
    return ms_seeds, ms_units, ms_residual


def _paired_differences(variant_correct: np.ndarray, reference_correct: np.ndarray) -> np.ndarray:
    """Variant − reference correctness, image by image and seed by seed."""
    a = np.asarray(variant_correct, dtype=float)
    b = np.asarray(reference_correct, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness arrays differ in shape: {a.shape} vs {b.shape}")
    return a - b
