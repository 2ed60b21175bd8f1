"""The factorial study: its spec, its cells in the plan, and the linear model's statistics, checked
against numpy's least squares and by simulation on synthetic cell data."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from harness import UserError
from harness.core.config import Config
from harness.core.store import RunConditions
from harness.stats import factorial_model as model
from harness.stats import population
from harness.stats.verdicts import MARGIN
from harness.study.factorial_design import Factorial, load_factorial, parse_factorial
from harness.study.plan import TUNED, Plan, as_replication
from harness.study.settings import StudySettings
from harness.study.specs import SpecError, load_specs, spec_names

FACTORS = ["a", "b", "c", "d", "e"]
SIMULATED_STUDIES = 400
C1 = RunConditions("cpu1t", "avx512-aaaaaa")
FIVE_FACTORS = {
    "a": {"on": {}, "off": {"batchnorm": False}},
    "b": {"on": {}, "off": {"weight_decay": 0.0}},
    "c": {"on": {}, "off": {"scheduler": "none"}},
    "d": {"on": {}, "off": {"lr": 2e-3}},
    "e": {"on": {}, "off": {"batch_size": 64}},
}


def synthetic_runs(effects: dict[str, float], rng: np.random.Generator, seeds: int = 2):
    """A 2^5 design, cells' sds spread over 0.07–0.11 pp as measured; effects[name] is the
    main effect (high − low) of a factor, or of an interaction "a:b"."""
    sds = np.linspace(0.0007, 0.0011, 32)
    rows = []
    for seed in range(seeds):
        for i, cell in enumerate(itertools.product([-1, 1], repeat=5)):
            x = dict(zip(FACTORS, cell, strict=True))
            mean = 0.985 + sum(
                effect / 2 * math.prod(x[f] for f in name.split(":"))
                for name, effect in effects.items()
            )
            accuracy = mean + rng.normal(0, sds[i])
            rows.append({**x, "cell": str(cell), "seed": seed, "accuracy": accuracy})
    return pd.DataFrame(rows)


def test_the_components_spec_is_a_full_2_to_the_5_with_every_one_at_a_time_arm_as_a_cell():
    factorial = load_factorial("components")
    assert [f.name for f in factorial.factors] == [
        "batchnorm",
        "dropout",
        "weight_decay",
        "scheduler",
        "width",
    ]
    assert len(factorial.cells()) == 32 and factorial.seeds == (0, 1)
    plan = StudySettings(factorial="components").plan(load_specs(spec_names()), C1)
    assert set(plan.arms) == set(spec_names()) - {"width_double"}  # doubled is no cell
    tasks = plan.tasks()
    assert len({(t.config.hash(), t.seed) for t in tasks}) == 64  # an arm's run is a cell's
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_half_fraction_holds_the_reference_and_keeps_two_factor_interactions_apart():
    full = load_factorial("components")
    half = dataclasses.replace(full, resolution=5)
    cells = half.cells()
    assert len(cells) == 16 and (0, 0, 0, 0, 0) in cells
    x = 2 * np.array(cells) - 1
    columns = [x[:, i] for i in range(5)] + [
        x[:, i] * x[:, j] for i, j in itertools.combinations(range(5), 2)
    ]
    gram = np.array(columns) @ np.array(columns).T
    assert np.array_equal(gram, 16 * np.eye(15))  # main effects and 2fi all orthogonal


@pytest.mark.parametrize(
    "table, message",
    [
        ({"description": "x", "factors": {"a": {"on": {}}}}, "expected two levels"),
        (
            {"description": "x", "factors": {"a": {"on": {}, "off": {"batchnorm": False}}}},
            "two factors",
        ),
        (
            {
                "description": "x",
                "factors": {"a": {"on": {}, "off": {"lr": -1}}, "b": {"x": {}, "y": {"epochs": 3}}},
            },
            "lr",
        ),
        (
            {
                "description": "x",
                "factors": {"a": {"on": {}, "off": {}}, "b": {"x": {}, "y": {"epochs": 3}}},
            },
            "changes nothing",
        ),
        ({"description": "x", "seed": 2, "factors": {}}, "unknown key 'seed'"),
        (
            {
                "description": "x",
                "resolution": 9,
                "factors": {
                    "a": {"on": {}, "off": {"epochs": 2}},
                    "b": {"x": {}, "y": {"epochs": 3}},
                },
            },
            "resolution",
        ),
        (
            {
                "description": "x",
                "resolution": 4,
                "factors": FIVE_FACTORS,
            },
            "aliases",
        ),
        (
            {
                "description": "x",
                "factors": {
                    "weight-decay": {"on": {}, "off": {"epochs": 2}},
                    "b": {"x": {}, "y": {"epochs": 3}},
                },
            },
            "identifier",
        ),
        (
            {
                "description": "x",
                "factors": {
                    "seed": {"on": {}, "off": {"epochs": 2}},
                    "b": {"x": {}, "y": {"epochs": 3}},
                },
            },
            "identifier",
        ),
        (
            {
                "description": "x",
                "seeds": 1,
                "resolution": 5,
                "factors": FIVE_FACTORS,
            },
            "no error",
        ),
    ],
)
def test_a_broken_factorial_spec_is_one_line_naming_the_problem(table, message):
    with pytest.raises(SpecError, match=message):
        parse_factorial("broken", table, "broken.toml")


def test_an_unknown_factorial_is_named_with_the_known_ones():
    with pytest.raises(SpecError, match="unknown factorial 'component'.*did you mean 'components'"):
        load_factorial("component")


def test_the_models_effects_match_an_independent_numpy_least_squares_fit():
    runs = synthetic_runs({"a": -0.001, "a:b": 0.0004}, np.random.default_rng(1))
    table = model.effect_table(runs, FACTORS, MARGIN).set_index("effect")
    x = runs[FACTORS].to_numpy(float)
    pairs = list(itertools.combinations(range(5), 2))
    design = np.column_stack(
        [np.ones(len(runs)), runs["seed"].to_numpy(float), x]
        + [x[:, i] * x[:, j] for i, j in pairs]
    )
    beta = np.linalg.lstsq(design, runs["accuracy"].to_numpy(), rcond=None)[0]
    main = dict(zip(FACTORS, 2 * beta[2:7], strict=True))
    interaction = {
        f"{FACTORS[i]} × {FACTORS[j]}": 2 * b for (i, j), b in zip(pairs, beta[7:], strict=True)
    }
    kinds = table["kind"]
    for name, value in main.items():
        assert table[kinds == model.KINDS[0]].loc[name, "estimate"] == pytest.approx(
            value, abs=1e-12
        )
    for name, value in interaction.items():
        assert table.loc[name, "estimate"] == pytest.approx(value, abs=1e-12)

    # the simple effect of a at the reference: the fit's prediction with a changed, every
    # other factor at its reference level (−1), less that with a at its reference level
    def predicted(point: np.ndarray) -> float:
        row = np.concatenate([[1.0, 0.0], point, [point[i] * point[j] for i, j in pairs]])
        return float(row @ beta)

    reference = -np.ones(5)
    changed = reference.copy()
    changed[0] = 1
    # with replicates, the two cells' own contrast paired by seed, its error the pure error
    simple = table[kinds == model.KINDS[2]].loc["a"]
    means = runs.groupby(FACTORS)["accuracy"].mean()
    cells = {tuple(float(x) for x in key): value for key, value in means.items()}
    assert simple["method"] == model.CELLS
    assert simple["estimate"] == pytest.approx(
        cells[tuple(changed)] - cells[tuple(reference)], abs=1e-12
    )
    table_ = runs.pivot(index="cell", columns="seed", values="accuracy").to_numpy()
    residual = table_ - table_.mean(axis=1, keepdims=True) - table_.mean(axis=0) + table_.mean()
    pure = (residual**2).sum() / ((table_.shape[0] - 1) * (table_.shape[1] - 1))
    assert simple["se_seeds"] == pytest.approx(math.sqrt(2 * pure / 2))
    # with one seed there is no pure error: the model's simple effect, as the page says
    one_seed = model.effect_table(runs[runs["seed"] == 0], FACTORS, MARGIN, confidence=0.95)
    model_simple = one_seed[one_seed["kind"] == model.KINDS[2]].set_index("effect").loc["a"]
    assert model_simple["method"] == model.MODEL


def _share(hits: np.ndarray) -> tuple[float, float]:
    p = float(np.mean(hits))
    return p, math.sqrt(p * (1 - p) / len(hits))


def test_simulated_error_rates_and_coverage_of_the_family_under_unequal_cell_variances():
    """Synthetic studies of 2 seeds per cell: with every effect 0, the share calling any effect
    better or worse; with a main effect at ±δ, the share calling it equivalent; and the
    coverage of the effects' 95% intervals."""
    rng = np.random.default_rng(2026)
    any_difference, equivalent_at_margin, covered = [], [], []
    for study in range(SIMULATED_STUDIES):
        null = model.effect_table(synthetic_runs({}, rng), FACTORS, MARGIN)
        any_difference.append(null["verdict"].str.startswith(("better", "worse")).any())
        covered.append(((null["low_95"] <= 0) & (null["high_95"] >= 0)).to_numpy())
        sign = 1 if study % 2 else -1
        edge = model.effect_table(synthetic_runs({"a": sign * MARGIN}, rng), FACTORS, MARGIN)
        equivalent_at_margin.append(edge.iloc[0]["verdict"] == "equivalent")
    coverage = np.concatenate(covered)
    results = {
        "any effect called better/worse, all 0": _share(np.array(any_difference)),
        "a at ±δ called equivalent": _share(np.array(equivalent_at_margin)),
        "coverage of 95% intervals": _share(coverage),
    }
    for what, (p, se) in results.items():
        print(f"{what}: {100 * p:.1f}% ± {100 * se:.1f}% ({SIMULATED_STUDIES} studies)")
    assert results["any effect called better/worse, all 0"][0] <= 0.05
    assert results["a at ±δ called equivalent"][0] <= 0.05
    assert results["coverage of 95% intervals"][0] >= 0.93


