"""The whole study end to end: the Optuna search, then the reference, every ablation and the
tuned network across seeds in one grid of runs, then the reports. Resumable: stored runs and
finished trials are kept, so an interrupted run continues where it stopped, and a completed one
only refreshes the reports.

    python run_all.py                 # the full study (5 seeds, 15 epochs, 40 trials)
    python run_all.py --quick         # a smoke version in results/quick and reports/quick
    python run_all.py --only report   # regenerate the reports from stored runs
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from tqdm import tqdm

from harness import ablate, cli, report, search
from harness.grid import progress_counts, run_tasks
from harness.specs import REFERENCE, load_spec, spec_names
from harness.store import RunStore

FULL = {"trials": 40, "retrain_seeds": 5, "search_epochs": search.DEFAULT_EPOCH_CAP}
QUICK = {"seeds": 2, "epochs": 2, "trials": 6, "retrain_seeds": 2, "search_epochs": 2}
SEARCH_SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run ({QUICK}), kept apart in <results>/quick and <reports>/quick",
    )
    parser.add_argument(
        "--only",
        choices=["ablations", "search", "report"],
        help="run one stage (the report is always refreshed)",
    )
    ablate.add_study_args(parser)
    search.add_search_args(parser)
    parser.add_argument(
        "--search-epochs",
        type=int,
        default=search.DEFAULT_EPOCH_CAP,
        help="cap on a search trial's epochs",
    )
    cli.add_common_args(parser)
    parser.set_defaults(trials=None, retrain_seeds=None, search_epochs=None)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.results_dir = str(cli.results_dir(args) / "quick")
        args.reports_dir = str(report.resolve_reports_dir(args.reports_dir) / "quick")
    return args


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore")  # library warnings are not the user's concern here
    args = parse_args(argv)
    results_dir = Path(cli.results_dir(args))
    store = RunStore(results_dir)
    stages = [args.only] if args.only else ["search", "ablations", "report"]

    specs = [load_spec(name) for name in spec_names()]  # a bad spec stops us before training
    tasks = ablate.grid(specs, args) if "ablations" in stages else []
    searching = "search" in stages
    trials_done = 0
    if searching:
        optuna_study = search.open_study(
            args.study, args.storage or search.default_storage(results_dir), SEARCH_SEED
        )
        trials_done = min(args.trials, search.finished_count(optuna_study))
    with tqdm(desc="study", unit="step", dynamic_ncols=True) as bar:
        # The tuned runs are known once the search is over: until then, retrain_seeds stand in.
        _count(bar, store, tasks, trials_done, args.trials + args.retrain_seeds if searching else 0)
        if searching:
            search.run_search(args, args.search_epochs, SEARCH_SEED, bar)
            reference = ablate.with_epochs(load_spec(REFERENCE), args.epochs).config
            tasks += search.retraining_tasks(results_dir, reference, range(args.retrain_seeds))
            _count(bar, store, tasks, args.trials, args.trials)
        # One grid for the ablations and the tuned network: the workers stay busy to the end.
        new = run_tasks(
            tasks, store, cli.data_dir(args), args.device, args.workers, args.threads, bar
        )
    failed = sum(record["status"] != "ok" for record in new)

    study = report.load_study(results_dir, epochs=args.epochs)
    index = report.write_reports(study, report.resolve_reports_dir(args.reports_dir))
    summary = report.summary_frame(study)
    print(report.table(report.comparison_rows(summary)) if len(summary) else "no runs stored")
    diverged = int(summary["diverged"].sum()) if len(summary) else 0
    if diverged:
        print(
            f"{diverged} run(s) diverged ({failed} of them just now); they are recorded and "
            "shown in the report"
        )
    print(f"\nreport: {index}")
    return 1 if diverged else 0


def _count(bar: tqdm, store: RunStore, tasks: list, steps_done: int, steps: int) -> None:
    """The bar's total and position: the grid's runs plus the search's steps."""
    runs, runs_done = progress_counts(tasks, store)
    bar.total, bar.n = runs + steps, runs_done + steps_done
    bar.refresh()


if __name__ == "__main__":
    raise SystemExit(cli.guard(lambda: main()))
