"""Intervals for new seeds and new test sets (harness.stats.population), and simulated studies of
known truth for every interval a verdict is read off: the factorial's (main effects, simple
effects, interactions; 2 and 4 seeds per cell) and the one-at-a-time comparisons' (2, 4 and 10
seeds). The rates printed here are the README's."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report.comparisons import paired_effect
from harness.stats import factorial_model, inference, population
from harness.stats.verdicts import family_confidence
from tests.helpers import PROJECT_ROOT
from tests.simulations import (
    CELL_MEANS,
    FACTORS,
    simulated_study,
    true_effects,
    wrong_verdict,
)


def two_way_mean_squares(y, strata):
    """MS_units (within strata) and MS_residual of y[seeds, units], by explicit sums."""
    s, n = y.shape
    g, rows, cols = y.mean(), y.mean(axis=1), y.mean(axis=0)
    halves = cols.reshape(strata, -1)
    ms_units = s * ((halves - halves.mean(axis=1, keepdims=True)) ** 2).sum() / (n - strata)
    residual = y - rows[:, None] - cols[None, :] + g
    return ms_units, (residual**2).sum() / ((s - 1) * (n - 1))


def test_the_image_part_is_the_larger_of_the_block_and_the_image_moment_estimates():
    rng = np.random.default_rng(5)
    d = rng.normal(0, 1, (3, 400)) + rng.normal(0, 0.5, (1, 400))  # an effect varying by image
    blocks = d.reshape(3, 20, 20).mean(axis=2)
    block = np.subtract(*two_way_mean_squares(blocks, 2)) / (3 * 20)
    image = np.subtract(*two_way_mean_squares(d, 2)) / (3 * 400)
    assert population.image_part(d) == pytest.approx(max(block, image, 0.0))
    # an effect that varies image by image but averages out within every block: the block
    # estimate sees nothing, the image one sees it, and the larger is taken
    alternating = rng.normal(0, 0.2, (3, 400)) + np.tile([1.0, -1.0], 200)
    blocks = alternating.reshape(3, 20, 20).mean(axis=2)
    block = np.subtract(*two_way_mean_squares(blocks, 2)) / (3 * 20)
    image = np.subtract(*two_way_mean_squares(alternating, 2)) / (3 * 400)
    assert image > max(block, 0.0) and population.image_part(alternating) == pytest.approx(image)
    clustered = d + np.repeat(rng.normal(0, 0.5, (1, 20)), 20, axis=1)  # blocks alike within
    assert population.image_part(clustered) > population.image_part(d)
    assert population.image_part(np.zeros((3, 400))) == 0.0  # two identical networks


def test_a_wider_population_never_gets_a_narrower_interval():
    rng = np.random.default_rng(9)
    for seeds in (2, 3, 4, 10):
        for _ in range(50):
            d = rng.random((seeds, 400)) < rng.uniform(0.5, 1, (seeds, 1))
            wider = population.seeds_and_images_interval(d.astype(float))
            this_set = inference.mean_ci(d.mean(axis=1))
            assert wider.low <= this_set.low + 1e-15 and wider.high >= this_set.high - 1e-15
            variance = d.mean(axis=1).var(ddof=1) / seeds + population.image_part(d)
            half = sps.t.ppf(0.975, seeds - 1) * math.sqrt(variance)
            assert wider.high - wider.estimate == pytest.approx(half)


def logistic_study(rng, n_seeds, n_images, offset=4.5, image_sd=1.5, seed_sd=0.08, delta=0.0):
    """Correctness of n_seeds fresh runs (a variant shifted by delta in logit, with its own
    extra seed noise) and of the reference on n_images fresh images (a logit model)."""
    seeds = rng.normal(0, seed_sd, (n_seeds, 1))
    images = rng.normal(0, image_sd, (1, n_images))
    reference = rng.random((n_seeds, n_images)) < 1 / (1 + np.exp(-(offset + seeds + images)))
    logit = offset + delta + seeds + rng.normal(0, 0.05, (n_seeds, 1)) + images
    return rng.random((n_seeds, n_images)) < 1 / (1 + np.exp(-logit)), reference


def logistic_accuracy(offset, seed_sd, image_sd=1.5):
    """E over seed and image effects of the logistic, by Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    logits = offset + seed_sd * nodes[:, None] + image_sd * nodes[None, :]
    return float(weights @ (1 / (1 + np.exp(-logits))) @ weights)


