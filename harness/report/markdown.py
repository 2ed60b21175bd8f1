"""The number formats and markdown pieces every page shares: a number printed twice is printed
the same way."""

from __future__ import annotations

import math
from typing import Any

from tabulate import tabulate

PLOTS = "plots"


def plot_file(kind: str, label: str | None = None) -> str:
    """A plot's path inside the reports folder: pages link it, report.py draws it there."""
    return f"{PLOTS}/{kind}_{label}.png" if label else f"{PLOTS}/{kind}.png"


def missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: float, digits: int = 2) -> str:
    return "n/a" if missing(x) else f"{100 * x:.{digits}f}%"


def pp(x: float, digits: int = 2, sign: str = "+") -> str:
    """A difference of accuracies in percentage points, signed unless sign="" (a size)."""
    return "n/a" if missing(x) else f"{100 * x:{sign}.{digits}f} pp"


def points(x: float, digits: int = 2) -> str:
    """Like pp without the unit, for columns whose header names it."""
    return "n/a" if missing(x) else f"{100 * x:+.{digits}f}"


def interval(bounds: tuple[float, float], fmt: Any = pct) -> str:
    low, high = bounds
    return "n/a" if missing(low) else f"[{fmt(low)}, {fmt(high)}]"


def pvalue(p: float) -> str:
    return "n/a" if missing(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def number(x: float, digits: int = 3) -> str:
    return "n/a" if missing(x) else f"{x:.{digits}f}"


def integer(x: float | None) -> str:
    """A count from a column that NaN (the reference's row) turned into floats."""
    return "n/a" if missing(x) else str(int(x))


def seeds(n: int | None, most: int = 1000) -> str:
    """stats.seeds_needed's answer: most + 1 means more than it searched."""
    return "n/a" if missing(n) else (f"> {most}" if n > most else str(int(n)))


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "None."
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def join(parts: list[str]) -> str:
    return "\n\n".join(part for part in parts if part) + "\n"


def seed_range(seeds: tuple[int, ...]) -> str:
    """Seeds as a reader takes them in: "0–9" for a run of more than two, else "0, 1"."""
    consecutive = list(seeds) == list(range(seeds[0], seeds[-1] + 1))
    if consecutive and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))
