"""Intervals for new seeds and new test sets: the test set is a sample too.

An estimate from a study (an accuracy, a paired Δ, a factorial's effect) is a linear function of
its runs' correctness on the test images. Over new seeds *and* a new test set drawn like the
official one, its variance is the seed part (what new seeds on this test set would move) plus the
test-image part: how much the seed-averaged estimate itself varies from one test set to another.

The test-image part is estimated from each seed's contrast on the test images, D[s, i] (for a
paired Δ: the variant's correctness minus the reference's on image i; its mean over seeds and
images is the estimate). The test set's two halves differ in difficulty, so they are strata;
within them, neighbouring images are alike (written by the same writers), so the sampled unit of
a new test set is a block of consecutive images (TEST_SET_BLOCKS of them). Two moment estimates
of the part, each the variation of the unit means over seeds less the seed × unit noise that the
seed part already holds ((MS_units − MS_residual) / (S · units), a two-way ANOVA of D):

- over blocks, which counts the likeness of neighbouring images, but with 18 degrees of freedom
  against noise it often falls to or below 0 with few seeds, where the truth cannot be 0;
- over single images, thousands of units, so precise, but blind to that likeness: images alike
  in a block vary together, so this one is no larger than the block one's truth (a lower bound,
  for a likeness that is not negative).

With two seeds both estimates fall to or below 0 for a contrast whose image part is small
against that noise (a network's errors are alike over many images, so the noise in them is
larger than independent images would make it), where the truth cannot be 0 unless the networks
agree on every image. A factorial holds more: every cell's correctness on every image. Its
cell × image variance τ² (a three-way ANOVA over cells, seeds and images: the cells' image by
image disagreement beyond what their seeds' own disagreement explains) pooled over all cells
gives a contrast with cell weights w the image part τ² Σ w_c² / N if cells differed image by
image alike (exchangeably). That is a floor: thousands of degrees of freedom, positive wherever
the cells differ, and conservative for an interaction, whose image part is 0 where the factors'
image effects add up.

The image part is the largest of the two estimates and that floor (and exactly 0 where every
seed's contrast is the same on every image: two identical networks). The
interval's degrees of freedom are the seed part's: a population wider by a source of variation
never gets a narrower interval (Satterthwaite's degrees of freedom, which grow with the added
part, made some narrower). tests/test_population.py simulates studies of known truth.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from harness.stats.inference import CONFIDENCE, NAN, Interval

TEST_SET_STRATA = 2
TEST_SET_BLOCKS = 20
IDENTICAL = 1e-9  # a contrast within rounding of a least-squares fit's weights is none


def image_part(
    per_seed: np.ndarray,
    floor: float = 0.0,
    blocks: int = TEST_SET_BLOCKS,
    strata: int = TEST_SET_STRATA,
) -> float:
    """The test-image part of the variance of mean(per_seed), per_seed[s, i] a seed's contrast on
    test image i: the larger of the block and the image moment estimates and `floor` (the pooled
    one, `pooled_image_floor`), at least 0, and 0 where each seed's contrast is the same on every
    image (to rounding). With one seed there is no seed × unit noise to take away and the whole
    spread of the unit means counts (an overstatement)."""
    d = np.asarray(per_seed, dtype=float)
    if d.ndim != 2 or d.shape[1] < 2 * strata:
        raise ValueError(f"need a [seeds, images] array, got shape {d.shape}")
    if np.allclose(d, d[:, :1], rtol=0.0, atol=IDENTICAL):
        return 0.0
    return max(
        _moment_estimate(_block_means(d, blocks, strata), strata),
        _moment_estimate(d, strata),
        floor,
        0.0,
    )


def cell_by_image_variance(correct: np.ndarray) -> float:
    """τ², the variance of the cell × image effect of correct[cell, seed, image] (a balanced
    design, every cell on the same seeds): (MS_cell×image − MS_cell×seed×image) / S, at least 0.
    The seed × image effects, which every cell of a seed shares and a contrast cancels, are
    apart from it. 0 with one seed or one cell."""
    y = np.asarray(correct, dtype=float)
    cells, seeds, images = y.shape
    if cells < 2 or seeds < 2:
        return 0.0
    grand = y.mean()
    by_cell_image, by_cell_seed = y.mean(axis=1), y.mean(axis=2, keepdims=True)
    by_seed_image = y.mean(axis=0, keepdims=True)
    by_cell, by_image = y.mean(axis=(1, 2)), y.mean(axis=(0, 1))
    by_seed = y.mean(axis=(0, 2), keepdims=True)
    interaction = by_cell_image - by_cell[:, None] - by_image[None, :] + grand
    ms_cell_image = seeds * float((interaction**2).sum()) / ((cells - 1) * (images - 1))
    residual = (
        y
        - by_cell_image[:, None, :]
        - by_cell_seed
        - by_seed_image
        + by_cell[:, None, None]
        + by_seed
        + by_image[None, None, :]
        - grand
    )
    df = (cells - 1) * (seeds - 1) * (images - 1)
    return max((ms_cell_image - float((residual**2).sum()) / df) / seeds, 0.0)


def pooled_image_floor(tau2: float, cell_weights: np.ndarray, images: int) -> float:
    """The image part of Σ_c w_c · accuracy_c (cell weights summing to 0) if every cell's image
    effects varied alike and apart, τ² Σ w_c² / N: the image part's floor in a factorial."""
    w = np.asarray(cell_weights, dtype=float)
    return tau2 * float(w @ w) / images


