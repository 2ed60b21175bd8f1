"""How fast is one training epoch of the reference, side by side with two yardsticks?

    python benchmarks/epoch_speed.py [--data-dir DIR] [--repeats 3]

(a) the harness's epoch: in-memory tensors, index_select batches, fused Adam;
(b) the conventional loop: torchvision MNIST + ToTensor/Normalize through a DataLoader, same
    model, optimizer and batch size;
(c) a lower bound: the epoch's forward and backward matrix products alone (torch.mm on
    tensors of the same shapes).
The three are interleaved over the repeats and their medians compared, since the machine is
noisy. The last line is `speedup_vs_dataloader=<b/a> matmul_bound_ratio=<a/c>`.

    python benchmarks/epoch_speed.py --stack K [--device cpu|cuda] [--repeats 3] [--synthetic]

instead times one training epoch per seed of the plain loop (a, on the device) beside seeds
trained as one stacked model (harness.stacked) of 1 and of K members: the stack's epoch divided
by its size. One line each, then `stack_speedup=<plain/stack K> stack1_overhead=<stack 1/plain>`.
On a CPU the products are compute-bound and stacking gains little; on a GPU the plain loop is
launch-bound and a stack of K does K seeds' work for the launches of one. --synthetic times
random tensors of MNIST's shape (55,000 × 784) instead of the real files.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from harness.core.config import Config
from harness.core.data import (
    MEAN,
    STD,
    Split,
    load_mnist,
    resolve_data_dir,
    split,
    staged_mnist,
    stratified_split,
)
from harness.core.model import INPUT_SIZE, NUM_CLASSES, build_model
from harness.core.training import make_optimizer, resolve_device, train_epoch
from harness.stacked.trainer import StackedTrainer

SEED = 0


def harness_epoch(config: Config, data) -> float:
    torch.manual_seed(SEED)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(SEED))
    started = time.perf_counter()
    train_epoch(model, optimizer, data.train_images, data.train_labels, order, config.batch_size)
    return time.perf_counter() - started


def dataloader_epoch(config: Config, loader: DataLoader) -> float:
    torch.manual_seed(SEED)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    model.train()
    started = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x.view(len(x), -1)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def matmul_epoch(config: Config, n_train: int) -> float:
    """Per batch: each layer's forward product, its weight gradient, and (past the first
    layer) its input gradient — the products autograd runs, on random tensors."""
    widths = [INPUT_SIZE, *config.hidden_widths, NUM_CLASSES]
    weights = [torch.randn(out, inp) for inp, out in zip(widths, widths[1:], strict=False)]
    sizes = [min(config.batch_size, n_train - s) for s in range(0, n_train, config.batch_size)]
    inputs = {b: [torch.randn(b, w) for w in widths] for b in set(sizes)}
    started = time.perf_counter()
    for b in sizes:
        acts = inputs[b]
        for layer, weight in enumerate(weights):
            torch.mm(acts[layer], weight.t())  # forward
        for layer, weight in enumerate(weights):
            grad_out = acts[layer + 1]
            torch.mm(grad_out.t(), acts[layer])  # weight gradient
            if layer > 0:
                torch.mm(grad_out, weight)  # input gradient
    return time.perf_counter() - started


def plain_epoch(config: Config, data: Split, device: torch.device) -> float:
    """(a) on the device: one seed's training epoch in the harness's loop, fused Adam."""
    torch.manual_seed(SEED)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model, config)
    images, labels = data.train_images.to(device), data.train_labels.to(device)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SEED))
    order = order.to(device)
    started = time.perf_counter()
    train_epoch(model, optimizer, images, labels, order, config.batch_size)  # .item(): synced
    return time.perf_counter() - started


def stacked_epoch(trainer: StackedTrainer) -> float:
    """One training epoch of every member of a stack, per seed (the stack's time / K)."""
    started = time.perf_counter()
    loss_sum, _ = trainer.train_epoch()
    loss_sum.tolist()  # waits for the device
    return (time.perf_counter() - started) / trainer.k


def synthetic_split(config: Config, seed: int) -> Split:
    """Random tensors of the real split's shapes: step time depends on shapes, not pixels."""
    generator = torch.Generator().manual_seed(seed)
    n_train = 60_000 - config.val_size
    return Split(
        torch.randn(n_train, INPUT_SIZE, generator=generator),
        torch.randint(0, NUM_CLASSES, (n_train,), generator=generator),
        torch.randn(config.val_size, INPUT_SIZE, generator=generator),
        torch.randint(0, NUM_CLASSES, (config.val_size,), generator=generator),
    )


def stack_main(args: argparse.Namespace) -> None:
    """--stack K: per-seed epoch time of the plain loop, a stack of 1 and a stack of K."""
    config = Config()
    device = resolve_device(args.device)
    if args.synthetic:
        splits = [synthetic_split(config, seed) for seed in range(args.stack)]
    else:
        mnist = load_mnist(resolve_data_dir(args.data_dir))
        splits = [split(mnist, config.val_size, seed) for seed in range(args.stack)]
    stacks = {1: StackedTrainer(config, [0], splits[:1], device)}
    if args.stack > 1:
        stacks[args.stack] = StackedTrainer(config, range(args.stack), splits, device)
    if device.type == "cuda":  # kernels chosen and memory pooled before the clock runs
        plain_epoch(config, splits[0], device)
        for trainer in stacks.values():
            stacked_epoch(trainer)
    times: dict[str, list[float]] = {"plain": [], **{f"stack {k}": [] for k in stacks}}
    for repeat in range(args.repeats):
        times["plain"].append(plain_epoch(config, splits[0], device))
        for k, trainer in stacks.items():
            times[f"stack {k}"].append(stacked_epoch(trainer))
        print(
            f"repeat {repeat + 1}: "
            + ", ".join(f"{name} {values[-1]:.3f} s" for name, values in times.items()),
            flush=True,
        )
    medians = {name: statistics.median(values) for name, values in times.items()}
    where = f"{device.type}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"medians over {args.repeats} interleaved repeats, batch {config.batch_size}, {where}")
    print(f"plain loop, 1 seed:        {medians['plain']:.3f} s per seed-epoch")
    for k in stacks:
        print(f"stacked, K={k:<4d} members: {medians[f'stack {k}']:.3f} s per seed-epoch")
    plain, one, many = medians["plain"], medians["stack 1"], medians[f"stack {args.stack}"]
    print(f"stack_speedup={plain / many:.2f} stack1_overhead={one / plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--stack", type=int, metavar="K", help="time seeds trained as one stacked model of K"
    )
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument(
        "--synthetic", action="store_true", help="with --stack: random tensors of MNIST's shape"
    )
    args = parser.parse_args()
    if args.stack is not None:
        if args.stack < 1:
            parser.error("--stack: K must be at least 1")
        stack_main(args)
        return
    if args.device != "cpu" or args.synthetic:
        parser.error("--device and --synthetic go with --stack")
    config = Config()
    data_dir = resolve_data_dir(args.data_dir)
    data = split(load_mnist(data_dir), config.val_size, SEED)
    convert = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    with staged_mnist(data_dir, transform=convert) as (train, _):
        train_idx, _ = stratified_split(train.targets, config.val_size, SEED)
        loader = DataLoader(
            Subset(train, train_idx.tolist()),
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(SEED),
        )
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for repeat in range(args.repeats):
            times["a"].append(harness_epoch(config, data))
            times["b"].append(dataloader_epoch(config, loader))
            times["c"].append(matmul_epoch(config, len(data.train_images)))
            print(
                f"repeat {repeat + 1}: harness {times['a'][-1]:.2f} s, dataloader "
                f"{times['b'][-1]:.2f} s, matmul bound {times['c'][-1]:.2f} s",
                flush=True,
            )
    a, b, c = (statistics.median(times[k]) for k in "abc")
    print(
        f"medians over {args.repeats} interleaved repeats, batch {config.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}: harness {a:.2f} s, "
        f"dataloader {b:.2f} s, matmul bound {c:.2f} s per epoch"
    )
    print(f"speedup_vs_dataloader={b / a:.2f} matmul_bound_ratio={a / c:.2f}")


if __name__ == "__main__":
    main()
