"""Many seeds of one config, or many search trials of one shape on one seed, trained at once
as one stacked model (weights K × out × in).

On a GPU the reference network is launch-bound: one seed's step is a hundred-odd small kernels
whose launches cost more than their arithmetic. K seeds of the same config stacked into batched
products (torch.baddbmm) and batched element-wise ops do K seeds' work for the launches of one.

Every member keeps the reference semantics on its own, so a member depends only on its seed and
its config, never on K or on the other members (tested; for trials of different dropout rates,
as long as both drop the same layers, harness.stacked.mlp.stack_shape):

- its own split (harness.core.data.split), batches gathered from its own split tensors;
- its own initialization: build_model inside global_stream(seed, "init"), as
  harness.core.training.fit, copied into its slice of the stacked weights;
- its own data order ("order" stream) and augmentation ("shift" stream), as fit draws them;
- its own dropout masks, from a generator on the device seeded with the "dropout" stream;
- BatchNorm over its own batch, its own running statistics and affine parameters (one
  F.batch_norm call over K × width channels: the same kernel, momentum and eps as nn.BatchNorm1d);
- its own Adam state (coupled L2 weight decay, torch's bias correction), learning rate and
  weight decay;
- its own ReduceLROnPlateau (a torch scheduler per member, on a dummy optimizer) and epochs;
- its own best epoch and best weights, and its own divergence, booked by fit's own
  FitResult.end_epoch: a diverged member is frozen
  (loss masked, weights and Adam state zeroed, learning rate 0) while the others go on.

The loss is the sum over members of each member's mean cross-entropy, so each member's
gradient is its single-run gradient.

A stacked run is a different numeric path from fit, so its records carry the engine
"<device>-stacked": dropout masks are uniform draws compared with the rate (not nn.Dropout's
bernoulli_ on the global stream), Adam is torch's formula with a learning rate per member
(harness.stacked.adam: foreach ops, or on CUDA one Triton kernel per tensor; not torch's fused
kernel), and batched products may sum in another order. Without dropout a K=1 stack follows
fit to float rounding. A record's "seconds" (and total_seconds) is the stack's wall time divided
by K: the per-seed cost.

On CUDA a step is by default one CUDA graph replay (graphs=True; harness.stacked.model): up to a
few dozen members a stacked step is still hundreds of small launches. The graph replays the
eager step's own kernels, so graphs change speed, not numbers, nor the engine. The model and
trainer live in harness.stacked.model; their names are importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from harness.core.config import Config
from harness.core.data import Mnist, Split, split
from harness.core.model import INPUT_SIZE, NUM_CLASSES, build_model
from harness.core.record import RunRecord
from harness.core.training import CPU, EVAL_BATCH, FitResult, run_record
from harness.stacked.model import DROPOUT_BLOCK, StackedMLP, StackedTrainer

__all__ = [
    "DROPOUT_BLOCK",
    "StackedMLP",
    "StackedTrainer",
    "fit_stacked",
    "run_stacked",
    "stack_size",
]


def fit_stacked(
    config: Config | Sequence[Config],
    seeds: Sequence[int],
    data_per_seed: Iterable[Split],
    device: torch.device | str = CPU,
    graphs: bool | None = None,
    on_epoch: Callable[[int, dict[str, Any]], bool] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[FitResult]:
    """training.fit for each member at once, one stacked model: results in the order of seeds,
    each model holding that member's weights of its best validation epoch.

    config: one for every seed, or one per member (StackedTrainer: one shape, one split per
    distinct seed); a member trains its own config's epochs. on_epoch(member, entry) is called
    with each of a member's epochs, as fit's on_epoch; False stops that member there (a pruned
    trial), its best epoch so far kept. graphs: each full batch's step replayed as a CUDA graph
    (None: when the device is CUDA). test: (images, labels) every member is evaluated on after
    each of its epochs, into its result's test_history, which no decision reads."""
    device = torch.device(device)
    graphs = device.type == "cuda" if graphs is None else graphs
    mode = "graph" if graphs else "eager"
    trainer = StackedTrainer(config, seeds, data_per_seed, device, mode=mode)
    configs, k = trainer.configs, trainer.k
    n, n_val = trainer.labels.shape[1], trainer.val_labels.shape[1]
    results = [FitResult(build_model(c)) for c in configs]
    schedulers = [_plateau(c) if c.scheduler == "plateau" else None for c in configs]
    lrs = [c.lr for c in configs]
    best = {key: t.detach().clone() for key, t in trainer.net.state.items()}
    best_steps = [0] * k
    active = list(range(k))
    if test is not None:
        test_images = test[0].to(trainer.device).unsqueeze(0)
        test_labels, host_labels = test[1].to(trainer.device), test[1].cpu()

    for epoch in range(1, max(c.epochs for c in configs) + 1):
        started = time.perf_counter()
        loss_sum, correct = trainer.train_epoch()
        val_loss_sum, val_correct = trainer.evaluate(trainer.val_images, trainer.val_labels)
        train_losses = (loss_sum.double() / n).tolist()  # the epoch's one synchronization
        train_accuracies = (correct.double() / n).tolist()
        val_losses = (val_loss_sum.double() / n_val).tolist()
        val_accuracies = (val_correct.double() / n_val).tolist()
        seconds = (time.perf_counter() - started) / len(active)
        if test is not None:
            test_loss_sum, test_predictions = trainer.predict(test_images, test_labels[None])
            test_losses = (test_loss_sum.double() / len(test_labels)).tolist()
            test_predictions = test_predictions.cpu()
        improved, stopping = [], []
        for m in active:
            result = results[m]
            entry = result.end_epoch(
                epoch,
                train_losses[m],
                train_accuracies[m],
                val_losses[m],
                val_accuracies[m],
                lrs[m],
                seconds,
            )
            if entry is not None and test is not None:
                result.end_test(test_losses[m], test_predictions[m], host_labels)
            if entry is not None and result.best_epoch == epoch:
                improved.append(m)
                best_steps[m] = trainer.steps
            stopped = on_epoch is not None and entry is not None and not on_epoch(m, entry)
            if entry is None or stopped or epoch == configs[m].epochs:
                stopping.append(m)  # diverged, pruned or done
                continue
            if schedulers[m] is not None:
                schedulers[m].step(entry["val_accuracy"])
                lrs[m] = schedulers[m].optimizer.param_groups[0]["lr"]
        if improved:
            index = torch.tensor(improved, device=trainer.device)
            with torch.no_grad():
                for key, tensor in trainer.net.state.items():
                    best[key].index_copy_(0, index, tensor.index_select(0, index))
        for m in stopping:  # after the copy: a member's last epoch may be its best
            trainer.freeze(m)
            active.remove(m)
        if not active:
            break
        trainer.lr.copy_(
            torch.tensor([lrs[m] if m in active else 0.0 for m in range(k)]).view(k, 1, 1)
        )

    for m, result in enumerate(results):
        state = trainer.net.member_state(m, result.model, best)
        for key in state:
            if key.endswith("num_batches_tracked"):
                state[key].fill_(best_steps[m])
        result.model.load_state_dict(state)
        result.model.to(trainer.device)
    return results


