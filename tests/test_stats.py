"""Each statistic against an independent computation on fixed arrays."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import inference
from tests.simulations import bca_coverage

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


# --- what BCa's "95%" is worth ------------------------------------------------------------------


def test_bca_coverage_shortfall_and_minimum_n():
    few = bca_coverage(5, n_studies=2000, seed=1)
    enough = bca_coverage(inference.BCA_MIN_N, n_studies=2000, seed=2)
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
