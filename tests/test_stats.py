"""Each statistic against an independent computation on fixed arrays."""

import itertools
import json
import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import inference, test_sets
from tests.helpers import PROJECT_ROOT

ACC = [0.9812, 0.9825, 0.9801, 0.9833, 0.9819]
REF = [0.9800, 0.9811, 0.9806, 0.9820, 0.9802]


def t_interval(x):
    x = np.asarray(x)
    half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_mean_ci_is_student_t():
    estimate, low, high = inference.mean_ci(ACC)
    assert estimate == pytest.approx(np.mean(ACC))
    assert (low, high) == pytest.approx(t_interval(ACC))


def test_single_value_and_zero_variance():
    one = inference.mean_ci([0.98])
    assert one.estimate == 0.98 and math.isnan(one.low) and math.isnan(one.high)
    assert inference.mean_ci([0.98, 0.98, 0.98]) == (0.98, 0.98, 0.98)
    assert math.isnan(inference.bootstrap_ci([0.98]).low)
    assert inference.bootstrap_ci([0.5] * inference.BCA_MIN_N) == (0.5, 0.5, 0.5)
    assert math.isnan(inference.paired_t_pvalue([0.9], [0.8]))
    assert math.isnan(inference.paired_t_pvalue([0.75, 0.5], [0.5, 0.25]))  # constant difference
    # identical runs: no difference at all, which is equivalence, not "n/a"
    assert inference.paired_t_pvalue([0.98, 0.97], [0.98, 0.97]) == 1.0
    assert inference.tost_pvalue([0.0, 0.0, 0.0], 0.001) == 0.0
    assert inference.tost_pvalue([0.002, 0.002], 0.001) == 1.0


def test_bootstrap_bca_is_seeded_and_sane():
    x = np.random.default_rng(3).normal(0.985, 0.001, inference.BCA_MIN_N)
    first, second = inference.bootstrap_ci(x), inference.bootstrap_ci(x)
    assert first == second
    assert min(x) <= first.low < np.mean(x) < first.high <= max(x)


def test_bootstrap_bca_is_withheld_below_its_minimum_n():
    few = inference.bootstrap_ci(ACC)  # 5 seeds: a "95%" BCa interval would cover ~83%
    assert few.estimate == pytest.approx(np.mean(ACC))
    assert math.isnan(few.low) and math.isnan(few.high)
    assert math.isnan(inference.bootstrap_ci([0.5] * (inference.BCA_MIN_N - 1)).low)


def test_paired_difference_and_tests():
    d = np.subtract(ACC, REF)
    estimate, low, high = inference.paired_difference_ci(ACC, REF)
    assert estimate == pytest.approx(d.mean()) and (low, high) == pytest.approx(t_interval(d))
    assert inference.paired_t_pvalue(ACC, REF) == pytest.approx(sps.ttest_rel(ACC, REF).pvalue)
    with pytest.raises(ValueError, match="differ in length"):
        inference.paired_difference_ci(ACC, REF[:3])


def test_tost_is_the_larger_of_two_shifted_one_sided_t_tests():
    d, margin = np.subtract(ACC, REF), 0.002
    se = d.std(ddof=1) / math.sqrt(len(d))
    lower = sps.t.sf((d.mean() + margin) / se, len(d) - 1)  # H0: Δ ≤ −margin
    upper = sps.t.cdf((d.mean() - margin) / se, len(d) - 1)  # H0: Δ ≥ +margin
    assert inference.tost_pvalue(d, margin) == pytest.approx(max(lower, upper))
    assert inference.tost_pvalue(d, margin) < 0.05 < inference.tost_pvalue(d, 0.0005)
    assert math.isnan(inference.tost_pvalue([0.001], margin))
    assert inference.tost_pvalue([0.001, 0.001, 0.001], margin) == 0.0  # no spread, inside


