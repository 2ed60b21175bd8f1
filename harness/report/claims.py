"""The write-up's claims, checked against the reference's runs.

The write-up reports single runs, so a claimed value holds when it lies where one new run of the
reference would land: its 95% prediction interval, mean ± t·sd·√(1 + 1/n). The interval of the
mean would reject a correct single-run value as soon as there are enough seeds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import StudyData, first_lr_cuts, summed_confusion
from harness.report.pages import interval, missing, number, pct
from harness.stats import inference
from harness.study.specs import REFERENCE

WRITE_UP = {
    "test_accuracy": 0.9816,
    "test_loss": 0.0654,
    "best_val_accuracy": 0.9824,
    "best_epoch": 10,
    "train_val_gap": 0.0008,
    "parameters": 568_970,
    "easiest": (1, 0.9921),
    "hardest": (9, 0.9693),
    "confused_with_9": (3, 4),
    "first_lr_cut": 6,
}
PREDICTION_RULE = "in the 95% prediction interval for one new run"
HOLDS, FAILS, TIE = "✅", "❌", "tie"


def claims_rows(data: StudyData) -> list[dict[str, str]]:
    """One row per claim: the claim, ✅/❌ (or "tie"), what was measured, the rule applied."""
    ok = data.ok_runs(REFERENCE)
    if not len(ok):
        return []
    lowest = ok["test_accuracy"].min()
    epoch = lambda x: number(x, 1)  # noqa: E731
    return [
        predicted("test accuracy 98.16%", ok["test_accuracy"], WRITE_UP["test_accuracy"]),
        _row(
            "exceeds the 98% target",
            lowest > 0.98,
            f"lowest of {len(ok)} seeds: {pct(lowest)}",
            "holds on every seed",
        ),
        predicted("test loss 0.0654", ok["test_loss"], WRITE_UP["test_loss"], _loss),
        predicted(
            "best validation accuracy 98.24%",
            ok["best_val_accuracy"],
            WRITE_UP["best_val_accuracy"],
        ),
        predicted("best epoch 10", ok["best_epoch"], WRITE_UP["best_epoch"], epoch),
        predicted("train–validation gap 0.08%", ok["train_val_gap"], WRITE_UP["train_val_gap"]),
        parameters_row(data, int(ok["parameters"].iloc[0])),
        *digit_rows(ok),
        confusion_row(summed_confusion(data, REFERENCE), len(ok)),
        lr_cut_row(ok),
        _row(
            "trained on CPU only",
            sorted({e["device"] for e in ok["environment"]}) == ["cpu"],
            "devices: " + ", ".join(sorted({e["device"] for e in ok["environment"]})),
            "every reference run's device",
        ),
    ]


def predicted(
    claim: str, values: pd.Series, value: float, fmt: Callable[[float], str] = pct
) -> dict[str, str]:
    pi = inference.prediction_interval(np.asarray(values, dtype=float))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return _row(
        claim,
        _inside(value, pi),
        f"mean {fmt(pi.estimate)}, sd {fmt(sd)}; one new run: {interval(pi[1:], fmt)}",
        PREDICTION_RULE,
    )


def parameters_row(data: StudyData, parameters: int) -> dict[str, str]:
    """The difference is named only when it is exactly the last BatchNorm's γ and β."""
    difference = parameters - WRITE_UP["parameters"]
    config = data.plan.reference.config
    last = config.hidden_widths[-1]
    note = f"{difference:+,}"
    if config.batchnorm and difference == 2 * last:
        note += f": exactly the last BatchNorm's γ, β (2 × {last})"
    return _row(
        "568,970 parameters",
        difference == 0,
        f"the described architecture has {parameters:,} ({note})",
        "exact count",
    )


def digit_rows(ok: pd.DataFrame) -> list[dict[str, str]]:
    accuracy = np.array(list(ok["per_digit_accuracy"]))
    means = accuracy.mean(axis=0)
    rows = []
    for claim, (digit, value), found in [
        ("digit 1 easiest at 99.21%", WRITE_UP["easiest"], int(np.argmax(means))),
        ("digit 9 hardest at 96.93%", WRITE_UP["hardest"], int(np.argmin(means))),
    ]:
        pi = inference.prediction_interval(accuracy[:, digit])
        rows.append(
            _row(
                claim,
                found == digit and _inside(value, pi),
                f"extreme: digit {found} ({pct(means[found])}); digit {digit}: mean "
                f"{pct(pi.estimate)}, one new run: {interval(pi[1:])}",
                f"extreme on the mean, and the value {PREDICTION_RULE}",
            )
        )
    return rows


def confusion_row(confusion: np.ndarray, runs: int) -> dict[str, str]:
    """The two most frequent wrong predictions for a true 9; "tie" when the second place is
    shared, so that the pair rests on how the tie is broken."""
    claimed = set(WRITE_UP["confused_with_9"])
    counts = sorted(((int(confusion[9, p]), p) for p in range(9)), key=lambda c: (-c[0], c[1]))
    second = counts[1][0]
    above = {p for count, p in counts if count > second}
    tied = [p for count, p in counts if count == second]
    measured = ", ".join(
        f"9 → {p}: {count}" for count, p in counts[: max(3, len(above) + len(tied))]
    )
    measured += f" (summed over {runs} runs)"
    if len(above) + len(tied) > 2:
        mark = TIE if above <= claimed <= above | set(tied) else FAILS
        measured += f"; {' and '.join(map(str, tied))} tie for the last place of the two"
    else:
        mark = HOLDS if {p for _, p in counts[:2]} == claimed else FAILS
    return {
        "claim": "digit 9 most confused with 3 and 4",
        "": mark,
        "measured": measured,
        "rule": "the two most frequent wrong predictions for a true 9, summed over seeds",
    }


def lr_cut_row(ok: pd.DataFrame) -> dict[str, str]:
    """Measured as the epoch after which the plateau scheduler first cut the learning rate."""
    claimed, cuts = WRITE_UP["first_lr_cut"], first_lr_cuts(ok)
    pi = inference.prediction_interval(cuts)
    if missing(pi.low):  # fewer than two runs with a cut: the observed range instead
        holds = bool(cuts) and min(cuts) <= claimed <= max(cuts)
    else:
        holds = _inside(claimed, pi)
    counts = sorted(Counter(cuts).items())
    spread = "first cut after epoch " + ", ".join(f"{e} in {k} run(s)" for e, k in counts)
    if not cuts:
        spread = "no learning-rate cut"
    if len(cuts) < len(ok):
        spread += f" ({len(ok) - len(cuts)} of {len(ok)} runs without a cut)"
    if cuts:
        spread += (
            f"; range {min(cuts)}–{max(cuts)}, mean {number(pi.estimate, 1)}, "
            f"one new run: {interval(pi[1:], lambda x: number(x, 1))}"
        )
    return _row(
        "a drop in validation accuracy at epoch 6 triggered the plateau scheduler",
        holds,
        spread,
        f"epoch 6 is {PREDICTION_RULE} (the observed range below two runs with a cut)",
    )


def _inside(value: float, pi: inference.Interval) -> bool:
    return not missing(pi.low) and pi.low <= value <= pi.high


def _loss(x: float) -> str:
    return number(x, 4)


def _row(claim: str, holds: Any, measured: str, rule: str) -> dict[str, str]:
    return {"claim": claim, "": HOLDS if holds else FAILS, "measured": measured, "rule": rule}