def test_accuracy_and_paired_intervals_cover_under_a_logistic_model_of_independent_images():
    rng, n_studies, delta = np.random.default_rng(22), 300, 0.4
    truth_ref = logistic_accuracy(4.5, 0.08)
    truth_delta = logistic_accuracy(4.5 + delta, math.hypot(0.08, 0.05)) - truth_ref
    covered = {"accuracy": [], "Δ": [], "accuracy, seeds only": []}
    for _ in range(n_studies):
        variant, reference = logistic_study(rng, 5, 2000, delta=delta)
        a = population.seeds_and_images_interval(reference.astype(float))
        d = population.seeds_and_images_interval(population.paired_differences(variant, reference))
        t = inference.mean_ci(reference.mean(axis=1))
        covered["accuracy"].append(a.low <= truth_ref <= a.high)
        covered["Δ"].append(d.low <= truth_delta <= d.high)
        covered["accuracy, seeds only"].append(t.low <= truth_ref <= t.high)
    rates = {key: float(np.mean(value)) for key, value in covered.items()}
    print(f"logistic model, 5 seeds, {n_studies} studies: {rates}")
    assert rates["accuracy"] >= 0.93 and rates["Δ"] >= 0.93
    assert rates["accuracy, seeds only"] < 0.93  # this test set's interval misses new ones


def stored_correctness(label):
    """[seeds, 10,000 test images] of one arm of the committed 30-seed GPU study."""
    runs = sorted(
        (
            record
            for path in (PROJECT_ROOT / "reports" / "gpu30" / "data" / "runs").glob("*.json")
            for record in [json.loads(path.read_text())]
            if record["label"] == label and record["status"] == "ok"
        ),
        key=lambda record: record["seed"],
    )
    correct = np.ones((len(runs), 10_000), dtype=bool)
    for row, record in enumerate(runs):
        correct[row, record["test_misclassified"]] = False
    return correct


@pytest.mark.parametrize("n_seeds", [5, 30])
def test_new_seeds_and_test_sets_are_covered_when_resampled_from_stored_predictions(n_seeds):
    """The population: gpu30's 30 seeds and its test set's 20 blocks of 500 images (10 per
    half). A simulated study draws n seeds (with replacement, paired across the two arms) and a
    new test set of 10 blocks from each half (with replacement), as the interval assumes. Its
    95% intervals must cover the population's reference accuracy and no_batchnorm's Δ in at
    least 93% of studies; the seeds-only t interval, which speaks for this test set alone, is
    printed beside them."""
    reference = stored_correctness("reference").reshape(30, 20, 500)
    variant = stored_correctness("no_batchnorm").reshape(30, 20, 500)
    truth = {"accuracy": reference.mean(), "Δ": variant.mean() - reference.mean()}
    rng, n_studies = np.random.default_rng(n_seeds), 400
    covered = {"accuracy": [], "Δ": [], "Δ, seeds only": []}
    for _ in range(n_studies):
        seeds = rng.integers(0, 30, n_seeds)
        drawn = np.concatenate([rng.integers(0, 10, 10), rng.integers(10, 20, 10)])
        ref = reference[np.ix_(seeds, drawn)].reshape(n_seeds, -1).astype(float)
        var = variant[np.ix_(seeds, drawn)].reshape(n_seeds, -1).astype(float)
        a = population.seeds_and_images_interval(ref)
        d = population.seeds_and_images_interval(var - ref)
        t = inference.mean_ci(list((var - ref).mean(axis=1)))
        covered["accuracy"].append(a.low <= truth["accuracy"] <= a.high)
        covered["Δ"].append(d.low <= truth["Δ"] <= d.high)
        covered["Δ, seeds only"].append(t.low <= truth["Δ"] <= t.high)
    rates = {key: float(np.mean(value)) for key, value in covered.items()}
    print(f"gpu30 resampled, n = {n_seeds}, {n_studies} studies: {rates}")
    assert rates["accuracy"] >= 0.93 and rates["Δ"] >= 0.93


