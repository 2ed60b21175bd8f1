"""Seeds trained as one stacked model on a GPU: epoch speed by stack size, then every arm.

    HARNESS_DATA_DIR=../shared/mnist python benchmarks/gpu_stack.py [--speed-only] [--out FILE]

1. Speed: the plain single-seed loop of harness.core.training, then one line per stack size K and
   step mode (default K = 1, 8, 32, 128): the seconds per seed-epoch (training and validation,
   the stack's epoch time divided by K; the median of the mode's epochs after its first). Every
   K runs with CUDA graphs (each full batch's step one graph replay); K in --compare-ks (1, 32)
   also eagerly, on the same stack right after, and (on CUDA) with graphs and each of VARIANTS
   (the foreach Adam instead of the fused kernel; cuDNN's BatchNorm instead of torch's), each
   on a stack of its own. Then a check that graphs change speed, not numbers: 2 epochs of a
   stack of 4 (a member frozen and an lr cut between them), graphed and eager, compared.
   --speed-only stops here.
2. Arms: the reference and every spec in ablations/*.toml, each trained as one stack of 30
   seeds (0-29, --arms-seeds) for 15 epochs; one line per arm with its wall time and mean test
   accuracy, then the total. Every record (harness.core.record.RunRecord plus engine
   "cuda-stacked" and stack_size) is written as one JSON line to --out (default
   $OUT/gpu_records.jsonl when $OUT is set, else ./gpu_records.jsonl), appended arm by arm, so
   an interrupted run keeps its arms.

Sized for an H100 in under 4 minutes; --budget-s stops starting new arms past that many seconds.
--no-graphs runs every stack eagerly (speed and arms). A failed graph capture prints one warning
and the stack goes on eagerly; its speed line says so. --smoke runs the same code on the CPU on
small synthetic data, the graph mode replaced by its uncaptured twin (a check of the script, not
of speed).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from harness.core.config import Config
from harness.core.data import Mnist, load_mnist, resolve_data_dir, split
from harness.core.model import INPUT_SIZE, NUM_CLASSES, build_model
from harness.core.store import RunKey, RunStore
from harness.core.training import evaluate, make_optimizer, train_epoch
from harness.stacked.adam import foreach_adam
from harness.stacked.trainer import StackedTrainer, run_stacked
from harness.study.plan import Plan, arm_from_spec, save_plan
from harness.study.specs import REFERENCE, load_spec, spec_names


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_seconds(config: Config, mnist: Mnist, epochs: int, device: torch.device) -> float:
    """Median seconds of the plain loop's epochs (training and validation) after the first."""
    data = split(mnist, config.val_size, 0)
    torch.manual_seed(0)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model, config)
    images, labels = data.train_images.to(device), data.train_labels.to(device)
    val_images, val_labels = data.val_images.to(device), data.val_labels.to(device)
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        train_epoch(model, optimizer, images, labels, order.to(device), config.batch_size)
        _, predictions = evaluate(model, val_images, val_labels)
        (predictions == val_labels).double().mean().item()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:] or times)


