"""Seeds until decided: the two-stage (Stein) design, its pieces by hand and its error rates by
simulation. Fast, no training."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import design, inference, verdicts
from tests.simulations import simulate_error_rates

# sd of the paired differences (percentage points) measured on 5 seeds of the committed study
SPREAD_PP = {
    "no_batchnorm": 0.21,
    "no_scheduler": 0.19,
    "no_regularization": 0.11,
    "width_half": 0.11,
    "no_weight_decay": 0.09,
    "no_dropout": 0.09,
    "width_double": 0.07,
}
SDS = {name: pp / 100 for name, pp in SPREAD_PP.items()}
ARMS = list(SDS)
DELTA = verdicts.MARGIN
N_STUDIES = 2000


def report(label, rates, key):
    line = (
        f"{label}: {key} = {rates[key]:.4f} ± {rates[key + '_se']:.4f} (SE), "
        f"{rates['n_studies']} studies, test={rates['test']}"
    )
    print(line)
    return rates[key], rates[key + "_se"]


def test_planned_seeds_by_hand():
    s0, m = 0.0007, 7
    q = sps.t.ppf(1 - 0.05 / (2 * m), 4) + sps.t.ppf(0.8, 4)
    expected = math.ceil((q * s0 / DELTA) ** 2)
    assert 5 < expected < 30
    assert design.planned_seeds(s0, family_size=m) == expected
    q1 = sps.t.ppf(0.975, 4) + sps.t.ppf(0.8, 4)
    assert design.planned_seeds(s0) == math.ceil((q1 * s0 / DELTA) ** 2) < expected
    assert design.planned_seeds(0.0021, family_size=m) == design.MAX_SEEDS  # capped
    assert design.planned_seeds(0.0001, family_size=m) == design.PILOT_SEEDS  # never below n0
    with pytest.raises(ValueError):
        design.planned_seeds(math.nan)


def test_stein_test_is_the_t_test_when_no_seeds_are_added():
    d = [0.0012, 0.0003, 0.0021, 0.0009, 0.0015]
    result = design.stein_test(d, n0=5, margin=DELTA)
    t = sps.ttest_1samp(d, 0.0)
    assert result.p_difference == pytest.approx(t.pvalue)
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert result.p_equivalence == pytest.approx(inference.tost_pvalue(d, DELTA))


def test_stein_test_uses_the_pilot_sd_and_its_degrees_of_freedom():
    d = np.random.default_rng(4).normal(0.0004, 0.001, 20)
    result = design.stein_test(d, n0=5, margin=DELTA)
    s0 = np.std(d[:5], ddof=1)
    se = s0 / math.sqrt(20)
    assert result.mean == pytest.approx(d.mean())
    assert result.p_difference == pytest.approx(2 * sps.t.sf(abs(d.mean()) / se, 4))
    lower = sps.t.sf((d.mean() + DELTA) / se, 4)
    upper = sps.t.cdf((d.mean() - DELTA) / se, 4)
    assert result.p_equivalence == pytest.approx(max(lower, upper))
    half = sps.t.ppf(0.975, 4) * se
    assert (result.ci_low, result.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert all(math.isnan(x) for x in design.stein_test(d[:4], n0=5)[1:])
    assert all(math.isnan(x) for x in design.stein_test([0.001] * 5 + [0.002], n0=5)[1:])


def test_stein_test_is_exact_under_the_null_one_study_at_a_time():
    """The scalar path (planned_seeds, stein_test), independent of the vectorized simulation."""
    rng, sd, rejected = np.random.default_rng(8), 0.0015, []
    for _ in range(1000):
        pilot = rng.normal(0.0, sd, 5)
        n = design.planned_seeds(np.std(pilot, ddof=1))
        d = np.concatenate([pilot, rng.normal(0.0, sd, n - 5)])
        rejected.append(design.stein_test(d).p_difference < 0.05)
    rate, se = np.mean(rejected), math.sqrt(0.05 * 0.95 / 1000)
    print(f"single arm, Δ = 0, Stein: rejection rate {rate:.3f} ± {se:.3f}, 1000 studies")
    assert abs(rate - 0.05) < 3 * se


def test_interval_verdict():
    within = verdicts.WITHIN
    assert verdicts.interval_verdict(0.0005, 0.003, DELTA) == "better"
    assert verdicts.interval_verdict(-0.003, -0.0005, DELTA) == "worse"
    assert verdicts.interval_verdict(-0.0009, -0.0001, DELTA) == "worse" + within
    assert verdicts.interval_verdict(0.0001, 0.0009, DELTA) == "better" + within
    assert verdicts.interval_verdict(-0.0009, 0.0009, DELTA) == "equivalent"
    assert verdicts.interval_verdict(-0.0011, 0.0009, DELTA) == "inconclusive"
    assert verdicts.interval_verdict(math.nan, math.nan, DELTA) == "inconclusive"
    assert verdicts.family_confidence(7) == pytest.approx(1 - 0.05 / 7)


def test_one_error_budget_covers_every_verdict_of_the_family():
    """4 arms exactly at ±δ, where equivalence would be wrong, and 3 at 0, where a difference
    would be: some verdict of the 7 is wrong in at most 5% of studies (Holm for the difference
    and the equivalence tests as two families: 6.6% here)."""
    deltas = {a: (DELTA * (-1) ** i if i < 4 else 0.0) for i, a in enumerate(ARMS)}
    rates = simulate_error_rates(deltas, SDS, n_studies=N_STUDIES, seed=6)
    rate, se = report("4 arms at |Δ| = δ, 3 at 0", rates, "any_wrong")
    assert rate <= 0.05 + 2 * se


def test_family_wise_error_is_at_most_alpha_when_nothing_differs():
    rates = simulate_error_rates({a: 0.0 for a in ARMS}, SDS, n_studies=N_STUDIES, seed=1)
    rate, se = report("all Δ = 0", rates, "any_difference")
    assert rate <= 0.05 + 2 * se


def test_naive_procedure_breaks_the_same_bound():
    """Ordinary t on all seeds after a pilot-chosen n: the inflation this design removes."""
    deltas = {a: 0.0 for a in ARMS}
    rates = simulate_error_rates(deltas, SDS, n_studies=N_STUDIES, seed=1, test="naive")
    rate, se = report("all Δ = 0", rates, "any_difference")
    assert rate > 0.05 + 2 * se


def test_equivalence_is_rarely_claimed_at_the_margin():
    # the four widest arms sit exactly on the margin, the three narrowest at 0: their easy
    # equivalence verdicts relax Holm's later steps, the hardest case for the arms at ±δ
    deltas = {a: (DELTA * (-1) ** i if i < 4 else 0.0) for i, a in enumerate(ARMS)}
    rates = simulate_error_rates(deltas, SDS, n_studies=N_STUDIES, seed=2)
    rate, se = report("4 arms at |Δ| = δ", rates, "false_equivalence")
    assert rate <= 0.05 + 2 * se
    rates = simulate_error_rates({a: DELTA for a in ARMS}, SDS, n_studies=N_STUDIES, seed=3)
    rate, se = report("7 arms at Δ = δ", rates, "false_equivalence")
    assert rate <= 0.05 + 2 * se


def test_most_studies_decide_an_effect_of_twice_the_margin():
    # the widest arm (sd 0.21 pp) is the hardest to decide; the others at Δ = 0
    deltas = {a: (2 * DELTA if a == "no_batchnorm" else 0.0) for a in ARMS}
    rates = simulate_error_rates(deltas, SDS, n_studies=N_STUDIES, seed=4)
    rate, se = report("no_batchnorm at Δ = 2δ", rates, "correct_at_twice_margin")
    report("no_batchnorm at Δ = 2δ", rates, "false_difference")
    print("mean seeds per arm:", {a: round(n, 1) for a, n in rates["mean_seeds"].items()})
    assert rate > 0.5
    assert rates["false_difference"] <= 0.05 + 2 * rates["false_difference_se"]
    deltas = {a: 2 * DELTA * (-1) ** i for i, a in enumerate(ARMS)}
    rates = simulate_error_rates(deltas, SDS, n_studies=N_STUDIES, seed=5)
    rate, se = report("all arms at |Δ| = 2δ", rates, "correct_at_twice_margin")
    assert rate > 0.85  # 0.90 with Holm's verdicts: one error budget costs a little power


def test_simulation_is_seeded():
    deltas = {a: 0.0 for a in ARMS}
    first = simulate_error_rates(deltas, SDS, n_studies=200, seed=9)
    assert first == simulate_error_rates(deltas, SDS, n_studies=200, seed=9)


def test_a_pooled_pilot_spends_fewer_seeds_where_the_spreads_are_alike():
    """The arms' paired sds over 30 seeds were alike (0.09-0.13 pp): one spread pooled over the
    7 pilots (28 degrees of freedom, not 4) plans fewer seeds at about the same error rates
    (5.5% ± 0.4% over 4,000 studies: a little above 5%, the noisiest arm's spread understated).
    Where the spreads differ threefold (the 5-seed spreads above) pooling understates the
    noisiest arms and the error rates break: not exact, hence not the default."""
    spreads = (0.13, 0.12, 0.11, 0.11, 0.10, 0.09, 0.09)
    alike = {a: pp / 100 for a, pp in zip(ARMS, spreads, strict=True)}
    nothing = {a: 0.0 for a in ARMS}
    own = simulate_error_rates(nothing, alike, n_studies=N_STUDIES, seed=7)
    pooled = simulate_error_rates(nothing, alike, n_studies=N_STUDIES, seed=7, pooled=True)
    for rates in (own, pooled):
        report("all Δ = 0, spreads 0.09-0.13 pp", rates, "any_wrong")
        print("  mean seeds per arm:", round(np.mean(list(rates["mean_seeds"].values())), 1))
    assert np.mean(list(pooled["mean_seeds"].values())) < np.mean(list(own["mean_seeds"].values()))
    assert pooled["any_wrong"] <= 0.05 + 3 * pooled["any_wrong_se"]
    unequal = simulate_error_rates(nothing, SDS, n_studies=N_STUDIES, seed=7, pooled=True)
    report("all Δ = 0, spreads 0.07-0.21 pp", unequal, "any_wrong")
    assert unequal["any_wrong"] > 0.05 + 3 * unequal["any_wrong_se"]


def test_pooled_sd_by_hand():
    sd, df = design.pooled_sd([[1.0, 3.0], [2.0, 2.0, 5.0]])
    assert df == 3 and sd == pytest.approx(math.sqrt((2 + 6) / 3))
    assert design.pooled_sd([[1.0]]) == (pytest.approx(math.nan, nan_ok=True), 0)


def test_stein_power_matches_a_simulation_of_the_test():
    rng, sd, n, df, studies = np.random.default_rng(12), 0.0012, 20, 4, 20_000
    mean = rng.normal(DELTA, sd / math.sqrt(n), studies)
    s0 = sd * np.sqrt(rng.chisquare(df, studies) / df)
    critical = sps.t.isf(0.05 / (2 * 7), df)
    simulated = np.mean(np.abs(mean / (s0 / math.sqrt(n))) > critical)
    power = design.stein_power(DELTA, sd, n, df, family_size=7)
    assert abs(power - simulated) < 3 * math.sqrt(power * (1 - power) / studies)
    assert design.stein_power(DELTA, sd, 60, df, family_size=7) > power  # more seeds, more power
