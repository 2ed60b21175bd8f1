"""Runs ablations against the reference across seeds, paired by seed, and reports them.

    python -m harness.ablate no_batchnorm            # 5 seeds of the variant and the reference
    python -m harness.ablate --all --until-decided   # seeds added until each verdict is decided
    python -m harness.ablate --list

Runs already stored are not trained again, so an interrupted grid resumes where it stopped and a
completed one reruns in seconds. A new ablation is a new TOML file in ablations/.
"""

from __future__ import annotations

import argparse

from harness import cli
from harness.report import writing
from harness.report.folder import check_report_folder
from harness.study import runner
from harness.study.grid import run_engine
from harness.study.plan import DEFAULT_MARGIN, Design, Plan, arm_from_spec
from harness.study.specs import (
    REFERENCE,
    Spec,
    SpecError,
    every_spec,
    load_spec,
    load_specs,
    spec_names,
)

DEFAULT_PILOT_SEEDS = 5
DEFAULT_MAX_SEEDS = 30


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
        "--seeds", type=cli.positive_int, help="seeds 0..N-1 (default: each spec's, else 5)"
    )
    seeds.add_argument("--seed-list", type=parse_seed_list, help="explicit seeds, e.g. 0,1,2")
    parser.add_argument("--epochs", type=cli.positive_int, help="override every spec's epochs")
    parser.add_argument(
        "--margin",
        type=margin_pp,
        default=DEFAULT_MARGIN,
        help=f"equivalence margin in percentage points (default {100 * DEFAULT_MARGIN:g})",
    )
    parser.add_argument(
        "--until-decided",
        action="store_true",
        help="a pilot of --pilot-seeds per arm, then as many seeds as the pilot's spread says "
        "each arm needs (Stein's two-stage design), at most --max-seeds",
    )
    parser.add_argument(
        "--pilot-seeds", type=cli.positive_int, help=f"default {DEFAULT_PILOT_SEEDS}"
    )
    parser.add_argument("--max-seeds", type=cli.positive_int, help=f"default {DEFAULT_MAX_SEEDS}")
    cli.add_worker_args(parser)
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")


def design_for(args: argparse.Namespace) -> Design | None:
    """Seeds until decided, if asked for: the pilot's and the cap's seed counts."""
    if not args.until_decided:
        return None
    design = Design(args.pilot_seeds or DEFAULT_PILOT_SEEDS, args.max_seeds or DEFAULT_MAX_SEEDS)
    if design.pilot_seeds < 2:
        raise cli.UserError("--pilot-seeds: the pilot needs at least 2 seeds to measure spread")
    if args.seeds or args.seed_list:
        raise cli.UserError("--until-decided chooses the seeds: leave out --seeds/--seed-list")
    if design.max_seeds < design.pilot_seeds:
        raise cli.UserError("--max-seeds must be at least --pilot-seeds")
    return design


def seeds_for(spec: Spec, args: argparse.Namespace, design: Design | None) -> list[int]:
    if design is not None:
        return list(range(design.pilot_seeds))
    if args.seed_list:
        return args.seed_list
    return list(range(args.seeds or spec.seeds))


def plan_for(specs: list[Spec], args: argparse.Namespace, engine: str) -> Plan:
    """The arms asked for, the reference on every seed any of them uses."""
    design = design_for(args)
    arms = {REFERENCE: arm_from_spec(load_spec(REFERENCE), [], args.epochs)}
    for spec in specs:
        arms[spec.name] = arm_from_spec(spec, seeds_for(spec, args, design), args.epochs)
    return Plan(arms, engine, args.margin, design).with_reference_seeds()


def list_specs() -> None:
    for spec in every_spec():
        if isinstance(spec, SpecError):
            print(f"{'(broken)':<20} {spec}")
        else:
            print(f"{spec.name:<20} {spec.description}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ablate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="ablations to run")
    parser.add_argument("--all", action="store_true", help="run every spec in ablations/")
    parser.add_argument("--list", action="store_true", help="list the specs and exit")
    add_study_args(parser)
    cli.add_common_args(parser)
    args = parser.parse_args(argv)

    if args.list:
        list_specs()
        return 0
    if args.all == bool(args.names):
        parser.error("name one or more ablations, or pass --all")
    specs = load_specs(spec_names() if args.all else args.names)  # all parse before training
    if not specs:
        raise SpecError("no specs in ablations/")

    resources = cli.resources(args)
    results_dir = cli.results_dir(args)
    reports_dir = writing.resolve_reports_dir(args.reports_dir)
    check_report_folder(reports_dir, results_dir)
    new = runner.run(
        plan_for(specs, args, run_engine(resources)), results_dir, resources, "ablations"
    )
    return writing.finish(
        results_dir,
        reports_dir,
        labels=[spec.name for spec in specs],
        diverged_now=sum(r["status"] != "ok" for r in new),
    )


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
