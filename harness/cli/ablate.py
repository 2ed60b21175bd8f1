"""Runs ablations against the reference across seeds, paired by seed, and reports them.

    python -m harness.ablate no_batchnorm            # 5 seeds of the variant and the reference
    python -m harness.ablate --all --until-decided   # seeds added until each verdict is decided
    python -m harness.ablate --factorial             # every combination of the components
    python -m harness.ablate no_batchnorm --retune lr   # also each arm at its own learning rate
    python -m harness.ablate --list

Runs already stored are not trained again, so an interrupted grid resumes where it stopped and a
completed one reruns in seconds. A new ablation is a new TOML file in ablations/.
"""

from __future__ import annotations

import argparse
import dataclasses

from harness import UserError, cli
from harness.report import writing
from harness.report.folder import check_report_folder
from harness.stats.design import MARGIN, MAX_SEEDS, PILOT_SEEDS
from harness.study import retune, runner, searching
from harness.study.factorial import DEFAULT_FACTORIAL, factorial_names, load_factorial
from harness.study.grid import run_engine
from harness.study.saved import check_saved_files
from harness.study.settings import StudySettings
from harness.study.specs import DEFAULT_SEEDS, SpecError, every_spec, load_specs, spec_names


def parse_seed_list(value: str) -> list[int]:
    try:
        seeds = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None
    if not seeds or seeds[0] < 0:
        raise argparse.ArgumentTypeError("expected one or more seeds ≥ 0")
    return seeds


def retune_names(value: str) -> tuple[str, ...]:
    try:
        return retune.parse_retune(value)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"--retune {value}: ")) from None


def margin_pp(value: str) -> float:
    """--margin in percentage points, kept as a fraction of accuracy."""
    try:
        margin = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pp, got {value!r}") from None
    if not 0 < margin < 100:
        raise argparse.ArgumentTypeError(f"expected a margin between 0 and 100 pp, got {value}")
    return margin / 100


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py: which seeds and epochs, verdicts, how to spread work."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=cli.positive_int,
        help=f"seeds 0..N-1 (default: each spec's, else {DEFAULT_SEEDS})",
    )
    seeds.add_argument("--seed-list", type=parse_seed_list, help="explicit seeds, e.g. 0,1,2")
    parser.add_argument("--epochs", type=cli.positive_int, help="override every spec's epochs")
    parser.add_argument(
        "--margin",
        type=margin_pp,
        help=f"equivalence margin in percentage points (default {100 * MARGIN:g})",
    )
    parser.add_argument(
        "--until-decided",
        action="store_true",
        default=None,
        help="a pilot of --pilot-seeds per arm, then as many seeds as the pilot's spread says "
        "each arm needs (Stein's two-stage design), at most --max-seeds",
    )
    parser.add_argument("--pilot-seeds", type=cli.positive_int, help=f"default {PILOT_SEEDS}")
    parser.add_argument(
        "--max-seeds",
        type=cli.positive_int,
        help=f"default {MAX_SEEDS}; a factorial's: its spec's max_seeds replicates",
    )
    parser.add_argument(
        "--pooled-pilot",
        action="store_true",
        default=None,
        help="with --until-decided: every arm's seeds from one spread pooled over the arms' "
        "pilots; fewer seeds where their spreads are alike, not exact where they differ (README)",
    )
    parser.add_argument(
        "--factorial",
        nargs="?",
        const=DEFAULT_FACTORIAL,
        metavar="SPEC",
        help=f"train every cell of ablations/factorials/SPEC.toml (default {DEFAULT_FACTORIAL}); "
        "the specs that are one of its cells are compared one at a time on the same runs",
    )
    parser.add_argument(
        "--replicate",
        action="store_true",
        help="train the saved factorial study again on new seeds, disjoint from every seed it "
        "used, and report the replication beside the primary study (rerun to resume it)",
    )
    cli.add_worker_args(parser)
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")


def study_settings(args: argparse.Namespace, preset: StudySettings | None = None) -> StudySettings:
    """The preset (run_all's, else the defaults) with the values given on the command line."""
    if args.until_decided and (args.seeds or args.seed_list):
        raise cli.UserError("--until-decided chooses the seeds: leave out --seeds/--seed-list")
    if args.replicate and (args.seeds or args.seed_list or args.until_decided):
        raise cli.UserError(
            "--replicate takes as many new seeds as the primary study used: leave out "
            "--seeds/--seed-list/--until-decided"
        )
    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(StudySettings)
        if getattr(args, field.name, None) is not None
    }
    if "seed_list" in given:
        given["seed_list"] = tuple(given["seed_list"])
    return dataclasses.replace(preset or StudySettings(), **given)


def list_specs() -> None:
    for spec in every_spec():
        if isinstance(spec, SpecError):
            print(f"{'(broken)':<20} {spec}")
        else:
            print(f"{spec.name:<20} {spec.description}")
    for name in factorial_names():
        try:
            print(f"{'--factorial ' + name:<20} {load_factorial(name).description}")
        except SpecError as error:
            print(f"{'(broken)':<20} {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ablate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="ablations to run")
    parser.add_argument("--all", action="store_true", help="run every spec in ablations/")
    parser.add_argument("--list", action="store_true", help="list the specs and exit")
    parser.add_argument(
        "--retune",
        type=retune_names,
        metavar="lr[,weight_decay]",
        help="also train every arm at its own values of these, each found by the same small "
        "search on validation data, and give each verdict at the reference's settings and at "
        "the arm's own side by side",
    )
    parser.add_argument(
        "--retune-trials",
        type=cli.positive_int,
        default=retune.RETUNE_TRIALS,
        help=f"each arm's --retune budget, in full runs (default {retune.RETUNE_TRIALS})",
    )
    add_study_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)

    if args.list:
        list_specs()
        return 0
    if args.replicate and not args.factorial:
        parser.error("--replicate repeats a factorial study: pass --factorial too")
    if args.factorial and (args.all or args.names):
        parser.error("--factorial runs the specs that are its cells: leave out NAME and --all")
    if args.retune and (args.factorial or args.until_decided):
        parser.error(
            "--retune retunes one-at-a-time arms on fixed seeds: not with --factorial "
            "or --until-decided"
        )
    if not args.factorial and args.all == bool(args.names):
        parser.error("name one or more ablations, or pass --all (or --factorial)")
    every = args.all or args.factorial
    specs = load_specs(spec_names() if every else args.names)  # all parse before training
    if not specs:
        raise SpecError("no specs in ablations/")

    resources = cli.resources(args)
    results_dir = cli.results_dir(args)
    reports_dir = writing.resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    check_saved_files(results_dir)
    settings = study_settings(args)
    plan = settings.plan(specs, run_engine(resources))
    new = runner.run(plan, results_dir, resources, "ablations")
    if args.retune:
        new += searching.run_retuned(plan, args.retune, args.retune_trials, results_dir, resources)
    if args.replicate or settings.replications:
        count = None if args.replicate else settings.replications
        new += runner.run_replications(plan, results_dir, resources, count)
    return writing.finish(
        results_dir,
        reports_dir,
        labels=[
            label
            for spec in specs
            if spec.name in plan.arms
            for label in [spec.name] + [retune.retuned_label(spec.name)] * bool(args.retune)
        ],
        diverged_now=sum(r["status"] != "ok" for r in new),
    )


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