def contrast_by_seed(weights: np.ndarray, correct: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """D[s, i] = S · Σ_{runs r of seed s} w_r correct[r, i]: the linear estimate Σ_r w_r acc_r
    split seed by seed (its mean over seeds and images is the estimate), so that runs on one
    seed, which share its split, initialization and data order, are never taken as independent.
    Needs every seed to hold the same runs (a balanced design)."""
    weights, seeds = np.asarray(weights, dtype=float), np.asarray(seeds)
    distinct = np.unique(seeds)
    return np.stack(
        [len(distinct) * (weights[seeds == s] @ np.asarray(correct)[seeds == s]) for s in distinct]
    )


def seeds_and_images_interval(per_seed: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The mean of per_seed[s, i] (an accuracy, or a paired Δ's correctness differences) with
    its interval for new seeds and a new test set: the variance of the seed means over S, plus
    the image part, on the S − 1 degrees of freedom of the seed part."""
    d = np.asarray(per_seed, dtype=float)
    seeds = d.shape[0]
    estimate = float(d.mean()) if d.size else NAN
    if seeds < 2:
        return Interval(estimate, NAN, NAN)
    variance = float(d.mean(axis=1).var(ddof=1)) / seeds + image_part(d)
    half = float(stats.t.ppf((1 + confidence) / 2, seeds - 1)) * math.sqrt(variance)
    return Interval(estimate, estimate - half, estimate + half)


def paired_differences(variant_correct: np.ndarray, reference_correct: np.ndarray) -> np.ndarray:
    """Variant − reference correctness, image by image and seed by seed (rows paired by seed)."""
    a = np.asarray(variant_correct, dtype=float)
    b = np.asarray(reference_correct, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness arrays differ in shape: {a.shape} vs {b.shape}")
    return a - b


def image_floor(variance: float, confidence: float = CONFIDENCE) -> float:
    """The half-width that an interval with this image part keeps however many seeds are
    trained (its seed part and its t quantile's excess vanish): a difference verdict needs
    |Δ| > floor, an equivalence verdict |Δ| + floor < margin, for new test sets of this size."""
    return float(stats.norm.ppf((1 + confidence) / 2) * math.sqrt(max(variance, 0.0)))


def _block_means(d: np.ndarray, blocks: int, strata: int) -> np.ndarray:
    """d[seeds, images] averaged over `blocks` runs of consecutive images, stratum by stratum
    (the first blocks/strata blocks make the first stratum)."""
    if d.shape[1] % blocks or blocks % strata or blocks // strata < 2:
        raise ValueError(f"{d.shape[1]} images do not split into {blocks} blocks, {strata} strata")
    return d.reshape(d.shape[0], blocks, -1).mean(axis=2)


def _moment_estimate(y: np.ndarray, strata: int) -> float:
    """(MS_units − MS_residual) / (S · N) of y[seeds, units] (a two-way ANOVA, the units'
    differences taken within strata); with one seed, MS_units / N. May be negative."""
    seeds, units = y.shape
    unit_means = y.mean(axis=0)
    by_stratum = unit_means.reshape(strata, -1)
    within = by_stratum - by_stratum.mean(axis=1, keepdims=True)
    ms_units = seeds * float(np.einsum("ij,ij->", within, within)) / (units - strata)
    if seeds < 2:
        return ms_units / units
    residual = y - y.mean(axis=1, keepdims=True) - unit_means + y.mean()
    ms_residual = float(np.einsum("ij,ij->", residual, residual)) / ((seeds - 1) * (units - 1))
    return (ms_units - ms_residual) / (seeds * units)
