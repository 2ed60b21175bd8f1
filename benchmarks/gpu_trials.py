"""Search trials of the reference's shape stacked on a GPU: how long 1,000 full trials take.

    HARNESS_DATA_DIR=../shared/mnist python -m benchmarks.gpu_trials [--trials 1000] [--out FILE]

An Optuna study with the search's space (harness.study.search.suggest_config) but the
reference's shape held fixed by Optuna's PartialFixedSampler (widths 512/256/128, BatchNorm,
batch 128) and every trial trained its full --epochs (15; no pruning): each trial its own
learning rate, weight decay, dropout rates, shift and plateau schedule, on the search's seed
(1,000,000). Trials are asked --round at a time (default: all of them) and trained by
harness.study.stacked_search, stacks as large as the GPU's memory holds. Prints the wall time,
trials per minute and the expected best validation accuracy of n trials (Tang et al.'s
estimator, as on the search page); writes the study's summary (the search's tuned.json form)
to --out (default $OUT/gpu_trials.json when $OUT is set, else ./gpu_trials.json).

--smoke runs the same code on the CPU on small synthetic data (a check of the script, not of
speed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from benchmarks.gpu_stack import synthetic_mnist
from harness.core.config import Config
from harness.core.data import load_mnist, resolve_data_dir, split
from harness.stats.expected_max import expected_max
from harness.study.search import summarize
from harness.study.search._stacked import optimize_stacked
from harness.study.settings import SEARCH_SEED

REFERENCE_SHAPE = {"width": 512, "batchnorm": True, "batch_size": 128}


def default_out() -> Path:
    folder = Path(os.environ["OUT"]) if "OUT" in os.environ else Path(".")
    return folder / "gpu_trials.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", help="MNIST/raw/*.gz (default: $HARNESS_DATA_DIR)")
    parser.add_argument("--out", type=Path, help="the study's summary (JSON)")
    parser.add_argument("--trials", type=int, default=1000, help="full trials")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of every trial")
    parser.add_argument("--round", type=int, help="trials asked at once (default: all)")
    parser.add_argument("--smoke", action="store_true", help="CPU, synthetic data, tiny sizes")
    args = parser.parse_args(argv)

    base = Config()
    if args.smoke:
        device, mnist = torch.device("cpu"), synthetic_mnist(3000, 500)
        base = Config(val_size=500)
        args.trials, args.epochs = min(args.trials, 4), 1
    elif not torch.cuda.is_available():
        print(
            "gpu_trials.py: CUDA is not available here (torch.cuda.is_available() is False); "
            "run it on a GPU machine, or pass --smoke to check the script on the CPU",
            file=sys.stderr,
        )
        return 2
    else:
        device, mnist = torch.device("cuda"), load_mnist(resolve_data_dir(args.data_dir))
    fixed = REFERENCE_SHAPE | {"epochs": args.epochs}
    sampler = optuna.samplers.PartialFixedSampler(
        fixed, optuna.samplers.TPESampler(seed=SEARCH_SEED, constant_liar=True)
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        direction="maximize", sampler=sampler, pruner=optuna.pruners.NopPruner()
    )
    data = split(mnist, base.val_size, SEARCH_SEED)
    started = time.perf_counter()
    optimize_stacked(
        study, data, base, args.trials, args.epochs, SEARCH_SEED, device, args.round or args.trials
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started

    searched = dataclasses.replace(
        summarize(study, "in memory", SEARCH_SEED), trials_per_round=args.round or args.trials
    )
    summary = searched.to_dict() | {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "seconds": seconds,
    }
    out = args.out or default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    values = np.array([t.value for t in study.trials if t.value is not None])
    print(
        f"{len(values)} trials x {args.epochs} epochs, {summary['device']}, torch "
        f"{torch.__version__}: {seconds:.0f} s, {len(values) / seconds * 60:.0f} trials/min; "
        f"best val acc {100 * values.max():.2f}%"
    )
    for n in (1, 10, 100, len(values)):
        if n <= len(values):
            print(f"expected best val acc of {n} trials: {100 * expected_max(values, n):.2f}%")
    print(f"summary: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
