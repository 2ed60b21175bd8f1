"""Searches hyperparameters with Optuna on validation accuracy, then re-trains the winner.

    python -m harness.search --trials 40
    python -m harness.search --repeats 3      # three independent searches: how much they vary
    python -m harness.search --storage postgresql://user@127.0.0.1/optuna --retrain-seeds 0

The objective is one training run's best validation accuracy; the test set is never read during
the search (harness.study.tuning). The same command continues the same study until it holds --trials
finished trials; several commands given the same --storage and --study share the work. The
best config is then re-trained over --retrain-seeds seeds as the arm "tuned" (with --repeats,
each search's as tuned, tuned-repeat2, ...), beside the reference on the same seeds, and
reported like any ablation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from harness import cli
from harness.report import writing
from harness.report.folder import check_report_folder
from harness.study import runner
from harness.study.grid import run_engine
from harness.study.plan import TUNED, Plan, arm_from_spec, check_evaluation_seeds, tuned_arm
from harness.study.saved import check_saved_files
from harness.study.searching import run_searches
from harness.study.settings import DEFAULT_RETRAIN_SEEDS, DEFAULT_TRIALS, SearchSettings
from harness.study.specs import REFERENCE, load_spec
from harness.study.tuning import DEFAULT_EPOCH_CAP, DEFAULT_STUDY, SEARCH_SEED


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py."""
    parser.add_argument(
        "--trials", type=cli.positive_int, help=f"finished trials wanted ({DEFAULT_TRIALS})"
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


def search_settings(
    args: argparse.Namespace, epoch_cap: int | None, preset: SearchSettings
) -> SearchSettings:
    """The preset with the search options given on the command line (the epoch cap is
    --epochs here, --search-epochs in run_all.py)."""
    given = {
        "study": args.study,
        "storage": args.storage,
        "trials": args.trials,
        "epoch_cap": epoch_cap,
        "timeout": args.timeout,
        "repeats": args.repeats,
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
        "--epochs",
        type=cli.positive_int,
        help=f"cap on a trial's epochs (default {DEFAULT_EPOCH_CAP}); given, the reference "
        "is also re-trained for at most this many epochs, so that the two compare",
    )
    parser.add_argument(
        "--seed",
        type=cli.non_negative_int,
        default=SEARCH_SEED,
        help=f"the trials' training seed (default {SEARCH_SEED:,}, which no arm uses)",
    )
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")
    cli.add_worker_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    resources = cli.resources(args)
    results_dir = cli.results_dir(args)
    reports_dir = writing.resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    check_saved_files(results_dir)
    reference = load_spec(REFERENCE)
    settings = search_settings(args, args.epochs, SearchSettings(seed=args.seed))
    seeds = list(range(DEFAULT_RETRAIN_SEEDS if args.retrain_seeds is None else args.retrain_seeds))
    check_evaluation_seeds(seeds)
    summaries = run_searches(settings, results_dir, resources, reference.config)
    for label, summary in summaries.items():
        print(
            f"{label}: best validation accuracy {100 * summary['best_value']:.2f}% "
            f"(trial {summary['best_trial']}): {json.dumps(summary['best_params'])}"
        )
    if not seeds:
        return 0
    epochs = None
    if args.epochs is not None and args.epochs < reference.config.epochs:
        epochs = args.epochs
        print(f"the reference is re-trained for {epochs} epochs, the search's cap")
    plan = Plan(
        {REFERENCE: arm_from_spec(reference, seeds, epochs)},
        run_engine(resources),
        search=settings.describe(summaries[TUNED]),
    )
    for label, summary in summaries.items():
        plan = plan.with_arm(tuned_arm(summary, seeds, label))
    runner.run(plan, results_dir, resources, "tuned re-training")
    return writing.finish(results_dir, reports_dir, list(summaries))


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