def test_minimum_detectable_effect_has_the_stated_power():
    sd, n = 0.002, 8
    mde = inference.minimum_detectable_effect(sd, n)
    # power from the noncentral t written the other way round: 1 − P(−c < T < c)
    c, nc = sps.t.ppf(0.975, n - 1), mde / sd * math.sqrt(n)
    assert 1 - (sps.nct.cdf(c, n - 1, nc) - sps.nct.cdf(-c, n - 1, nc)) == pytest.approx(0.8)
    # and by simulation: 20,000 paired t-tests on data whose true mean difference is the MDE
    x = np.random.default_rng(7).normal(mde, sd, (20_000, n))
    rejected = np.mean(sps.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05)
    assert abs(rejected - 0.8) < 3 * math.sqrt(0.8 * 0.2 / 20_000)
    # large n: the normal approximation (z_{α/2} + z_β)·sd/√n
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert inference.minimum_detectable_effect(sd, 2000) == pytest.approx(
        z * sd / math.sqrt(2000), 1e-3
    )
    assert inference.minimum_detectable_effect(sd, 2) > 10 * sd  # one degree of freedom: hopeless
    assert math.isnan(inference.minimum_detectable_effect(sd, 1))
    assert math.isnan(inference.minimum_detectable_effect(0.0, 5))


def test_seeds_needed_is_consistent_with_the_mde_and_monotone():
    sd, effect = 0.0021, 0.001
    n = inference.seeds_needed(sd, effect)
    assert (
        inference.minimum_detectable_effect(sd, n)
        <= effect
        < inference.minimum_detectable_effect(sd, n - 1)
    )
    assert inference.seeds_needed(sd, effect, alpha=0.05 / 7) > n  # a stricter level costs seeds
    needed = [inference.seeds_needed(sd, e) for e in (0.0005, 0.001, 0.002, 0.004)]
    assert needed == sorted(needed, reverse=True) and needed[-1] >= 2
    assert inference.seeds_needed(1.0, 0.01, max_n=100) == 101  # not reachable: max_n + 1
    assert inference.seeds_needed(0.0, 0.001) == 2
    with pytest.raises(ValueError):
        inference.seeds_needed(sd, 0.0)


def test_hedges_gz_uses_the_exact_gamma_correction():
    d = [0.1, 0.2, 0.4, 0.3, 0.25]
    m = len(d) - 1
    j = math.gamma(m / 2) / (math.sqrt(m / 2) * math.gamma((m - 1) / 2))
    assert inference.hedges_gz(d) == pytest.approx(j * np.mean(d) / np.std(d, ddof=1))
    assert j == pytest.approx(1 - 3 / (4 * m - 1), rel=3e-3)  # the usual approximation
    assert inference.hedges_gz([0.1, 0.3]) == 0.0  # J(1) = 0
    assert math.isnan(inference.hedges_gz([0.1])) and math.isnan(inference.hedges_gz([0.2, 0.2]))


# --- tests on counts of correct images ----------------------------------------------------------


def signed_rank_pvalue_by_enumeration(d):
    """All 2**m sign patterns of the midranks of the nonzero differences."""
    d = np.asarray([x for x in d if x != 0], dtype=float)
    ranks = sps.rankdata(np.abs(d))
    observed = abs(np.sum(np.sign(d) * ranks))
    signs = np.array(list(itertools.product((-1, 1), repeat=len(d))))
    return np.mean(np.abs(signs @ ranks) >= observed - 1e-9)


def test_wilcoxon_counts_by_hand_and_with_ties():
    # nonzero +1 −2 +3 +4 → ranks 1 2 3 4, T = 6; |T| ≥ 6 iff the negative ranks sum to ≤ 2
    # ({}, {1}, {2}) or ≥ 8 (their complements): 6 of 16 sign patterns
    assert inference.wilcoxon_counts_pvalue([1, -2, 3, 0, 4], [0] * 5) == pytest.approx(6 / 16)
    # counts whose accuracies scipy's default tested at 0.875 (floating point broke the tie of
    # the two |3|s); exact: differences 2 1 −3 3 0 0, midranks 2 1 3.5 3.5, T = 3, 12 of 16
    variant, reference = [9807, 9816, 9823, 9829, 9797, 9812], [9805, 9815, 9826, 9826, 9797, 9812]
    assert inference.wilcoxon_counts_pvalue(variant, reference) == pytest.approx(0.75)
    rng = np.random.default_rng(11)
    for _ in range(12):
        n = int(rng.integers(5, 11))
        reference = rng.integers(9790, 9840, n)
        variant = reference + rng.integers(-3, 4, n)
        if not np.any(variant != reference):
            continue
        expected = signed_rank_pvalue_by_enumeration(variant - reference)
        assert inference.wilcoxon_counts_pvalue(variant, reference) == pytest.approx(expected)


