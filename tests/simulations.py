"""Studies of known truth, simulated, for the tests that check what the statistics claim.

- `simulate_error_rates`: the one-at-a-time design with seeds until decided (Stein's), on normal
  paired differences;
- `bca_coverage`: what a nominal 95% BCa interval covers at n seeds;
- `FactorialTruth` and `simulated_study`: runs of a two-level factorial's cells, each with its
  correctness on every test image of a test set drawn anew for every study, from a truth fitted
  to the committed CPU study (reports/data of commit 83a844e, 32 cells × seeds 0, 1, 10, 11):
  its 32 cell means (so every interaction of three or more factors the data show is in the
  truth), its runs' spread, each main effect's variation over blocks of images and over single
  images, and the seed as a block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations, product
from typing import Literal

import numpy as np
from scipy import stats as sps

from harness.stats import design, inference
from harness.stats.verdicts import ALPHA, MARGIN, VERDICTS, WITHIN, family_confidence

FACTORS = ("batchnorm", "dropout", "weight_decay", "scheduler", "width")
# Cell means of the committed study (all four seeds), by the factors' levels, 0 = reference.
CELL_MEANS = dict(
    zip(
        product((0, 1), repeat=5),
        (
            0.98625, 0.98457, 0.98205, 0.98318, 0.98555, 0.98372, 0.98385, 0.98323,
            0.98628, 0.98497, 0.98180, 0.98223, 0.98565, 0.98473, 0.98220, 0.98160,
            0.98460, 0.98365, 0.98037, 0.97950, 0.98505, 0.98385, 0.98155, 0.98162,
            0.98485, 0.98300, 0.98150, 0.97940, 0.98465, 0.98285, 0.98075, 0.97810,
        ),
        strict=True,
    )
)  # fmt: skip
RUN_SD = {0: 0.00097, 1: 0.00104}  # a run's accuracy sd about its cell and seed, by BatchNorm
SEED_SD = 0.0005  # a seed's shift of every cell's accuracy (the seed block)
# Each main effect's per-image variation in the committed data (its image-level and its
# block-level moment estimates, all four seeds): sd of the per-image effect, and of its means
# over blocks of 500 images.
IMAGE_SD = {"batchnorm": 0.0269, "dropout": 0.0172, "weight_decay": 0.0100, "scheduler": 0.0142,
            "width": 0.0110}  # fmt: skip
BLOCK_SD = {"batchnorm": 0.00144, "dropout": 0.00134, "weight_decay": 0.00033, "scheduler": 0.00108,
            "width": 0.00061}  # fmt: skip
REAL_IMAGES, REAL_BLOCK = 10_000, 500


@dataclass(frozen=True)
class SimulatedStudy:
    levels: np.ndarray  # [runs, factors], 0 = reference level
    seeds: np.ndarray  # [runs]
    accuracy: np.ndarray  # [runs]
    correct: np.ndarray  # [runs, images], a real number per image (its mean is the accuracy)


def simulated_study(
    cells: list[tuple[int, ...]], seeds: int, rng: np.random.Generator, images: int = 2_000
) -> SimulatedStudy:
    """Every cell on seeds 0..seeds-1, on a test set of `images` images drawn anew (20 blocks,
    two halves). A run's correctness on image i is its cell's mean + its seed's shift + the
    image's effect for the cell (Σ_f ±g_f(i), g_f = a block part + an image part) + noise
    whose mean over the images has the runs' spread. Variances scale with the test set's size
    so that the test-image part of every effect is the committed study's."""
    block = images // 20
    scale = images / REAL_IMAGES
    block_of = np.arange(images) // block
    effects = np.zeros((len(FACTORS), images))
    for f, name in enumerate(FACTORS):
        # g_f is half the per-image main effect: its image and block parts from the sd's
        within = max(IMAGE_SD[name] ** 2 - BLOCK_SD[name] ** 2, 0.0) / (1 - 1 / REAL_BLOCK)
        between = max(BLOCK_SD[name] ** 2 - within / REAL_BLOCK, 0.0)
        effects[f] = 0.5 * (
            math.sqrt(between) * rng.standard_normal(20)[block_of]
            + math.sqrt(within * scale) * rng.standard_normal(images)
        )
    levels = np.array([cell for _ in range(seeds) for cell in cells])
    seed_of = np.repeat(np.arange(seeds), len(cells))
    coded = 2 * levels - 1
    means = np.array([CELL_MEANS[tuple(cell)] for cell in levels])
    shifts = SEED_SD * rng.standard_normal(seeds)[seed_of]
    noise_sd = np.array([RUN_SD[cell[0]] for cell in levels]) * math.sqrt(images)
    correct = (
        (means + shifts)[:, None]
        + coded @ effects
        + noise_sd[:, None] * rng.standard_normal((len(levels), images))
    )
    return SimulatedStudy(levels, seed_of, correct.mean(axis=1), correct)


