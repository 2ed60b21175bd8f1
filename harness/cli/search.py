"""Searches hyperparameters with Optuna on validation accuracy, then re-trains the winner.

    python -m harness.search --trials 40
    python -m harness.search --repeats 3      # three independent searches: how much they vary
    python -m harness.search --storage postgresql://user@127.0.0.1/optuna --retrain-seeds 0

The objective is one training run's best validation accuracy; the test set is never read during
the search (harness.study.search). The same command continues the same study until it holds
--trials finished trials; several commands given the same --storage and --study share the work.
The best config is then re-trained over --retrain-seeds seeds as the arm "tuned" (with
--repeats, each search's as tuned, tuned-repeat2, ...), beside the reference on the same seeds,
and reported like any ablation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from harness import cli
from harness.cli.progress import progress_bar
from harness.core.store import RunStore
from harness.report.folder import check_report_folder, resolve_reports_dir
from harness.study import runner, search
from harness.study.grid import check_before_training, run_conditions
from harness.study.plan import Plan, arm_from_spec
from harness.study.settings import (
    DEFAULT_RETRAIN_SEEDS,
    DEFAULT_SEARCH_EPOCHS,
    DEFAULT_STUDY,
    DEFAULT_TRIALS,
    SEARCH_SEED,
    SearchSettings,
    StudySettings,
)
from harness.study.specs import REFERENCE


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py."""
    parser.add_argument(
        "--trials", type=cli.positive_int, help=f"finished trials wanted ({DEFAULT_TRIALS})"
    )
    parser.add_argument(
        "--search-epochs",
        type=cli.positive_int,
        help=f"cap on a trial's epochs (default {DEFAULT_SEARCH_EPOCHS}); below the reference's "
        "epochs, the reference is re-trained for at most this many, so that the two compare",
    )
    parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    parser.add_argument("--study", help=f"Optuna study name (default {DEFAULT_STUDY})")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: SQLite file in the results folder), e.g. "
        "postgresql://user:pw@127.0.0.1/optuna",
    )
    parser.add_argument(
        "--repeats",
        type=cli.positive_int,
        help="independent searches, each its own study and trial seed, each choice re-trained "
        "(default 1): how much the search's choice varies",
    )
    parser.add_argument(
        "--retrain-seeds",
        type=cli.non_negative_int,
        help=f"seeds to re-train the best config with (default {DEFAULT_RETRAIN_SEEDS}; 0 skips)",
    )


def search_settings(args: argparse.Namespace, preset: SearchSettings) -> SearchSettings:
    """The preset with each search option the command line gave, one by one."""
    given = {
        "study": args.study,
        "storage": args.storage,
        "trials": args.trials,
        "search_epochs": args.search_epochs,
        "seed": getattr(args, "seed", None),
        "timeout": args.timeout,
        "repeats": args.repeats,
        "retrain_seeds": args.retrain_seeds,
    }
    return dataclasses.replace(preset, **{k: v for k, v in given.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_args(parser)
    parser.add_argument(
        "--seed",
        type=cli.non_negative_int,
        help=f"the trials' training seed (default {SEARCH_SEED:,}, which no arm uses)",
    )
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")
    cli.add_recipe_args(parser)
    cli.add_worker_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    settings = search_settings(args, SearchSettings())
    study = StudySettings(specs_dir=cli.specs_dir(args), base=cli.base_config(args))
    reference = study.reference()
    resources = cli.resources(args)
    results_dir = cli.results_dir(args)
    reports_dir = resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    search.check_saved_files(results_dir)
    check_before_training(RunStore(results_dir), resources)
    with progress_bar("search") as bar:
        summaries = search.run_searches(settings, results_dir, resources, reference.config, bar)
        for label, summary in summaries.items():
            bar.note(
                f"{label}: best validation accuracy {100 * summary.best_value:.2f}% "
                f"(trial {summary.best_trial}): {json.dumps(summary.best_params)}"
            )
        if not settings.retrain_seeds:
            return 0
        epochs = None  # a search capped below the reference's epochs meets a reference capped so
        if settings.search_epochs < reference.config.epochs:
            epochs = settings.search_epochs
            bar.note(f"the reference is re-trained for {epochs} epochs, the search's cap")
        plan = Plan({REFERENCE: arm_from_spec(reference, [], epochs)}, run_conditions(resources))
        plan = search.with_tuned_arms(plan, settings, summaries)
        runner.run_study(plan, results_dir, resources, bar)
    return cli.finish(results_dir, reports_dir, list(summaries))


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