def test_wilcoxon_counts_is_exact_beyond_enumeration():
    """30 pairs (2**30 sign patterns), no ties or zeros: scipy's exact distribution agrees."""
    d = np.random.default_rng(5).permutation(np.arange(1, 31)) * np.where(
        np.random.default_rng(6).random(30) < 0.35, -1, 1
    )
    expected = sps.wilcoxon(d, method="exact").pvalue
    assert inference.wilcoxon_counts_pvalue(d, np.zeros_like(d)) == pytest.approx(expected)


def test_wilcoxon_counts_refuses_what_it_cannot_do():
    assert math.isnan(inference.wilcoxon_counts_pvalue([5, 6, 7, 8, 9], [5, 6, 7, 8, 9]))
    assert math.isnan(inference.wilcoxon_counts_pvalue([1, 2, 3, 4], [0, 0, 0, 0]))
    with pytest.raises(TypeError):
        inference.wilcoxon_counts_pvalue(ACC, REF)


def test_mcnemar_exact_by_hand():
    # 10 vs 3 discordant images: 2·P(Bin(13, ½) ≤ 3) = 2·(1 + 13 + 78 + 286) / 2**13
    assert inference.mcnemar_pvalue(10, 3) == pytest.approx(2 * 378 / 2**13)
    assert inference.mcnemar_pvalue(3, 10) == inference.mcnemar_pvalue(10, 3)
    assert inference.mcnemar_pvalue(4, 4) == 1.0 and inference.mcnemar_pvalue(0, 0) == 1.0
    assert inference.mcnemar_pvalue(0, 6) == pytest.approx(2 / 2**6)


def test_prediction_interval_formula_and_coverage():
    x = np.asarray(ACC)
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) * math.sqrt(1 + 1 / 5)
    estimate, low, high = inference.prediction_interval(ACC)
    assert (estimate, low, high) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half))
    assert high - low > np.subtract(*inference.mean_ci(ACC)[:0:-1]) * 2  # wider than the mean's
    # one new draw lands inside 95% of the time
    draws = np.random.default_rng(9).normal(size=(2000, 6))
    inside = [
        lo <= row[5] <= hi
        for row in draws
        for _, lo, hi in [inference.prediction_interval(row[:5])]
    ]
    assert abs(np.mean(inside) - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 2000)
    assert math.isnan(inference.prediction_interval([0.98]).low)


# --- intervals over seeds and test images -------------------------------------------------------


def anova_mean_squares(y):
    """Two-way crossed ANOVA without replication, by explicit sums."""
    s, n = y.shape
    g, rows, cols = y.mean(), y.mean(axis=1), y.mean(axis=0)
    ms_rows = n * sum((r - g) ** 2 for r in rows) / (s - 1)
    ms_cols = s * sum((c - g) ** 2 for c in cols) / (n - 1)
    ms_res = sum((y[i, j] - rows[i] - cols[j] + g) ** 2 for i in range(s) for j in range(n)) / (
        (s - 1) * (n - 1)
    )
    return ms_rows, ms_cols, ms_res


def logistic_population(rng, n_seeds, n_images, seed_sd=0.05, image_sd=3.0, offset=6.0):
    """Correctness of n_seeds fresh runs on n_images fresh images (logit model)."""
    logits = offset + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, image_sd, (1, n_images))
    return rng.random((n_seeds, n_images)) < 1 / (1 + np.exp(-logits)), logits


