"""Do N worker processes of one thread train faster than one process of N threads?

    python benchmarks/worker_throughput.py [--data-dir DIR] [--repeats 3] [--width 512]

The question behind `--workers`' default (one per core). For the reference network (or the given
first hidden width), times one training epoch in one process with all cores' threads, then one
epoch in each of N processes with one thread each, started together; repeats interleave the two.
Throughput is epochs per second of wall time. The last line is `workers_vs_threads=<ratio>`,
the median throughput of N × 1 over 1 × N (above 1: workers win).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import time

import torch

from harness.core.config import Config
from harness.core.data import load_mnist, resolve_data_dir, split
from harness.core.model import build_model
from harness.core.training import make_optimizer, train_epoch

SEED = 0


def epoch_seconds(data_dir: str, width: int, threads: int, start: multiprocessing.Barrier) -> float:
    torch.set_num_threads(threads)
    config = dataclasses.replace(Config(), hidden_widths=(width, width // 2, width // 4))
    data = split(load_mnist(data_dir), config.val_size, SEED)
    torch.manual_seed(SEED)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(SEED))
    start.wait()  # every process has loaded its data: the clocks start together
    started = time.perf_counter()
    train_epoch(model, optimizer, data.train_images, data.train_labels, order, config.batch_size)
    return time.perf_counter() - started


def wall_seconds(data_dir: str, width: int, processes: int, threads: int) -> float:
    """Wall time of `processes` epochs run side by side (the slowest one's)."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        start = manager.Barrier(processes)
        args = [(data_dir, width, threads, start)] * processes
        return max(pool.starmap(epoch_seconds, args))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=512, help="first hidden width")
    args = parser.parse_args()
    data_dir = str(resolve_data_dir(args.data_dir))
    cores = os.cpu_count() or 1
    threads_rates, workers_rates = [], []
    for repeat in range(args.repeats):
        threads_rates.append(1 / wall_seconds(data_dir, args.width, 1, cores))
        workers_rates.append(cores / wall_seconds(data_dir, args.width, cores, 1))
        print(
            f"repeat {repeat + 1}: 1 process × {cores} threads {threads_rates[-1]:.3f} epochs/s, "
            f"{cores} processes × 1 thread {workers_rates[-1]:.3f} epochs/s",
            flush=True,
        )
    one, many = statistics.median(threads_rates), statistics.median(workers_rates)
    print(
        f"medians over {args.repeats} interleaved repeats, width {args.width}, {cores} cores, "
        f"torch {torch.__version__}: 1 × {cores} threads {one:.3f} epochs/s, "
        f"{cores} × 1 thread {many:.3f} epochs/s"
    )
    print(f"workers_vs_threads={many / one:.2f}")


if __name__ == "__main__":
    main()