def _plateau(config: Config) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """A member's own ReduceLROnPlateau, on a dummy optimizer whose lr the member reads."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr),
        mode="max",
        factor=config.scheduler_factor,
        patience=config.scheduler_patience,
    )


def run_stacked(
    config: Config | Sequence[Config],
    seeds: Sequence[int],
    mnist: Mnist,
    label: str | Sequence[str] = "",
    device: torch.device | str = CPU,
    graphs: bool | None = None,
) -> list[RunRecord]:
    """training.run_one for each member, trained as one stack: one record per member, in the
    order of seeds, with run_one's keys plus "stack_size"; the engine is "<device>-stacked".
    config and label: one for every seed, or one per member (members of one shape, as
    harness.stacked.mlp.stack_shape asks: a factorial's cells of one width and BatchNorm)."""
    device = torch.device(device)
    configs = [config] * len(seeds) if isinstance(config, Config) else list(config)
    labels = [label] * len(seeds) if isinstance(label, str) else list(label)
    started = time.perf_counter()
    distinct = list(dict.fromkeys(seeds))  # one split per seed, one at a time in memory
    splits = (split(mnist, configs[list(seeds).index(s)].val_size, s) for s in distinct)
    test = (mnist.test_images, mnist.test_labels)
    results = fit_stacked(configs, seeds, splits, device, graphs, test=test)
    records = [
        run_record(member, seed, name, result, mnist, device, stacked=True)
        | {"stack_size": len(seeds)}
        for member, seed, name, result in zip(configs, seeds, labels, results, strict=True)
    ]
    total = (time.perf_counter() - started) / len(seeds)  # the per-member share of wall time
    for record in records:
        record["total_seconds"] = total
    return records


def stack_size(
    config: Config, device: torch.device, pending: int, shared_split: bool = False
) -> int:
    """How many members fit in one stack: on a GPU, what 80% of its free memory holds (each
    member keeps its own copy of the training images there, unless the members share one
    seed's split: a search's trials), else every pending member."""
    if device.type != "cuda":
        return pending
    free, _ = torch.cuda.mem_get_info(device)
    widths = [INPUT_SIZE, *config.hidden_widths, NUM_CLASSES]
    parameters = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
    images = 0 if shared_split else 60_000 * INPUT_SIZE  # the member's split, train and val
    if config.shift and not shared_split:
        images += (60_000 - config.val_size) * INPUT_SIZE  # the buffer of the shifted copies
    activations = EVAL_BATCH * sum(widths) * 3  # evaluation chunk, with BatchNorm's copies
    member_bytes = 4 * (images + 4 * parameters + activations)  # weights, grads, Adam's two
    return max(1, min(pending, int(0.8 * free) // member_bytes))