def true_effects() -> dict[tuple[str, str], float]:
    """The population's main effects, two-factor interactions and simple effects at the
    reference, from the cell means (new seeds and new test sets average the rest away)."""
    y = np.array(list(CELL_MEANS.values()))
    coded = 2 * np.array(list(CELL_MEANS)) - 1
    effects = {}
    for f, name in enumerate(FACTORS):
        effects[("main effect", name)] = float(y @ coded[:, f]) * 2 / len(y)
    for (f, a), (g, b) in combinations(enumerate(FACTORS), 2):
        contrast = coded[:, f] * coded[:, g]
        effects[("interaction", f"{a} × {b}")] = float(y @ contrast) * 2 / len(y)
    reference = CELL_MEANS[(0,) * len(FACTORS)]
    for f, name in enumerate(FACTORS):
        changed = tuple(int(g == f) for g in range(len(FACTORS)))
        effects[("simple effect at the reference", name)] = CELL_MEANS[changed] - reference
    return effects


def wrong_verdict(verdict: str, truth: float, margin: float = MARGIN) -> bool:
    """A verdict the truth contradicts: a wrong sign, or equivalence (or a difference within the
    margin) where |Δ| ≥ margin."""
    direction = verdict.split(",")[0]
    wrong_sign = (direction == "better" and truth < 0) or (direction == "worse" and truth > 0)
    within = verdict == "equivalent" or verdict.endswith(WITHIN)
    return wrong_sign or (within and abs(truth) >= margin)


def bca_coverage(
    n: int, n_studies: int, seed: int, confidence: float = 0.95, n_resamples: int = 999
) -> float:
    """Share of simulated normal samples of size n whose BCa interval covers the true mean.

    Checks what bootstrap_ci's nominal confidence is worth at n seeds; the Monte Carlo standard
    error is sqrt(c(1 - c) / n_studies).
    """
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((n_studies, n))
    low, high = inference.bca_bounds(samples, confidence, n_resamples, rng)
    return float(np.mean((low < 0.0) & (high > 0.0)))