def test_the_image_part_of_a_contrast_of_two_cells_is_that_of_their_paired_differences():
    """Two cells on the same n seeds and the contrast mean(cell 1) − mean(cell 0): split seed by
    seed, it is the paired differences image by image, so runs that share a seed may be
    correlated (here strongly) without being counted as independent."""
    rng = np.random.default_rng(3)
    n, images = 4, 400
    shared = rng.normal(0, 0.1, (n, images))  # what a seed does on an image, in both cells
    cell_effect = np.repeat(rng.normal(0, 0.04, 20), 20)  # the contrast's variation by block
    noise = rng.normal(0, 0.01, (2 * n, images))
    correct = np.vstack([0.98 + shared, 0.98 + shared + cell_effect]) + noise
    seeds = np.tile(np.arange(n), 2)
    weights = np.repeat([-1 / n, 1 / n], n)
    per_seed = population.contrast_by_seed(weights, correct, seeds)
    assert per_seed == pytest.approx(correct[n:] - correct[:n])
    variance = population.image_part(per_seed)
    # the contrast's variation over blocks comes through: σ² 0.04² / 20 blocks, roughly
    assert 0.3 < variance / (0.04**2 / 20) < 3


def test_factorial_from_a_damaged_plan_is_a_value_error():
    data = load_factorial("components").to_dict()
    data["factors"]["batchnorm"] = {"on": {}}
    with pytest.raises(ValueError, match="two levels"):
        Factorial.from_dict(data, Config())


