"""Reports from stored runs alone (no training): the verdicts, markdown pages, plots, runs.csv,
and a copy of the records they were computed from.

    python -m harness.report [--results-dir DIR] [--reports-dir DIR]

The saved plan (plan.json in the results folder) says which arms and seeds make the study. The
records behind a report are copied into <out>/data/, laid out as a results folder, so that
`python -m harness.report --results-dir reports/data --out reports` rebuilds every page, plot and
runs.csv byte for byte from what is committed.
"""

from __future__ import annotations

import argparse

from harness import cli
from harness.report.folder import resolve_reports_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--results-dir", help="stored runs (default: $HARNESS_RESULTS_DIR, else ./results)"
    )
    parser.add_argument(
        "--reports-dir",
        "--out",
        help="output folder (default: $HARNESS_REPORTS_DIR, else ./reports)",
    )
    args = parser.parse_args(argv)
    return cli.finish(cli.results_dir(args), resolve_reports_dir(args.reports_dir))


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