def test_the_image_floor_is_the_image_part_alone_and_zero_only_for_identical_networks():
    rng = np.random.default_rng(3)
    reference = np.repeat(rng.random((1, 400)) < 0.9, 6, axis=0)
    flipped = np.zeros(400, dtype=bool)
    flipped[rng.choice(400, 40, replace=False)] = True
    variant = reference ^ flipped  # differs on the same images in every seed: no seed noise
    d = population.paired_differences(variant, reference)
    floor = population.image_floor(population.image_part(d))
    assert floor == pytest.approx(sps.norm.ppf(0.975) * math.sqrt(population.image_part(d)))
    assert floor > 0
    same = population.paired_differences(reference, reference)
    assert population.image_floor(population.image_part(same)) == 0.0


def test_the_cell_by_image_variance_recovers_its_truth_apart_from_each_seeds_own_images():
    """correct[cell, seed, image] = cell + image + cell × image (sd 0.3) + seed × image (sd 0.5,
    shared by every cell of a seed) + noise (sd 1): τ² ≈ 0.09, the seed × image part apart."""
    rng = np.random.default_rng(12)
    cells, seeds, images = 8, 3, 4_000
    y = (
        rng.normal(0, 1, (cells, 1, 1))
        + rng.normal(0, 1, (1, 1, images))
        + rng.normal(0, 0.3, (cells, 1, images))
        + rng.normal(0, 0.5, (1, seeds, images))
        + rng.normal(0, 1, (cells, seeds, images))
    )
    assert population.cell_by_image_variance(y) == pytest.approx(0.09, rel=0.15)
    alike = np.broadcast_to(y[:1], y.shape)  # every cell the same network
    assert population.cell_by_image_variance(alike) == pytest.approx(0.0, abs=1e-20)
    assert population.cell_by_image_variance(y[:, :1]) == 0.0  # one seed: no error to take away


def test_a_factorials_image_parts_are_0_only_for_contrasts_of_identical_networks():
    """A 2 × 2 on 2 seeds where factor b changes nothing (its level's runs are copies): every
    effect of b has image part 0, a's are at least the pooled floor though their own moment
    estimates may fall to 0."""
    rng = np.random.default_rng(4)
    images = 2_000
    hard = rng.random(images) < 0.05
    rows, correct = [], []
    for a in (-1, 1):
        for seed in (0, 1):
            run = ~hard & (rng.random(images) > 0.01 * (a + 2))
            for b in (-1, 1):
                rows.append({"a": a, "b": b, "cell": f"{a}{b}", "seed": seed})
                correct.append(run)
    correct = np.array(correct, dtype=float)
    runs = pd.DataFrame(rows).assign(accuracy=correct.mean(axis=1))
    runs["accuracy"] += rng.normal(0, 1e-4, len(runs))  # a residual for the model to fit
    table = factorial_model.effect_table(runs, ["a", "b"], 0.001, correct).set_index("effect")
    assert (table.loc[["b", "a × b"], "se_images"] == 0).all()
    tau2 = factorial_model._cell_by_image_variance(runs, correct)
    floor = population.pooled_image_floor(tau2, np.array([0.5, 0.5, -0.5, -0.5]), images)
    assert tau2 > 0 and (table.loc["a", "se_images"] ** 2 >= floor * (1 - 1e-9)).all()


# --- simulated studies of known truth ------------------------------------------------------------

CELLS = [tuple(int(x) for x in f"{c:05b}") for c in range(32)]
STUDIES = 300  # per setting: Monte Carlo SE of a 95% coverage over 5 effects ≈ 0.6 pp