def simulate_error_rates(
    true_deltas: Mapping[str, float],
    sds: Mapping[str, float],
    n0: int = design.PILOT_SEEDS,
    max_seeds: int = design.MAX_SEEDS,
    margin: float = MARGIN,
    n_studies: int = 2000,
    seed: int = 0,
    alpha: float = ALPHA,
    power: float = inference.POWER,
    test: Literal["stein", "naive"] = "stein",
    pooled: bool = False,
) -> dict:
    """Monte Carlo of the whole two-stage design (pilot, planned seeds, verdicts read off the
    family intervals) on normal differences.

    test="naive" judges all n seeds with their own sd and n − 1 degrees of freedom instead (the
    procedure this design replaces). pooled: the seeds planned, and Stein's test run, from the
    arms' pilots pooled (design.pooled_sd), every arm getting the same n. Arms are independent
    here; Bonferroni holds under any dependence. Returns shares of studies with Monte Carlo
    standard errors (keys ending in _se):
      any_wrong: some verdict wrong (a difference where Δ = 0, a wrong sign, or equivalence,
        within the margin or not, where |Δ| ≥ margin): the one error budget, at most alpha;
      any_difference: some arm called better or worse (the family-wise error when all Δ = 0);
      false_difference: some arm with Δ = 0 called better/worse, or some arm given the wrong sign;
      false_equivalence: some arm with |Δ| ≥ margin called equivalent or a difference within
        the margin (NaN without such an arm);
      correct_at_twice_margin: mean share of the arms with |Δ| ≥ 2·margin called in the right
        direction (NaN without such an arm);
    and per arm the mean number of seeds and the share of each verdict.
    """
    names = list(true_deltas)
    delta = np.array([true_deltas[name] for name in names], dtype=float)
    sd = np.array([sds[name] for name in names], dtype=float)
    rng = np.random.default_rng(seed)
    shape = (n_studies, len(names), max_seeds)
    d = delta[None, :, None] + sd[None, :, None] * rng.standard_normal(shape)
    s0, df = d[..., :n0].std(axis=-1, ddof=1), n0 - 1
    if pooled:  # equal pilots: the pooled variance is the mean of the arms' variances
        s0 = np.repeat(np.sqrt((s0**2).mean(axis=-1, keepdims=True)), len(names), axis=-1)
        df = len(names) * (n0 - 1)
    n = design._planned_seeds(s0, n0, margin, max_seeds, alpha, power, len(names), df)
    used = np.arange(max_seeds) < n[..., None]
    mean = np.where(used, d, 0.0).sum(axis=-1) / n
    if test == "stein":
        spread = s0
    else:
        spread = np.sqrt(np.where(used, (d - mean[..., None]) ** 2, 0.0).sum(axis=-1) / (n - 1))
        df = n - 1
    half = sps.t.isf((1 - family_confidence(len(names), alpha)) / 2, df) * spread / np.sqrt(n)
    low, high = mean - half, mean + half
    better, worse = low > 0, high < 0
    difference = better | worse
    within = (-margin < low) & (high < margin)
    equivalent = within & ~difference

    null, tolerance = delta == 0, 1e-9 * margin
    at_margin, at_twice = (
        np.abs(delta) >= margin - tolerance,
        np.abs(delta) >= 2 * margin - tolerance,
    )
    wrong_sign = (better & (delta < 0)) | (worse & (delta > 0))
    right_sign = (better & (delta > 0)) | (worse & (delta < 0))
    false_within = within & at_margin  # equivalent, or a difference "within the margin"
    out: dict = {"n_studies": n_studies, "test": test + (", pooled" if pooled else "")}
    _share(out, "any_wrong", ((difference & null) | wrong_sign | false_within).any(axis=1))
    _share(out, "any_difference", difference.any(axis=1))
    _share(out, "false_difference", (difference & null).any(axis=1) | wrong_sign.any(axis=1))
    _share(out, "false_equivalence", false_within.any(axis=1) if at_margin.any() else None)
    _share(
        out,
        "correct_at_twice_margin",
        right_sign[:, at_twice].mean(axis=1) if at_twice.any() else None,
    )
    out["mean_seeds"] = {name: float(n[:, j].mean()) for j, name in enumerate(names)}
    calls = {
        "better": better & ~within,
        "worse": worse & ~within,
        "better" + WITHIN: better & within,
        "worse" + WITHIN: worse & within,
        "equivalent": equivalent,
        "inconclusive": ~(difference | equivalent),
    }
    out["verdicts"] = {
        name: {v: float(calls[v][:, j].mean()) for v in VERDICTS} for j, name in enumerate(names)
    }
    return out


def _share(out: dict, key: str, per_study: np.ndarray | None) -> None:
    """Mean over studies and its Monte Carlo standard error (studies are independent)."""
    if per_study is None:
        out[key], out[f"{key}_se"] = inference.NAN, inference.NAN
        return
    x = np.asarray(per_study, dtype=float)
    out[key], out[f"{key}_se"] = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
