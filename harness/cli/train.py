"""Trains one run and stores it.

    python -m harness.train [--config FILE] [--set KEY=VALUE ...] [--seed N] [--epochs N]

One seed fixes everything random (harness.core.seeding); the same config, seed and thread count on
the same machine give identical numbers. A run already stored is shown, not trained again.
"""

from __future__ import annotations

import argparse

import torch

from harness import cli
from harness.cli.progress import epoch_bar
from harness.core.config import load_config
from harness.core.data import check_dataset, data_source, load_mnist
from harness.core.record import RunRecord
from harness.core.store import RunConditions, RunStore, this_platform
from harness.core.training import engine, resolve_device, run_one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=cli.existing_file, help="TOML file of config overrides")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, VALUE in TOML syntax (repeatable)",
    )
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    parser.add_argument("--epochs", type=cli.positive_int, help="shorthand for --set epochs=N")
    parser.add_argument(
        "--threads", type=cli.positive_int, help="torch threads (default: one per core)"
    )
    parser.add_argument("--label", default="", help="a name stored with the run")
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    assignments = args.set + ([f"epochs={args.epochs}"] if args.epochs is not None else [])
    config = load_config(args.config, assignments)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_dataset(cli.data_dir(args))
    store = RunStore(cli.results_dir(args))
    store.check_writable()
    store.set_aside_unreadable()
    conditions = RunConditions(
        engine(device, torch.get_num_threads()),
        this_platform(device),
        data_source(cli.data_dir(args)),
    )
    key = conditions.key(config.hash(), args.seed)
    if store.has(key):
        print(f"already stored: {store.path(key)}")
        record = store.load(key)
    else:
        with store.claim(key) as mine:
            if not mine:
                raise cli.UserError(f"{store.path(key).name} is being trained by another command")
            mnist = load_mnist(cli.data_dir(args))
            with epoch_bar(config.epochs, f"seed {args.seed}") as on_epoch:
                record = run_one(config, args.seed, mnist, args.label, device, on_epoch)
            print(f"stored: {store.save(record)}")
    print(summary(record))
    return 0 if record["status"] == "ok" else 1


def summary(record: RunRecord) -> str:
    if record["status"] != "ok":
        return f"diverged at epoch {record['diverged_epoch']}: {record['divergence']}"
    m = record["metrics"]
    return (
        f"test accuracy {100 * m['test_accuracy']:.2f}%  test loss {m['test_loss']:.4f}  "
        f"best val accuracy {100 * m['best_val_accuracy']:.2f}% (epoch {m['best_epoch']})  "
        f"parameters {record['parameters']:,}  {record['seconds_per_epoch']:.2f} s/epoch"
    )


if __name__ == "__main__":
    raise SystemExit(cli.guard(main))
