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

from tqdm import tqdm

from harness import cli
from harness.cli import ablate, search
from harness.core.store import RunStore
from harness.report import writing
from harness.report.folder import check_report_folder
from harness.study import runner
from harness.study.factorial import DEFAULT_FACTORIAL
from harness.study.grid import check_before_training, progress_counts, run_engine
from harness.study.plan import TUNED, check_evaluation_seeds, tuned_arm
from harness.study.saved import check_saved_files, load_search_summaries
from harness.study.searching import run_searches
from harness.study.settings import DEFAULT_RETRAIN_SEEDS, SearchSettings, StudySettings
from harness.study.specs import load_specs, spec_names
from harness.study.tuning import DEFAULT_EPOCH_CAP, finished_count, open_study


@dataclass(frozen=True)
class Preset:
    """What a full or a quick run trains where the command line says nothing."""

    study: StudySettings
    search: SearchSettings
    retrain_seeds: int


FULL = Preset(  # the factorial on seeds 0-1, then once more on new seeds (a replication)
    StudySettings(factorial=DEFAULT_FACTORIAL, replications=1),
    SearchSettings(),
    DEFAULT_RETRAIN_SEEDS,
)
QUICK = Preset(  # the factorial on seed 0, or with --until-decided a pilot of 2 and at most 3
    StudySettings(seeds=1, epochs=2, max_seeds=3, factorial=DEFAULT_FACTORIAL),
    SearchSettings(trials=6, epoch_cap=2),
    retrain_seeds=2,
)


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
        type=cli.positive_int,
        help=f"cap on a search trial's epochs (default {DEFAULT_EPOCH_CAP})",
    )
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.results_dir = str(cli.results_dir(args) / "quick")
        args.reports_dir = str(writing.resolve_reports_dir(args.reports_dir) / "quick")
    return args


def settings_for(args: argparse.Namespace) -> tuple[StudySettings, SearchSettings, int]:
    """The preset that --quick picks, with the values given on the command line."""
    preset = QUICK if args.quick else FULL
    retrain_seeds = preset.retrain_seeds if args.retrain_seeds is None else args.retrain_seeds
    return (
        ablate.study_settings(args, preset.study),
        search.search_settings(args, args.search_epochs, preset.search),
        retrain_seeds,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_dir = cli.results_dir(args)
    reports_dir = writing.resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    check_saved_files(results_dir)
    if args.only == "report":
        return writing.finish(results_dir, reports_dir)
    stages = [args.only] if args.only else ["search", "ablations"]
    study_settings, searching, retrain_seeds = settings_for(args)
    specs = load_specs(spec_names())  # a broken spec stops us before anything trains
    resources = cli.resources(args)
    store = RunStore(results_dir)
    check_before_training(store, resources)
    check_evaluation_seeds(range(retrain_seeds))
    plan = study_settings.plan(specs, run_engine(resources))
    storage = searching.storage_url(results_dir)
    if "ablations" not in stages:
        plan = dataclasses.replace(plan, arms={"reference": plan.reference})
    with tqdm(desc="study", unit="step", dynamic_ncols=True) as bar:
        if "search" in stages:
            # The tuned runs are known once the search is over: until then, seeds stand in.
            repeats = [searching.repeat(number) for number in range(searching.repeats)]
            studies = [open_study(r.study, storage, r.sampler_seed()) for r in repeats]
            done = sum(min(searching.trials, finished_count(study)) for study in studies)
            steps = (searching.trials + retrain_seeds) * searching.repeats
            _count(bar, store, plan, resources, done, steps)
            summaries = run_searches(searching, results_dir, resources, plan.reference.config, bar)
            plan = dataclasses.replace(plan, search=searching.describe(summaries[TUNED]))
        else:
            summaries = load_search_summaries(results_dir)
        for label, summary in summaries.items() if retrain_seeds else ():
            plan = plan.with_arm(tuned_arm(summary, list(range(retrain_seeds)), label))
        # One grid for the ablations and the tuned network: the workers stay busy to the end.
        new = runner.run(plan, results_dir, resources, "study", bar)
        # the preset's replication is of a fixed design; seeds until decided plan their own
        replications = 0 if study_settings.until_decided else study_settings.replications
        if "ablations" in stages and (args.replicate or replications):
            count = None if args.replicate else replications
            new += runner.run_replications(plan, results_dir, resources, count, bar)
    return writing.finish(
        results_dir, reports_dir, diverged_now=sum(r["status"] != "ok" for r in new)
    )


def _count(bar: tqdm, store, plan, resources, steps_done: int, steps: int) -> None:
    """The bar's total and position: the grid's runs plus the search's steps (runner.run sets
    the total again once the grid's runs are known)."""
    runs, runs_done = progress_counts(plan.tasks(), store, resources)
    bar.total, bar.n = runs + steps, runs_done + steps_done
    bar.refresh()


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
