"""One error budget for a family of verdicts, and the verdict an interval supports.

Each of a family's m comparisons gets a two-sided interval at confidence 1 − α/m
(family_confidence), so that all m cover their true Δ together with probability at least 1 − α
(Bonferroni, under any dependence), and its verdict is read off that interval alone
(interval_verdict): better / worse where it excludes 0, equivalent where it lies within ±margin,
both ("worse, within the margin") where it does both. Whenever every interval covers, every
verdict is right, so the chance of any wrong verdict in the family, a false difference, a wrong
sign or a false equivalence, is at most α; and the interval printed beside a verdict is the one
that decided it.

Accuracies and margins are fractions (0.001 = 0.1 percentage points).
"""

from __future__ import annotations

import math

ALPHA = 0.05  # the family's error budget
MARGIN = 0.001  # δ: differences within ±0.1 pp count as equivalent
WITHIN = ", within the margin"  # a real difference smaller than the margin (Lakens' fourth)
VERDICTS = (
    "better",
    "worse",
    "better" + WITHIN,
    "worse" + WITHIN,
    "equivalent",
    "inconclusive",
)


def family_confidence(family_size: int, alpha: float = ALPHA) -> float:
    """Each interval's confidence in a family of family_size verdicts, so that all of them
    cover together with probability at least 1 − alpha (Bonferroni)."""
    return 1 - alpha / max(family_size, 1)


def interval_verdict(low: float, high: float, margin: float) -> str:
    """The verdict an interval for Δ supports: "better" / "worse" when it excludes 0 (with
    WITHIN when it also lies inside ±margin), "equivalent" when it lies inside ±margin without
    excluding 0, else "inconclusive" (no interval: inconclusive)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    within = -margin < low and high < margin
    if low > 0 or high < 0:
        return ("better" if low > 0 else "worse") + (WITHIN if within else "")
    return "equivalent" if within else "inconclusive"
