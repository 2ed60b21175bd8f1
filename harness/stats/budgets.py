"""Every training budget from one run: at budget k, a run is what a k-epoch run would have been.

A run of E epochs holds, for every epoch, its validation accuracy (the history) and its test
evaluation (kept apart, read by no decision). At budget k the run's epoch is chosen as a k-epoch
run chooses it, by validation accuracy among epochs 1..k (the first of equals), and its test
numbers are that epoch's. A component's worth is then a curve over k; its verdicts are given at
a few declared budgets inside the study's one error budget, and the budget from which its verdict
no longer changes says where that worth settles.
"""

from __future__ import annotations

import numpy as np

from harness import UserError

DEFAULT_BUDGETS = (5, 10)  # beside the full budget E, when a study declares none


def check_budgets(budgets: tuple[int, ...]) -> None:
    if not budgets or any(type(b) is not int or b < 1 for b in budgets):
        raise UserError("expected one or more epochs ≥ 1, comma-separated", "budgets")


def declared_budgets(epochs: int, budgets: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The budgets whose verdicts join the error budget: those asked for (DEFAULT_BUDGETS where
    none) below the full budget, and the full budget itself."""
    asked = DEFAULT_BUDGETS if budgets is None else budgets
    return tuple(sorted({b for b in asked if b < epochs} | {epochs}))


def selected_epochs(val_accuracy: np.ndarray) -> np.ndarray:
    """[runs, k] → the epoch index (0-based) each run chooses at budget k + 1: the best
    validation accuracy among its first k + 1 epochs, the first of equals, as training.fit
    chooses (an improvement must be strict)."""
    val = np.asarray(val_accuracy, dtype=float)
    chosen = np.zeros(val.shape, dtype=int)
    best = val[:, 0].copy()
    for k in range(1, val.shape[1]):
        better = val[:, k] > best
        best = np.where(better, val[:, k], best)
        chosen[:, k] = np.where(better, k, chosen[:, k - 1])
    return chosen


def settled_from(verdicts: list[str]) -> int | None:
    """The first budget (1-based) from which the verdict stays what it is at the last budget;
    None where it changes at the last budget itself (still moving at E)."""
    last = len(verdicts)
    first = last
    while first > 1 and verdicts[first - 2] == verdicts[-1]:
        first -= 1
    return first if first < last or last == 1 else None