def test_cells_are_built_on_the_plans_reference_config():
    factorial = load_factorial("components")
    base = dataclasses.replace(Config(), epochs=2)
    configs = factorial.cell_configs(base)
    assert all(config.epochs == 2 for _, config in configs.values())
    assert configs["cell:batchnorm=off"][1] == dataclasses.replace(base, batchnorm=False)


def test_seeds_until_decided_plans_replicates_from_the_pilots_spread_and_keeps_its_error_rates():
    """Pilot of 2 replicates, then the planned ones (at most 6): with a main effect at 0, at
    +δ and at −δ and the rest 0, the share of studies with any wrong verdict on a main effect
    (a difference called where there is none, equivalence or the wrong sign at ±δ), and the
    mean replicates against a fixed 6."""
    rng = np.random.default_rng(7)
    studies, wrong, replicates = 200, [], []
    truths = {"a": MARGIN, "b": -MARGIN}
    for _ in range(studies):
        pilot = synthetic_runs(truths, rng)
        n = model.planned_replicates(pilot, FACTORS, MARGIN, max_seeds=6)
        more = synthetic_runs(truths, rng, seeds=n).query("seed >= 2") if n > 2 else pilot[:0]
        table = model.effect_table(pd.concat([pilot, more]), FACTORS, MARGIN)
        mains = table[table["kind"] == model.KINDS[0]].set_index("effect")["verdict"]
        called = mains.str.startswith(("better", "worse"))
        wrong.append(
            called.drop(["a", "b"]).any()
            or mains["a"] == "equivalent"
            or mains["b"] == "equivalent"
            or mains["a"].startswith("worse")
            or mains["b"].startswith("better")
        )
        replicates.append(n)
    p, se = _share(np.array(wrong))
    print(
        f"until decided: any wrong main-effect verdict {100 * p:.1f}% ± {100 * se:.1f}%, "
        f"mean replicates {np.mean(replicates):.2f} of at most 6 ({studies} studies)"
    )
    assert p <= 0.05
    assert min(replicates) >= 2 and max(replicates) <= 6


