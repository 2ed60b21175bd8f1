"""How fast is one training epoch of the reference, side by side with two yardsticks?

    python benchmarks/epoch_speed.py [--data-dir DIR] [--repeats 3]

(a) the harness's epoch: in-memory tensors, index_select batches, fused Adam;
(b) the conventional loop: torchvision MNIST + ToTensor/Normalize through a DataLoader, same
    model, optimizer and batch size;
(c) a lower bound: the epoch's forward and backward matrix products alone (torch.mm on
    tensors of the same shapes).
The three are interleaved over the repeats and their medians compared, since the machine is
noisy. The last line is `speedup_vs_dataloader=<b/a> matmul_bound_ratio=<a/c>`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from harness.config import Config
from harness.data import (
    MEAN,
    STD,
    load_mnist,
    resolve_data_dir,
    split,
    staged_mnist,
    stratified_split,
)
from harness.model import INPUT_SIZE, NUM_CLASSES, build_model
from harness.train import make_optimizer, train_epoch

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
