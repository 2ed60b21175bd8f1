"""The whole study end to end: the Optuna search, then the reference, every ablation and the
tuned network across seeds in one grid of runs, then the reports. Resumable: stored runs and
finished trials are kept, so an interrupted run continues where it stopped, and a completed one
only refreshes the reports.

    python run_all.py                   # the full study (5 seeds, 15 epochs, 40 trials)
    python run_all.py --until-decided   # seeds per ablation from a 5-seed pilot's spread
    python run_all.py --quick           # a smoke version in results/quick and reports/quick
    python run_all.py --only report     # regenerate the reports from stored runs
"""

from __future__ import annotations

import argparse
import dataclasses

from tqdm import tqdm

from harness import cli
from harness.cli import ablate, search
from harness.core.store import RunStore
from harness.report import writing
from harness.report.folder import check_report_folder
from harness.study import runner
from harness.study.grid import check_before_training, progress_counts, run_engine
from harness.study.plan import check_saved_files, load_search_summary, tuned_arm
from harness.study.runner import SearchSettings, run_search
from harness.study.specs import load_specs, spec_names
from harness.study.tuning import DEFAULT_EPOCH_CAP, SEARCH_SEED, finished_count, open_study

FULL = {"trials": 40, "retrain_seeds": 5, "search_epochs": DEFAULT_EPOCH_CAP}
QUICK = {
    "seeds": 2,  # or, with --until-decided, a pilot of 2 and at most 3
    "pilot_seeds": 2,
    "max_seeds": 3,
    "epochs": 2,
    "trials": 6,
    "retrain_seeds": 2,
    "search_epochs": 2,
}


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
        "--search-epochs", type=cli.positive_int, help="cap on a search trial's epochs"
    )
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if key == "seeds" and args.until_decided:
            continue  # the design chooses the seeds
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.quick:
        args.results_dir = str(cli.results_dir(args) / "quick")
        args.reports_dir = str(writing.resolve_reports_dir(args.reports_dir) / "quick")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = cli.results_dir(args)
    reports_dir = writing.resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    check_saved_files(results_dir)
    if args.only == "report":
        return writing.finish(results_dir, reports_dir)
    stages = [args.only] if args.only else ["search", "ablations"]
    specs = load_specs(spec_names())  # a broken spec stops us before anything trains
    resources = cli.resources(args)
    store = RunStore(results_dir)
    check_before_training(store, resources)
    settings = SearchSettings(
        args.study, args.storage, args.trials, args.search_epochs, SEARCH_SEED, args.timeout
    )
    plan = ablate.plan_for(specs, args, run_engine(resources))
    if "ablations" not in stages:
        plan = dataclasses.replace(plan, arms={"reference": plan.reference})
    with tqdm(desc="study", unit="step", dynamic_ncols=True) as bar:
        if "search" in stages:
            # The tuned runs are known once the search is over: until then, seeds stand in.
            done = min(args.trials, finished_count(open_study(*_study_args(settings, args))))
            _count(bar, store, plan, resources, done, args.trials + args.retrain_seeds)
            summary = run_search(settings, results_dir, resources, plan.reference.config, bar)
            plan = dataclasses.replace(plan, search=settings.describe(summary))
            if args.retrain_seeds:
                plan = plan.with_arm(tuned_arm(summary, list(range(args.retrain_seeds))))
        elif summary := load_search_summary(results_dir):
            plan = plan.with_arm(tuned_arm(summary, list(range(args.retrain_seeds))))
        # One grid for the ablations and the tuned network: the workers stay busy to the end.
        new = runner.run(plan, results_dir, resources, "study", bar)
    return writing.finish(
        results_dir, reports_dir, diverged_now=sum(r["status"] != "ok" for r in new)
    )


def _study_args(settings: SearchSettings, args: argparse.Namespace) -> tuple:
    return settings.study, settings.storage_url(cli.results_dir(args)), settings.sampler_seed()


def _count(bar: tqdm, store, plan, resources, steps_done: int, steps: int) -> None:
    """The bar's total and position: the grid's runs plus the search's steps (runner.run sets
    the total again once the grid's runs are known)."""
    runs, runs_done = progress_counts(plan.tasks(), store, resources)
    bar.total, bar.n = runs + steps, runs_done + steps_done
    bar.refresh()


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
