"""The expected best of n trials (Tang et al. 2020's unbiased estimator), against brute force."""

import itertools

import numpy as np
import pytest

from harness.stats.expected_max import expected_max, expected_max_curve


def test_expected_max_is_the_mean_best_over_every_subset_of_n():
    values = np.random.default_rng(1).random(9)
    for n in range(1, 10):
        brute = np.mean([max(subset) for subset in itertools.combinations(values, n)])
        assert expected_max(values, n) == pytest.approx(brute, rel=1e-12)


def test_expected_max_runs_from_the_mean_to_the_maximum_and_never_falls():
    values = np.random.default_rng(2).normal(0.98, 0.01, size=40)
    curve = expected_max_curve(values)
    assert curve["expected"].iloc[0] == pytest.approx(values.mean())
    assert curve["expected"].iloc[-1] == pytest.approx(values.max())
    assert (np.diff(curve["expected"]) >= -1e-15).all()
    inner = curve.iloc[:-1]  # at n = N the estimate is the maximum, the bootstrap's upper end
    assert ((inner["low"] <= inner["expected"]) & (inner["expected"] <= inner["high"])).all()


def test_expected_max_of_thousands_of_trials_does_not_overflow():
    values = np.random.default_rng(3).random(3000)
    assert 0.99 < expected_max(values, 1500) <= values.max()


def test_expected_max_works_along_an_axis_for_the_bootstrap():
    values = np.random.default_rng(4).random((5, 12))
    rows = [expected_max(row, 4) for row in values]
    assert expected_max(values, 4, axis=-1) == pytest.approx(rows)
    assert expected_max(values.T, 4, axis=0) == pytest.approx(rows)


def test_n_outside_one_to_the_number_of_trials_is_refused():
    with pytest.raises(ValueError, match="1..3"):
        expected_max(np.array([0.1, 0.2, 0.3]), 4)
