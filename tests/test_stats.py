"""Each statistic against an independent computation on fixed arrays."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness import stats

ACC = [0.9812, 0.9825, 0.9801, 0.9833, 0.9819]
REF = [0.9800, 0.9811, 0.9806, 0.9820, 0.9802]


def t_interval(x):
    x = np.asarray(x)
    half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_mean_ci_is_student_t():
    estimate, low, high = stats.mean_ci(ACC)
    assert estimate == pytest.approx(np.mean(ACC))
    assert (low, high) == pytest.approx(t_interval(ACC))


def test_single_value_and_zero_variance():
    one = stats.mean_ci([0.98])
    assert one.estimate == 0.98 and math.isnan(one.low) and math.isnan(one.high)
    assert stats.mean_ci([0.98, 0.98, 0.98]) == (0.98, 0.98, 0.98)
    assert math.isnan(stats.bootstrap_ci([0.98]).low)
    assert stats.bootstrap_ci([0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert math.isnan(stats.paired_t_pvalue([0.9], [0.8]))
    assert math.isnan(stats.paired_t_pvalue([0.75, 0.5], [0.5, 0.25]))  # constant difference
    assert math.isnan(stats.cohens_dz([0.75, 0.5], [0.5, 0.25]))


def test_bootstrap_bca_is_seeded_and_sane():
    first, second = stats.bootstrap_ci(ACC), stats.bootstrap_ci(ACC)
    assert first == second
    assert min(ACC) <= first.low < np.mean(ACC) < first.high <= max(ACC)


def test_paired_difference_and_tests():
    d = np.subtract(ACC, REF)
    estimate, low, high = stats.paired_difference_ci(ACC, REF)
    assert estimate == pytest.approx(d.mean()) and (low, high) == pytest.approx(t_interval(d))
    assert stats.paired_t_pvalue(ACC, REF) == pytest.approx(sps.ttest_rel(ACC, REF).pvalue)
    assert stats.cohens_dz(ACC, REF) == pytest.approx(d.mean() / d.std(ddof=1))
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_difference_ci(ACC, REF[:3])


def test_wilcoxon_exact_and_small_n():
    # six positive differences of distinct size: exact two-sided p = 2 / 2**6
    assert stats.wilcoxon_pvalue([1, 2, 3, 4, 5, 6.5], [0] * 6) == pytest.approx(2 / 64)
    assert math.isnan(stats.wilcoxon_pvalue([1, 2, 3], [0, 0, 0]))
    assert math.isnan(stats.wilcoxon_pvalue(ACC, ACC))


def test_holm_by_hand():
    adjusted = stats.holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_binomial_ci_is_wilson():
    k, n, z = 9816, 10000, sps.norm.ppf(0.975)
    p = k / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    estimate, low, high = stats.binomial_ci(k, n)
    assert estimate == p and (low, high) == pytest.approx((center - half, center + half))
