"""The whole study end to end: the Optuna search, then the factorial over the components (every
combination of BatchNorm, dropout, weight decay, scheduler and width, each on the same seeds)
and the tuned network in one grid of runs, then the reports. Resumable: stored runs and
finished trials are kept, so an interrupted run continues where it stopped, and a completed one
only refreshes the reports.

    python run_all.py                   # the full study: 40 trials, 32 cells x 2 seeds, replicated
    python run_all.py --until-decided   # replicates of the factorial until its effects decide
    python run_all.py --replicate       # one more replication on new seeds
    python run_all.py --quick           # a smoke version in results/quick and reports/quick
    python run_all.py --only report     # regenerate the reports from stored runs
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from harness import cli
from harness.cli import ablate
from harness.cli.progress import progress_bar
from harness.cli.search import add_search_args, search_settings
from harness.core.store import RunStore
from harness.report.folder import check_report_folder, resolve_reports_dir
from harness.study import runner, search
from harness.study.factorial_design import DEFAULT_FACTORIAL
from harness.study.grid import check_before_training, run_conditions
from harness.study.settings import SearchSettings, StudySettings


@dataclass(frozen=True)
class Preset:
    """What a full or a quick run trains where the command line says nothing."""

    study: StudySettings
    search: SearchSettings


FULL = Preset(  # the factorial on seeds 0-1, then once more on new seeds (a replication)
    StudySettings(factorial=DEFAULT_FACTORIAL, replications=1),
    SearchSettings(),
)
QUICK = Preset(  # the factorial on seed 0, or with --until-decided a pilot of 2 and at most 3
    StudySettings(seeds=1, epochs=2, max_seeds=3, factorial=DEFAULT_FACTORIAL, budgets=(1,)),
    SearchSettings(trials=6, search_epochs=2, retrain_seeds=2),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (1 seed, 2 epochs, a 6-trial search), kept apart in <results>/quick and "
        "<reports>/quick",
    )
    parser.add_argument(
        "--only",
        choices=["ablations", "search", "report"],
        help="run one stage (the report is always refreshed)",
    )
    ablate.add_study_args(parser)
    add_search_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.results_dir = str(cli.results_dir(args) / "quick")
        args.reports_dir = str(resolve_reports_dir(args.reports_dir) / "quick")
    return args


def settings_for(args: argparse.Namespace) -> tuple[StudySettings, SearchSettings]:
    """The preset that --quick picks, with the values given on the command line."""
    preset = QUICK if args.quick else FULL
    study = preset.study
    if args.until_decided:  # the preset's seeds yield: the pilot's spread chooses them
        study = dataclasses.replace(study, seeds=None)
    return ablate.study_settings(args, None, study), search_settings(args, preset.search)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = cli.results_dir(args)
    reports_dir = resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    search.check_saved_files(results_dir)
    if args.only == "report":
        return cli.finish(results_dir, reports_dir)
    stages = [args.only] if args.only else ["search", "ablations"]
    study, searching = settings_for(args)
    specs = study.load_specs()  # a broken spec stops us before anything trains
    resources = cli.resources(args)
    check_before_training(RunStore(results_dir), resources)
    plan = study.plan(specs, run_conditions(resources))
    if "ablations" not in stages:
        plan = dataclasses.replace(plan, arms={"reference": plan.reference}, factorial=None)
    with progress_bar("study") as bar:
        if "search" in stages:
            summaries = search.run_searches(
                searching, results_dir, resources, plan.reference.config, bar
            )
        else:
            summaries = search.load_search_summaries(results_dir)
        if searching.retrain_seeds:
            plan = search.with_tuned_arms(plan, searching, summaries)
        # One grid for the ablations and the tuned network: the workers stay busy to the end.
        new = runner.run_study(plan, results_dir, resources, bar)
        # the preset's replication is of a fixed design; seeds until decided plan their own
        replications = 0 if study.until_decided else study.replications
        if "ablations" in stages and (study.replicate or replications):
            count = None if study.replicate else replications
            new += runner.run_replications(plan, results_dir, resources, count, bar)
    return cli.finish(results_dir, reports_dir, diverged_now=sum(r["status"] != "ok" for r in new))


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