def release(device: torch.device) -> None:
    """A stack's device memory (and its graph's pool) back before the next one."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# what each of the harness's choices for speed is worth: the trainer with that choice undone
VARIANTS: dict[str, dict[str, Any]] = {  # StackedTrainer's options
    ", foreach Adam": {"adam": foreach_adam},
    ", cuDNN BatchNorm": {"cudnn_batchnorm": True},
}


def stacked_seconds(
    config: Config,
    mnist: Mnist,
    k: int,
    epochs: int,
    device: torch.device,
    modes: list[str],
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, float], float, str]:
    """Per mode, the median seconds of a stack of k's epochs (training and validation) after
    the mode's first, divided by k, the modes timed one after the other on one stack; the
    seconds it took to split the seeds' data and move it to the device; and the mode the last
    graph-mode epoch actually ran ("static" after a failed capture). options: the trainer's
    (one of VARIANTS)."""
    started = time.perf_counter()
    splits = (split(mnist, config.val_size, seed) for seed in range(k))
    trainer = StackedTrainer(config, range(k), splits, device, **(options or {}))
    synchronize(device)
    setup = time.perf_counter() - started
    seconds, ran = {}, modes[0]
    for mode in modes:
        trainer.mode = mode  # a stack may change mode between epochs
        times = []
        for _ in range(epochs):
            started = time.perf_counter()
            loss_sum, _ = trainer.train_epoch()
            val_loss, val_correct = trainer.evaluate(trainer.val_images, trainer.val_labels)
            torch.stack([loss_sum, val_loss, val_correct.float()]).tolist()  # waits for the GPU
            times.append(time.perf_counter() - started)
        seconds[mode] = statistics.median(times[1:] or times) / k
        if mode == modes[0]:
            ran = trainer.mode
    del trainer
    release(device)
    return seconds, setup, ran


def graph_check(config: Config, mnist: Mnist, device: torch.device, mode: str) -> str:
    """The largest differences between a graphed and an eager stack of 4 over 2 epochs, with
    a member frozen and another's lr cut between them, as fit_stacked does in place."""
    data = [split(mnist, config.val_size, seed) for seed in range(4)]
    outcomes = []
    for step_mode in (mode, "eager"):
        trainer = StackedTrainer(config, range(4), data, device, mode=step_mode)
        losses = [trainer.train_epoch()[0]]
        trainer.freeze(1)
        trainer.lr[0] = config.lr / 2
        losses.append(trainer.train_epoch()[0])
        weights = torch.cat([t.detach().flatten() for t in trainer.net.state.values()])
        outcomes.append((torch.stack(losses) / len(data[0].train_labels), weights, trainer.mode))
        del trainer
    release(device)
    (loss_a, weights_a, ran), (loss_b, weights_b, _) = outcomes
    if torch.equal(loss_a, loss_b) and torch.equal(weights_a, weights_b):
        verdict = "identical"
    else:
        loss_diff = (loss_a - loss_b).abs().max().item()
        weight_diff = (weights_a - weights_b).abs().max().item()
        verdict = f"max |train loss diff| {loss_diff:.2e}, max |weight diff| {weight_diff:.2e}"
    return f"{ran} vs eager, K=4 x 2 epochs (member frozen, lr cut): {verdict}"


