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

from harness import cli
from harness.cli.progress import progress_bar
from harness.core.store import RunStore
from harness.report.folder import check_report_folder, resolve_reports_dir
from harness.stats.design import MAX_SEEDS, PILOT_SEEDS
from harness.stats.verdicts import MARGIN
from harness.study import runner, search
from harness.study.factorial_design import DEFAULT_FACTORIAL, factorial_names, load_factorial
from harness.study.grid import check_before_training, run_conditions
from harness.study.plan import retuned_label
from harness.study.settings import RETUNABLE, RETUNE_TRIALS, StudySettings
from harness.study.specs import DEFAULT_SEEDS, SpecError, every_spec


def seed_list(value: str) -> tuple[int, ...]:
    try:
        seeds = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None
    if not seeds or seeds[0] < 0:
        raise argparse.ArgumentTypeError("expected one or more seeds ≥ 0")
    return tuple(seeds)


def margin_pp(value: str) -> float:
    """--margin in percentage points, kept as a fraction of accuracy."""
    try:
        margin = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pp, got {value!r}") from None
    if not 0 < margin < 100:
        raise argparse.ArgumentTypeError(f"expected a margin between 0 and 100 pp, got {value}")
    return margin / 100


def percent(value: str) -> float:
    """An accuracy in %, kept as a fraction."""
    try:
        return float(value) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of %, got {value!r}") from None


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py: which seeds and epochs, verdicts, how to spread work."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=cli.positive_int,
        help=f"seeds 0..N-1 (default: each spec's, else {DEFAULT_SEEDS})",
    )
    seeds.add_argument("--seed-list", type=seed_list, help="explicit seeds, e.g. 0,1,2")
    parser.add_argument("--epochs", type=cli.positive_int, help="override every spec's epochs")
    parser.add_argument(
        "--budgets",
        type=cli.comma_separated(cli.positive_int),
        help="training budgets (epochs) whose verdicts join the error budget beside the full "
        "one, e.g. 5,10 (default)",
    )
    parser.add_argument(
        "--targets",
        type=cli.comma_separated(percent),
        help="validation accuracies in %% whose time to reach the reports give, e.g. 98,98.5 "
        "(default: two the reference reaches, from its runs)",
    )
    parser.add_argument(
        "--margin",
        type=margin_pp,
        help=f"equivalence margin in percentage points (default {100 * MARGIN:g})",
    )
    parser.add_argument(
        "--until-decided",
        action="store_true",
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
    cli.add_recipe_args(parser)
    cli.add_worker_args(parser)
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")


def study_settings(
    args: argparse.Namespace, specs: tuple[str, ...] | None, preset: StudySettings
) -> StudySettings:
    """The preset with each study option the command line gave, one by one."""
    given = {
        "specs_dir": cli.specs_dir(args),
        "base": cli.base_config(args),
        "specs": specs,
        "seeds": args.seeds,
        "seed_list": args.seed_list,
        "epochs": args.epochs,
        "budgets": args.budgets,
        "targets": args.targets,
        "margin": args.margin,
        "until_decided": args.until_decided or None,
        "pilot_seeds": args.pilot_seeds,
        "max_seeds": args.max_seeds,
        "pooled_pilot": args.pooled_pilot or None,
        "factorial": args.factorial,
        "replicate": args.replicate or None,
        "retune": getattr(args, "retune", None),
        "retune_trials": getattr(args, "retune_trials", None),
    }
    return dataclasses.replace(preset, **{k: v for k, v in given.items() if v is not None})


def list_specs(args: argparse.Namespace) -> None:
    folder, base = cli.specs_dir(args), cli.base_config(args)
    for spec in every_spec(folder, base):
        if isinstance(spec, SpecError):
            print(f"{'(broken)':<20} {spec}")
        else:
            print(f"{spec.name:<20} {spec.description}")
    for name in factorial_names(folder):
        try:
            print(f"{'--factorial ' + name:<20} {load_factorial(name, folder, base).description}")
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
        type=cli.comma_separated(str),
        metavar="lr[,weight_decay]",
        help="also train every arm at its own values of these "
        f"({', '.join(RETUNABLE)}), each found by the same small search on validation data, "
        "and give each verdict at the reference's settings and at the arm's own side by side",
    )
    parser.add_argument(
        "--retune-trials",
        type=cli.positive_int,
        help=f"each arm's --retune budget, in full runs (default {RETUNE_TRIALS})",
    )
    add_study_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)

    if args.list:
        list_specs(args)
        return 0
    if args.all and args.names:
        parser.error("name ablations or pass --all, not both")
    if not (args.all or args.names or args.factorial):
        parser.error("name one or more ablations, or pass --all (or --factorial)")
    settings = study_settings(args, tuple(args.names) or None, StudySettings())
    specs = settings.load_specs()  # all parse before training
    if not specs:
        raise SpecError(f"no specs in {settings.specs_dir}", "specs_dir")

    resources = cli.resources(args)
    results_dir = cli.results_dir(args)
    reports_dir = resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    search.check_saved_files(results_dir)
    check_before_training(RunStore(results_dir), resources)
    plan = settings.plan(specs, run_conditions(resources))
    with progress_bar("ablations") as bar:
        new = runner.run_study(plan, results_dir, resources, bar)
        if settings.retune:
            new += search.run_retuned(plan, settings, results_dir, resources, bar)
        if settings.replicate or settings.replications:
            count = None if settings.replicate else settings.replications
            new += runner.run_replications(plan, results_dir, resources, count, bar)
    return cli.finish(
        results_dir,
        reports_dir,
        labels=[
            label
            for spec in specs
            if spec.name in plan.arms
            for label in [spec.name] + [retuned_label(spec.name)] * bool(settings.retune)
        ],
        diverged_now=sum(r["status"] != "ok" for r in new),
    )


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
