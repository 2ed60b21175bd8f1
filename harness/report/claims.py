"""The write-up's claims, checked against the reference's runs.

The write-up reports single runs, so a claimed value holds when it lies where one new run of the
reference would land: its 95% prediction interval, mean ± t·sd·√(1 + 1/n). The interval of the
mean would reject a correct single-run value as soon as there are enough seeds. A claim about
what one run did (which digit is hardest, which confusions lead, when the scheduler first cut)
is checked run by run and given as a frequency: "k of n" runs where it holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from harness.report.analysis import StudyData, first_lr_cuts
from harness.report.markdown import interval, missing, number, pct
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
HOLDS, FAILS = "✅", "❌"


def frequency(k: int, n: int) -> str:
    """The mark of a claim about single runs: in how many of the runs it holds."""
    return HOLDS if k == n else FAILS if k == 0 else f"{k} of {n}"


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
        confusion_row([np.array(c) for c in ok["confusion_matrix"]]),
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
    """Per run, whether the claimed digit is its easiest (hardest); the claimed accuracy
    against one new run's prediction interval."""
    accuracy = np.array(list(ok["per_digit_accuracy"]))
    rows = []
    for claim, (digit, value), extreme in [
        ("digit 1 easiest at 99.21%", WRITE_UP["easiest"], np.argmax),
        ("digit 9 hardest at 96.93%", WRITE_UP["hardest"], np.argmin),
    ]:
        per_run = extreme(accuracy, axis=1)
        k, n = int((per_run == digit).sum()), len(per_run)
        pi = inference.prediction_interval(accuracy[:, digit])
        others = Counter(int(d) for d in per_run if d != digit)
        elsewhere = ", ".join(f"digit {d} in {c}" for d, c in sorted(others.items()))
        rows.append(
            _mark(
                claim,
                frequency(k, n) if _inside(value, pi) else FAILS,
                f"digit {digit} in {k} of {n} runs"
                + (f" ({elsewhere})" if elsewhere else "")
                + f"; its accuracy: mean {pct(pi.estimate)}, one new run: {interval(pi[1:])}",
                f"in how many runs it is the extreme; the value {PREDICTION_RULE}",
            )
        )
    return rows


def confusion_row(confusions: list[np.ndarray]) -> dict[str, str]:
    """Per run, whether 3 and 4 are the two most frequent wrong predictions for a true 9 (a run
    whose second place is tied counts where the tie can be broken their way)."""
    claimed = set(WRITE_UP["confused_with_9"])
    holds = 0
    for confusion in confusions:
        counts = sorted(((int(confusion[9, p]), p) for p in range(9)), key=lambda c: -c[0])
        second = counts[1][0]
        above = {p for count, p in counts if count > second}
        tied = {p for count, p in counts if count == second}
        holds += above <= claimed <= above | tied
    summed = sum(confusions)
    top = sorted(((int(summed[9, p]), p) for p in range(9)), key=lambda c: (-c[0], c[1]))[:3]
    return _mark(
        "digit 9 most confused with 3 and 4",
        frequency(holds, len(confusions)),
        f"in {holds} of {len(confusions)} runs; summed over the runs: "
        + ", ".join(f"9 → {p}: {count}" for count, p in top),
        "per run, the two most frequent wrong predictions for a true 9",
    )


def lr_cut_row(ok: pd.DataFrame) -> dict[str, str]:
    """Run by run: the epoch after which the plateau scheduler first cut the learning rate."""
    claimed, cuts = WRITE_UP["first_lr_cut"], first_lr_cuts(ok)
    counts = sorted(Counter(cuts).items())
    spread = "first cut after epoch " + ", ".join(f"{e} in {k}" for e, k in counts)
    if not cuts:
        spread = "no learning-rate cut"
    if len(cuts) < len(ok):
        spread += f" ({len(ok) - len(cuts)} of {len(ok)} runs without a cut)"
    k = sum(cut == claimed for cut in cuts)
    return _mark(
        "a drop in validation accuracy at epoch 6 triggered the plateau scheduler",
        frequency(k, len(ok)),
        f"in {k} of {len(ok)} runs; {spread}",
        "per run, the epoch after which the scheduler first cut the learning rate",
    )


def _inside(value: float, pi: inference.Interval) -> bool:
    return not missing(pi.low) and pi.low <= value <= pi.high


def _loss(x: float) -> str:
    return number(x, 4)


def _row(claim: str, holds: Any, measured: str, rule: str) -> dict[str, str]:
    return _mark(claim, HOLDS if holds else FAILS, measured, rule)


def _mark(claim: str, mark: str, measured: str, rule: str) -> dict[str, str]:
    return {"claim": claim, "": mark, "measured": measured, "rule": rule}
