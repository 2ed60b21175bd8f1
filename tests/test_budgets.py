"""The budget statistics on hand-made and simulated data: which epoch a k-epoch run chooses,
where a verdict settles, when a run first reaches a target (interval- and right-censored), and
the Weibull time ratio recovering a known one."""

import numpy as np
import pandas as pd
import pytest

from harness import UserError
from harness.stats.budgets import check_budgets, declared_budgets, selected_epochs, settled_from
from harness.stats.time_to_target import (
    TimesToTarget,
    median_time,
    reached_share,
    time_ratios,
    times_to_target,
)


def test_each_budget_chooses_the_first_strictly_better_epoch():
    val = np.array([
        [0.90, 0.95, 0.95, 0.94, 0.96],  # a tie keeps the earlier epoch
        [0.97, 0.96, 0.96, 0.96, 0.96],  # never improves: epoch 1 at every budget
    ])  # fmt: skip
    assert selected_epochs(val).tolist() == [[0, 1, 1, 1, 4], [0, 0, 0, 0, 0]]


def test_declared_budgets_keep_those_below_the_full_one_and_add_it():
    assert declared_budgets(15) == (5, 10, 15)
    assert declared_budgets(8, (3, 8, 20)) == (3, 8)
    assert declared_budgets(2) == (2,)
    for bad in [(), (0,), (2.5,)]:
        with pytest.raises(UserError, match="epochs ≥ 1"):
            check_budgets(bad)


def test_a_verdict_settles_where_it_stops_changing():
    assert settled_from(["inconclusive", "worse", "worse", "worse"]) == 2
    assert settled_from(["worse", "worse"]) == 1
    assert settled_from(["worse"]) == 1
    assert settled_from(["worse", "worse", "inconclusive"]) is None  # still moving at E


def test_time_to_target_is_the_epoch_interval_it_was_reached_in_and_misses_are_censored():
    val = np.array([
        [0.90, 0.97, 0.99, np.nan],  # reached at epoch 2: in (1, 2]; a 3-epoch run
        [0.98, 0.99, 0.99, 0.99],    # at once: (0, 1]
        [0.90, 0.91, 0.92, 0.93],    # never in its 4 epochs: right-censored at 4
    ])  # fmt: skip
    epochs = np.array([[1, 2, 3, np.nan], [1, 2, 3, 4], [1, 2, 3, 4]], dtype=float)
    times = times_to_target(val, epochs, 0.97)
    assert times.lower.tolist() == [1, 0, 4] and times.upper.tolist() == [2, 1, np.inf]
    seconds = np.cumsum(np.full((3, 4), 2.5), axis=1)  # the same on a clock of 2.5 s an epoch
    assert times_to_target(val, seconds, 0.97).upper.tolist() == [5.0, 2.5, np.inf]


def test_kaplan_meier_keeps_the_runs_that_never_reach_the_target():
    times = TimesToTarget(np.array([1.0, 2, 3, 10, 10]), np.array([2.0, 3, 4, np.inf, np.inf]))
    median, low, high = median_time(times)
    assert median == 4 and low <= median <= high  # 3 of 5 reached it: the median is the 3rd
    assert reached_share(times, np.array([1.0, 2, 3, 4, 10])).round(2).tolist() == [
        0, 0.2, 0.4, 0.6, 0.6,
    ]  # fmt: skip
    never = TimesToTarget(np.array([10.0, 10]), np.array([np.inf, np.inf]))
    assert median_time(never)[0] == np.inf


def _weibull_runs(scales: list[float], runs: int, epochs: int, rng) -> TimesToTarget:
    """Runs whose times to the target are Weibull (shape 4) with each arm's scale, seen at the
    end of each epoch as training sees them, those past the last epoch censored."""
    truth = np.concatenate([scale * rng.weibull(4.0, runs) for scale in scales])
    steps = np.arange(1, epochs + 1, dtype=float)
    val = np.where(steps[None, :] >= truth[:, None], 1.0, 0.0)
    return times_to_target(val, np.tile(steps, (len(truth), 1)), 1.0)


def test_the_weibull_time_ratio_recovers_a_known_one_with_censored_runs():
    rng = np.random.default_rng(0)
    times = _weibull_runs([5.0, 10.0], runs=40, epochs=11, rng=rng)  # some slow runs censored
    assert np.isinf(times.upper).any()
    change = pd.DataFrame({"slower": np.repeat([0, 1], 40)})
    ratio = time_ratios(times, change)["slower"]
    assert ratio.low < 2.0 < ratio.high and ratio.low > 1.0  # the truth, and not "no change"
    coded = pd.DataFrame({"slower": np.repeat([-1, 1], 40)})  # ±1 coding, scale 2: the same
    same = time_ratios(times, coded, scale=2.0)["slower"].ratio
    assert same == pytest.approx(ratio.ratio, rel=1e-4)


def test_no_ratio_where_one_side_never_reaches_the_target():
    rng = np.random.default_rng(1)
    times = _weibull_runs([5.0, 100.0], runs=10, epochs=12, rng=rng)  # the slow arm never does
    assert np.isinf(times.upper[10:]).all()
    ratio = time_ratios(times, pd.DataFrame({"slower": np.repeat([0, 1], 10)}))["slower"]
    assert np.isnan(ratio.ratio) and np.isnan(ratio.low)


def test_one_model_for_several_arms_with_seed_blocks_recovers_each_arms_ratio():
    """As budget_analysis.target_ratios fits the one-at-a-time arms: an indicator per arm
    against the reference, and the seed as a block (here each seed a 1.3x slower start)."""
    rng = np.random.default_rng(2)
    seeds = np.tile(np.repeat(np.arange(4), 10), 3)
    arm = np.repeat([-1, 0, 1], 40)  # the reference, an arm twice as slow, one as fast
    truth = np.array([5.0, 10.0, 5.0])[arm + 1] * 1.3**seeds * rng.weibull(4.0, 120)
    steps = np.arange(1, 41, dtype=float)
    val = np.where(steps[None, :] >= truth[:, None], 1.0, 0.0)
    times = times_to_target(val, np.tile(steps, (120, 1)), 1.0)
    covariates = pd.DataFrame({f"arm{i}": (arm == i).astype(int) for i in (0, 1)}).join(
        pd.get_dummies(pd.Series(seeds), prefix="seed", drop_first=True).astype(int)
    )
    ratios = time_ratios(times, covariates)
    assert ratios["arm0"].low < 2.0 < ratios["arm0"].high and ratios["arm0"].low > 1.2
    assert ratios["arm1"].low < 1.0 < ratios["arm1"].high


def test_no_ratio_from_no_more_runs_than_the_models_parameters():
    """Two runs a side and a seed block: four runs for four parameters (the change, the block,
    the intercept, the shape), a saturated fit whose standard errors say nothing (fitted, it
    gives 1.21 [0.43, 3.42]: a small study's seconds to a target); one run more a side, and
    the model answers."""
    times = TimesToTarget(np.array([0, 2.7, 2.4, 1.4]), np.array([1.8, 5.1, 4.5, 2.8]))
    covariates = pd.DataFrame({"slower": [0, 0, 1, 1], "seed_1": [0, 1, 0, 1]})
    assert all(np.isnan(ratio.ratio) for ratio in time_ratios(times, covariates).values())
    upper = np.array([4.0, 5, 2, 2, 7, 10])  # Weibull draws, scales 4 and 8, seen each epoch
    ratio = time_ratios(
        TimesToTarget(upper - 1, upper), pd.DataFrame({"slower": [0, 0, 0, 1, 1, 1]})
    )
    assert ratio["slower"].low < 2.0 < ratio["slower"].high