def synthetic_mnist(n_train: int, n_test: int) -> Mnist:
    """Noisy class prototypes of MNIST's shape, for --smoke."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(NUM_CLASSES, INPUT_SIZE, generator=generator)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % NUM_CLASSES
        return prototypes[labels] + 2 * torch.randn(n, INPUT_SIZE, generator=generator), labels

    return Mnist(*sample(n_train), *sample(n_test), "synthetic")


def default_out() -> Path:
    return (
        Path(os.environ["OUT"]) / "gpu_records.jsonl"
        if "OUT" in os.environ
        else Path("gpu_records.jsonl")
    )


def save_as_study(records_file: Path, results_dir: Path) -> None:
    """The records of a run of this script as a results folder (runs/*.json and plan.json), so
    that `python -m harness.report --results-dir DIR` reports it like any study."""
    store = RunStore(results_dir)
    records = [json.loads(line) for line in records_file.read_text().splitlines() if line]
    for record in records:
        store.save(record)
    labels = sorted({r["label"] for r in records}, key=lambda label: label != REFERENCE)
    arms = {
        label: arm_from_spec(
            load_spec(label),
            sorted({r["seed"] for r in records if r["label"] == label}),
            epochs=next(r["config"]["epochs"] for r in records if r["label"] == label),
        )
        for label in labels
    }
    (conditions,) = {RunKey.of(r).conditions for r in records}
    save_plan(Plan(arms, conditions), results_dir)
    print(f"{len(records)} records of {len(arms)} arms -> {results_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", help="MNIST/raw/*.gz (default: $HARNESS_DATA_DIR)")
    parser.add_argument("--out", type=Path, help="JSON lines of the records")
    parser.add_argument("--ks", default="1,8,32,128", help="stack sizes timed (comma-separated)")
    parser.add_argument("--compare-ks", default="1,32", help="of those, the ones timed eagerly too")
    parser.add_argument("--speed-epochs", type=int, default=3, help="epochs timed per K and mode")
    parser.add_argument("--speed-only", action="store_true", help="the speed section, then exit")
    parser.add_argument(
        "--no-graphs", action="store_true", help="no CUDA graphs: every stack eager"
    )
    parser.add_argument(
        "--arms-seeds", "--seeds", dest="seeds", type=int, default=30, help="seeds per arm"
    )
    parser.add_argument("--epochs", type=int, default=15, help="epochs per arm")
    parser.add_argument("--arms", help="comma-separated spec names (default: all)")
    parser.add_argument("--budget-s", type=float, default=180, help="no new arm after this")
    parser.add_argument("--smoke", action="store_true", help="CPU, synthetic data, tiny sizes")
    parser.add_argument(
        "--save-study",
        nargs=2,
        type=Path,
        metavar=("RECORDS", "RESULTS_DIR"),
        help="no training: store an earlier run's records (JSON lines) as a results folder",
    )
    args = parser.parse_args(argv)
    if args.save_study:
        save_as_study(*args.save_study)
        return 0

    compare = {int(k) for k in args.compare_ks.split(",") if k}
    if args.smoke:
        device = torch.device("cpu")
        mnist = synthetic_mnist(3000, 500)
        ks, args.seeds, args.epochs, args.speed_epochs = [1, 2], 2, 1, 2
        compare = {2}
        shrink = {"val_size": 500}
    else:
        if not torch.cuda.is_available():
            print(
                "gpu_stack.py: CUDA is not available here (torch.cuda.is_available() is False);"
                " run it on a GPU machine, or pass --smoke to check the script on the CPU",
                file=sys.stderr,
            )
            return 2
        device = torch.device("cuda")
        ks = [int(k) for k in args.ks.split(",")]
        shrink = {}
        mnist = load_mnist(resolve_data_dir(args.data_dir))
    # on the CPU (--smoke) the graph path runs uncaptured: the same buffers and step
    graph_mode = "graph" if device.type == "cuda" else "static"
    out = args.out or default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}; records -> {out}", flush=True)

    reference = dataclasses.replace(Config(), **shrink)
    plain = plain_seconds(reference, mnist, args.speed_epochs, device)
    print(f"plain loop  K=1    {plain:.4f} s per seed-epoch", flush=True)
    for k in ks:
        modes = [graph_mode, "eager"] if k in compare else [graph_mode]
        if args.no_graphs:
            modes = ["eager"]
        variants: dict[str, dict[str, Any]] = {"": {}}
        if k in compare and device.type == "cuda":
            variants |= VARIANTS
        for variant, options in variants.items():
            seconds, setup, ran = stacked_seconds(
                reference,
                mnist,
                k,
                args.speed_epochs,
                device,
                modes[:1] if options else modes,
                options,
            )
            for mode, per_seed in seconds.items():
                label = {"graph": "graphs", "static": "static", "eager": "eager"}[mode]
                if mode == "graph" and ran != "graph":
                    label = "graphs (capture failed: ran eagerly)"
                print(
                    f"stacked     K={k:<4d} {label + variant:<7s} {per_seed:.4f} s per "
                    f"seed-epoch ({per_seed * k:.3f} s per stack epoch, "
                    f"{plain / per_seed:.1f}x the plain loop; setup {setup:.1f} s)",
                    flush=True,
                )
    if not args.no_graphs:
        print(f"graph check: {graph_check(reference, mnist, device, graph_mode)}", flush=True)
    print(f"speed section {time.perf_counter() - started:.1f} s", flush=True)
    if args.speed_only:
        return 0

    names = args.arms.split(",") if args.arms else spec_names()
    names = sorted(names, key=lambda n: n != REFERENCE)  # the reference first
    seeds = list(range(args.seeds))
    arms_started = time.perf_counter()
    for arm in names:
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: arm {arm} and later ones skipped")
            break
        config = dataclasses.replace(load_spec(arm).config, epochs=args.epochs, **shrink)
        arm_started = time.perf_counter()
        graphs = False if args.no_graphs else None  # None: on CUDA
        records = run_stacked(config, seeds, mnist, label=arm, device=device, graphs=graphs)
        wall = time.perf_counter() - arm_started
        with out.open("a") as file:
            for record in records:
                file.write(json.dumps(record) + "\n")
        ok = [r["metrics"]["test_accuracy"] for r in records if r["status"] == "ok"]
        mean = f"{100 * statistics.mean(ok):.2f}%" if ok else "n/a"
        print(
            f"arm {arm:<18s} K={len(seeds)} x {args.epochs} epochs: {wall:6.1f} s wall, "
            f"mean test accuracy {mean} ({len(ok)}/{len(seeds)} ok)",
            flush=True,
        )
    print(
        f"arms total {time.perf_counter() - arms_started:.1f} s; "
        f"script total {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