def test_a_replication_takes_new_seeds_after_every_used_one_and_is_kept_in_the_plan():
    specs = load_specs(spec_names())
    plan = StudySettings(factorial="components").plan(specs, C1)
    saved = plan.with_arm(dataclasses.replace(plan.reference, label=TUNED, seeds=(0, 1, 2, 3, 4)))
    again = as_replication(plan, saved, resume=False)
    assert again.factorial.seeds == (5, 6) and again.replications == ((5, 6),)
    assert TUNED not in again.arms and again.arms["no_batchnorm"].seeds == (5, 6)
    merged = again.merged_into(saved)
    assert merged.factorial.seeds == (0, 1, 5, 6) and merged.primary_seeds() == (0, 1)
    assert Plan.from_dict(merged.to_dict()) == merged
    # a second replication after both; an unfinished last one is resumed on its own seeds
    assert as_replication(plan, merged, resume=False).factorial.seeds == (7, 8)
    assert as_replication(plan, merged, resume=True).factorial.seeds == (5, 6)
    with pytest.raises(UserError, match="no factorial study"):
        as_replication(plan, None, resume=False)


def test_replication_agreement_holds_0_for_one_truth_and_flags_a_shifted_one():
    rng = np.random.default_rng(11)
    primary = model.effect_table(synthetic_runs({"a": -0.002}, rng), FACTORS, MARGIN)
    same = model.effect_table(synthetic_runs({"a": -0.002}, rng), FACTORS, MARGIN)
    shifted = model.effect_table(synthetic_runs({"a": 0.002}, rng), FACTORS, MARGIN)
    agreement = model.replication_agreement(primary, same)
    assert agreement["consistent"].all()
    assert agreement["difference"].iloc[0] == pytest.approx(
        same["estimate"].iloc[0] - primary["estimate"].iloc[0]
    )
    flagged = model.replication_agreement(primary, shifted).set_index("effect")
    assert not flagged["consistent"].iloc[0] and flagged["difference"].iloc[0] > 0


def test_seeds_until_decided_of_a_factorial_plan_its_replicates_not_the_arms_by_stein():
    specs = load_specs(["no_dropout"])
    plan = StudySettings(factorial="components", until_decided=True).plan(specs, C1)
    assert plan.design.pilot_seeds == 2 and plan.design.max_seeds == 6  # the spec's cap
    assert plan.stein_design is None  # the arms follow the cells: no Stein test for them
    one_at_a_time = StudySettings(until_decided=True).plan(specs, C1)
    assert one_at_a_time.stein_design == one_at_a_time.design
