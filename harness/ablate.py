"""Runs ablations against the reference across seeds, paired by seed, and reports them.

    python -m harness.ablate no_batchnorm            # 5 seeds of the variant and the reference
    python -m harness.ablate --all --workers 2
    python -m harness.ablate --list

Runs already stored are not trained again, so an interrupted grid resumes where it stopped and a
completed one reruns in seconds. A new ablation is a new TOML file in ablations/.
"""

from __future__ import annotations

import argparse
import dataclasses

from harness import cli, report
from harness.grid import Task, run_grid
from harness.specs import REFERENCE, Spec, SpecError, load_spec, spec_names


def parse_seed_list(value: str) -> list[int]:
    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def add_study_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with run_all.py: which seeds and epochs, and how to spread the work."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: each spec's, else 5)")
    seeds.add_argument("--seed-list", type=parse_seed_list, help="explicit seeds, e.g. 0,1,2")
    parser.add_argument("--epochs", type=int, help="override every spec's epochs")
    cli.add_worker_args(parser)
    parser.add_argument("--reports-dir", help="where reports go (default: ./reports)")


def seeds_for(spec: Spec, args: argparse.Namespace) -> list[int]:
    if args.seed_list:
        return args.seed_list
    return list(range(args.seeds or spec.seeds))


def with_epochs(spec: Spec, epochs: int | None) -> Spec:
    if epochs is None:
        return spec
    return dataclasses.replace(spec, config=dataclasses.replace(spec.config, epochs=epochs))


def grid(specs: list[Spec], args: argparse.Namespace) -> list[Task]:
    """Each spec over its seeds, plus the reference on every seed any variant uses."""
    reference = with_epochs(load_spec(REFERENCE), args.epochs)
    tasks, reference_seeds = [], set()
    for spec in specs:
        seeds = seeds_for(spec, args)
        reference_seeds.update(seeds)
        tasks += [Task(spec.name, with_epochs(spec, args.epochs).config, s) for s in seeds]
    tasks = [Task(REFERENCE, reference.config, s) for s in sorted(reference_seeds)] + tasks
    return tasks


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
        for name in spec_names():
            print(f"{name:<20} {load_spec(name).description}")
        return 0
    if args.all == bool(args.names):
        parser.error("name one or more ablations, or pass --all")
    names = spec_names() if args.all else args.names
    specs = [load_spec(name) for name in names]  # every spec parses before anything trains
    if not specs:
        raise SpecError("no specs in ablations/")

    tasks = grid(specs, args)
    new = run_grid(tasks, args, "ablations")
    diverged = [r for r in new if r["status"] != "ok"]

    reports_dir = report.resolve_reports_dir(args.reports_dir)
    study = report.load_study(cli.results_dir(args), epochs=args.epochs)
    print(report.comparison_markdown(study, [s.name for s in specs]))
    index = report.write_reports(study, reports_dir)
    print(f"\nreports: {index}")
    return 1 if diverged else 0


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