@pytest.mark.parametrize("seeds", [2, 4])
def test_the_factorials_intervals_cover_and_its_verdicts_keep_their_error_budget(seeds):
    """Truth fitted to the committed study, its interactions of three or more factors
    included; a new test set every study. Each kind of interval (main, simple at the
    reference, interaction) covers its effect in ≥ 93% at 95%, and some verdict of the family
    of 20 is wrong in ≤ 5% of studies."""
    truth = true_effects()
    rng = np.random.default_rng(100 + seeds)
    covered: dict[str, list[bool]] = {}
    family_wrong = []
    for _ in range(STUDIES):
        study = simulated_study(CELLS, seeds, rng)
        runs = pd.DataFrame(2 * study.levels - 1, columns=list(FACTORS)).assign(
            cell=[str(tuple(cell)) for cell in study.levels],
            seed=study.seeds,
            accuracy=study.accuracy,
        )
        table = factorial_model.effect_table(runs, list(FACTORS), 0.001, study.correct)
        wrong = False
        for row in table.itertuples():
            true = truth[(row.kind, row.effect)]
            covered.setdefault(row.kind, []).append(row.low_95 <= true <= row.high_95)
            wrong |= wrong_verdict(row.verdict, true)
        family_wrong.append(wrong)
    rates = {kind: float(np.mean(hits)) for kind, hits in covered.items()}
    any_wrong = float(np.mean(family_wrong))
    print(f"factorial, {seeds} seeds/cell, {STUDIES} studies: 95% coverage {rates}, some "
          f"verdict of the family wrong {any_wrong:.3f}")  # fmt: skip
    assert all(rate >= 0.93 for rate in rates.values()) and len(rates) == 3
    assert any_wrong <= 0.05


ARMS = {  # one-at-a-time arms: the cells one change away from the reference, and all three
    "no_batchnorm": (1, 0, 0, 0, 0),
    "no_dropout": (0, 1, 0, 0, 0),
    "no_weight_decay": (0, 0, 1, 0, 0),
    "no_scheduler": (0, 0, 0, 1, 0),
    "width_half": (0, 0, 0, 0, 1),
    "no_regularization": (1, 1, 1, 0, 0),
}


@pytest.mark.parametrize("seeds", [2, 4, 10])
def test_the_one_at_a_time_intervals_cover_and_keep_their_error_budget(seeds):
    reference = (0, 0, 0, 0, 0)
    rng = np.random.default_rng(200 + seeds)
    confidence = family_confidence(len(ARMS))
    covered, family_wrong = [], []
    for _ in range(STUDIES):
        study = simulated_study([reference, *ARMS.values()], seeds, rng)
        cells = [tuple(cell) for cell in study.levels]
        ref = [i for i, cell in enumerate(cells) if cell == reference]
        wrong = False
        for cell in ARMS.values():
            arm = [i for i, c in enumerate(cells) if c == cell]
            true = CELL_MEANS[cell] - CELL_MEANS[reference]
            args = (
                study.accuracy[arm],
                study.accuracy[ref],
                study.correct[arm],
                study.correct[ref],
            )
            at_95 = paired_effect(*args, 0.95, 0.001)["population_family_ci"]
            covered.append(at_95[0] <= true <= at_95[1])
            wrong |= wrong_verdict(paired_effect(*args, confidence, 0.001)["verdict"], true)
        family_wrong.append(wrong)
    rate, any_wrong = float(np.mean(covered)), float(np.mean(family_wrong))
    print(f"one at a time, {seeds} seeds, {STUDIES} studies: 95% coverage {rate:.3f}, some "
          f"verdict of the family of {len(ARMS)} wrong {any_wrong:.3f}")  # fmt: skip
    assert rate >= 0.93 and any_wrong <= 0.05


def test_intervals_degenerate_cleanly_and_refuse_mismatched_arrays():
    """One seed: an estimate and no interval; every image right on every seed: no spread at
    all; arrays that cannot be paired or are not [seeds, images]: a ValueError."""
    correct = np.random.default_rng(1).random((3, 1_000)) < 0.985
    one = population.seeds_and_images_interval(correct[:1])
    assert math.isnan(one.low) and math.isnan(one.high)
    assert one.estimate == pytest.approx(correct[0].mean())
    perfect = population.seeds_and_images_interval(np.ones((3, 1_000)))
    assert (perfect.estimate, perfect.low, perfect.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        population.paired_differences(correct, correct[:2])
    with pytest.raises(ValueError, match=r"\[seeds, images\]"):
        population.image_part(correct[0])