def population_accuracy(seed_sd=0.05, image_sd=3.0, offset=6.0):
    """E over seed and image effects of the logistic, by Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    logits = offset + seed_sd * nodes[:, None] + image_sd * nodes[None, :]
    return float(weights @ (1 / (1 + np.exp(-logits))) @ weights)


def independent_images(correct):
    """The crossed interval with every image its own unit and no strata."""
    return test_sets.accuracy_interval_seeds_and_images(correct, blocks=correct.shape[1], strata=1)


def test_seeds_and_images_interval_matches_anova_and_covers():
    rng = np.random.default_rng(21)
    p = rng.uniform(0.2, 0.9, (1, 60)) + np.array([[-0.1], [0.0], [0.05], [0.1]])
    y = (rng.random((4, 60)) < p).astype(float)
    ms_rows, ms_cols, ms_res = anova_mean_squares(y)
    assert ms_rows + ms_cols > 2 * ms_res  # the plain case, no floor
    variance = (ms_rows + ms_cols - ms_res) / y.size
    a, b, c = ms_rows / y.size, ms_cols / y.size, ms_res / y.size
    df = variance**2 / (a**2 / 3 + b**2 / 59 + c**2 / (3 * 59))  # Satterthwaite
    half = sps.t.ppf(0.975, df) * math.sqrt(variance)
    expected = (y.mean(), y.mean() - half, y.mean() + half)
    assert independent_images(y.astype(bool)) == pytest.approx(expected)
    # rows and columns carry nothing: the interaction's share alone, (S−1)(N−1) df
    checkerboard = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    half = sps.t.ppf(0.975, 3) * math.sqrt((2 / 3) / 8)
    assert independent_images(checkerboard) == pytest.approx((0.5, 0.5 - half, 0.5 + half))
    # coverage of the population accuracy by a direct simulation of new seeds and new images
    truth, n_studies = population_accuracy(), 400
    results = [independent_images(logistic_population(rng, 5, 2000)[0]) for _ in range(n_studies)]
    covered = np.mean([r.low <= truth <= r.high for r in results])
    assert abs(covered - 0.95) < 3 * math.sqrt(0.95 * 0.05 / n_studies)
    # the seeds-only t interval on the same data misses the test set's own noise
    seeds_only = np.mean(
        [
            lo <= truth <= hi
            for _ in range(n_studies)
            for _, lo, hi in [inference.mean_ci(logistic_population(rng, 5, 2000)[0].mean(axis=1))]
        ]
    )
    assert seeds_only < 0.85


def test_paired_seeds_and_images_interval():
    rng = np.random.default_rng(22)
    delta, n_studies = 0.4, 300  # the variant's logit offset
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def accuracy(offset, seed_sd):
        logits = offset + seed_sd * nodes[:, None] + 1.5 * nodes[None, :]
        return float(weights @ (1 / (1 + np.exp(-logits))) @ weights)

    truth = accuracy(4.5 + delta, math.hypot(0.08, 0.05)) - accuracy(4.5, 0.08)
    covered = []
    for _ in range(n_studies):
        seeds = rng.normal(0, 0.08, (5, 1))
        images = rng.normal(0, 1.5, (1, 2000))
        variant_logit = 4.5 + delta + seeds + rng.normal(0, 0.05, (5, 1)) + images
        reference = rng.random((5, 2000)) < 1 / (1 + np.exp(-(4.5 + seeds + images)))
        variant = rng.random((5, 2000)) < 1 / (1 + np.exp(-variant_logit))
        interval = test_sets.paired_difference_interval_seeds_and_images(
            variant, reference, blocks=2000, strata=1
        )
        assert interval.estimate == pytest.approx(variant.mean() - reference.mean())
        covered.append(interval.low <= truth <= interval.high)
    assert abs(np.mean(covered) - 0.95) < 3 * math.sqrt(0.95 * 0.05 / n_studies)
    with pytest.raises(ValueError, match="differ in shape"):
        test_sets.paired_difference_interval_seeds_and_images(variant, reference[:4])


def test_seeds_and_images_interval_is_fast_and_degenerates_cleanly():
    correct = np.random.default_rng(1).random((30, 10_000)) < 0.985
    start = time.perf_counter()
    test_sets.accuracy_interval_seeds_and_images(correct)  # 20 blocks of 500, two halves
    assert time.perf_counter() - start < 1.0
    one = test_sets.accuracy_interval_seeds_and_images(correct[:1])
    assert math.isnan(one.low) and one.estimate == pytest.approx(correct[0].mean())
    assert independent_images(np.ones((3, 5), bool)) == (1.0, 1.0, 1.0)


# --- what BCa's "95%" is worth ------------------------------------------------------------------


def test_bca_coverage_shortfall_and_minimum_n():
    few = inference.bca_coverage(5, n_studies=2000, seed=1)
    enough = inference.bca_coverage(inference.BCA_MIN_N, n_studies=2000, seed=2)
    se = math.sqrt(0.93 * 0.07 / 2000)
    print(f"BCa coverage: n=5 {few:.3f}, n={inference.BCA_MIN_N} {enough:.3f} (MC SE ~{se:.3f})")
    # theory for x̄ ± z·sd_plugin at n = 5: P(|t_4| ≤ 1.96·√(4/5)) = 0.846
    assert few < 0.90 and abs(few - 0.846) < 0.03
    assert enough >= 0.93 - 2 * se


def test_sd_upper_bound_covers_the_true_sd_at_its_confidence():
    draws = np.random.default_rng(11).normal(0.0, 1.0, size=(4000, 5))
    bounds = [inference.sd_upper_bound(float(np.std(row, ddof=1)), 5) for row in draws]
    covered = np.mean([bound >= 1.0 for bound in bounds])
    assert abs(covered - 0.8) < 3 * math.sqrt(0.8 * 0.2 / 4000)
    assert math.isnan(inference.sd_upper_bound(0.1, 1))


# --- new seeds and new test sets, resampled from stored predictions -------------------------------


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
def test_new_seeds_and_test_sets_are_covered_under_the_block_model(n_seeds):
    """The population: gpu30's 30 seeds and its test set's 20 blocks of 500 images (10 per
    half). A simulated study draws n seeds (with replacement, paired across the two arms) and a
    new test set of 10 blocks from each half (with replacement), as the interval assumes. Its
    95% intervals must cover the population's reference accuracy and no_batchnorm's Δ in at
    least 93% of studies; the seeds-only t interval, which speaks for this test set alone, is
    printed beside them."""
    blocks = test_sets.TEST_SET_BLOCKS
    reference = stored_correctness("reference").reshape(30, blocks, -1).mean(axis=2)
    variant = stored_correctness("no_batchnorm").reshape(30, blocks, -1).mean(axis=2)
    truth = {"accuracy": reference.mean(), "Δ": (variant - reference).mean()}
    rng, n_studies = np.random.default_rng(n_seeds), 2000
    covered = {"accuracy": [], "Δ": [], "Δ, seeds only": []}
    half = blocks // 2
    for _ in range(n_studies):
        seeds = rng.integers(0, 30, n_seeds)
        drawn = np.concatenate([rng.integers(0, half, half), rng.integers(half, blocks, half)])
        ref, var = reference[np.ix_(seeds, drawn)], variant[np.ix_(seeds, drawn)]
        # block means stand for the images: one "image" per block, the strata as assumed
        a = test_sets._crossed_mean_interval(ref, 0.95, strata=2)
        d = test_sets._crossed_mean_interval(var - ref, 0.95, strata=2)
        t = inference.mean_ci(list((var - ref).mean(axis=1)))
        covered["accuracy"].append(a.low <= truth["accuracy"] <= a.high)
        covered["Δ"].append(d.low <= truth["Δ"] <= d.high)
        covered["Δ, seeds only"].append(t.low <= truth["Δ"] <= t.high)
    rates = {key: float(np.mean(value)) for key, value in covered.items()}
    se = {key: math.sqrt(rate * (1 - rate) / n_studies) for key, rate in rates.items()}
    for key, rate in rates.items():
        print(f"n = {n_seeds}, {key}: coverage {rate:.3f} ± {se[key]:.3f}, {n_studies} studies")
    assert rates["accuracy"] >= 0.93 and rates["Δ"] >= 0.93


def test_test_set_floor_is_the_test_image_part_alone():
    rng = np.random.default_rng(3)
    reference = np.repeat(rng.random((1, 400)) < 0.9, 6, axis=0)
    # the variant differs from the reference on the same images in every seed: no seed noise
    flipped = np.zeros(400, dtype=bool)
    flipped[rng.choice(400, 40, replace=False)] = True
    variant = reference ^ flipped
    blocks = (variant.astype(float) - reference).reshape(6, 20, 20).mean(axis=2)[0]
    halves = blocks.reshape(2, 10)
    within = ((halves - halves.mean(axis=1, keepdims=True)) ** 2).sum() / 18
    expected = sps.norm.ppf(0.975) * math.sqrt(within / 20)
    assert test_sets.test_set_floor(variant, reference) == pytest.approx(expected)
    # seed noise alone (every image alike within a seed): no floor
    seed_only = np.repeat(rng.random((6, 1)) < 0.5, 400, axis=1)
    assert test_sets.test_set_floor(seed_only, np.zeros_like(seed_only)) == pytest.approx(0.0)
