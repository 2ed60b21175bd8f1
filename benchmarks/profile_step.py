"""Where a stacked epoch's GPU time goes: torch.profiler's kernel table for one training epoch.

    HARNESS_DATA_DIR=../shared/mnist python benchmarks/profile_step.py [--k 32] [--rows 15]

The epoch runs eagerly (kernel by kernel, the kernels a CUDA graph replays), after one epoch
of warm-up; the table sums each kernel's device time over the epoch's 430 steps.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from harness.core.config import Config
from harness.core.data import load_mnist, resolve_data_dir, split
from harness.stacked.trainer import StackedTrainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=32, help="members in the stack")
    parser.add_argument("--rows", type=int, default=15, help="kernels listed")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_step.py: CUDA is not available here: run it on a GPU", file=sys.stderr)
        return 2
    config = Config()
    mnist = load_mnist(resolve_data_dir())
    splits = (split(mnist, config.val_size, seed) for seed in range(args.k))
    trainer = StackedTrainer(config, range(args.k), splits, "cuda", mode="eager")
    trainer.train_epoch()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        trainer.train_epoch()
        torch.cuda.synchronize()
    print(f"K={args.k}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
