"""Many seeds of one config trained at once, as one stacked model (weights K × out × in).

On a GPU the reference network is launch-bound: one seed's step is a hundred-odd small kernels
whose launches cost more than their arithmetic. K seeds of the same config stacked into batched
products (torch.baddbmm) and batched element-wise ops do K seeds' work for the launches of one.

Every member keeps the reference semantics on its own, so a member depends only on its seed and
the config, never on K or on the other members (tested):

- its own split (harness.data.split), batches gathered from its own split tensors;
- its own initialization: build_model after torch.manual_seed(stream_seed(seed, "init")), as
  harness.training.fit, copied into its slice of the stacked weights;
- its own data order ("order" stream) and augmentation ("shift" stream), as fit draws them;
- its own dropout masks, from a generator on the device seeded with the "dropout" stream;
- BatchNorm over its own batch, its own running statistics and affine parameters (one
  F.batch_norm call over K × width channels: the same kernel, momentum and eps as nn.BatchNorm1d);
- its own Adam state (coupled L2 weight decay, torch's bias correction) and learning rate;
- its own ReduceLROnPlateau (a torch scheduler per member, on a dummy optimizer);
- its own best epoch and best weights, and its own divergence: a diverged member is frozen
  (loss masked, weights and Adam state zeroed, learning rate 0) while the others go on.

The loss is the sum over members of each member's mean cross-entropy, so each member's
gradient is its single-run gradient.

A stacked run is a different numeric path from fit, so its records carry the engine
"<device>-stacked": dropout masks are uniform draws compared with the rate (not nn.Dropout's
bernoulli_ on the global stream), Adam is torch's formula in foreach ops (not the fused kernel),
and batched products may sum in another order. Without dropout a K=1 stack follows fit to float
rounding. A record's "seconds" (and total_seconds) is the stack's wall time divided by K: the
per-seed cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import Config
from harness.data import Mnist, Split, random_shifts, split
from harness.model import INPUT_SIZE, build_model, parameter_count
from harness.seeding import generator, stream_seed
from harness.store import environment
from harness.training import (
    CPU,
    DIVERGENCE_RULE,
    EVAL_BATCH,
    FitResult,
    divergence,
    engine,
    test_metrics,
)

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm1d's defaults
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults
# Steps of dropout masks drawn at once, per member: one generator call per member every
# DROPOUT_BLOCK steps instead of one per step and layer. Fixed, so that a member's masks do
# not depend on K. Memory: K × DROPOUT_BLOCK × batch × (dropout widths) floats.
DROPOUT_BLOCK = 32
METRIC_KEYS = ("test_accuracy", "test_loss")  # of test_metrics' keys, those run puts in "metrics"
EVAL_ELEMENTS = 2**27  # the largest activation (K × width × rows) of one evaluation chunk
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


@dataclass
class _Layer:
    weight: torch.Tensor  # [K, out, in]
    bias: torch.Tensor  # [K, out, 1]
    norm: tuple[torch.Tensor, ...] | None  # γ, β [K, out, 1]; running mean, var [K, out]
    activation: bool
    dropout: float
    drop_offset: int  # first row of this layer's masks in the dropout block


class StackedMLP:
    """K copies of build_model(config)'s network, member k initialized as seed k's single run.

    Activations are feature-major, [K, features, batch]: each layer is one baddbmm, and
    BatchNorm is one F.batch_norm over K × width channels with no transposing copy.
    """

    def __init__(self, config: Config, seeds: Sequence[int], device: torch.device) -> None:
        states = []
        for seed in seeds:
            torch.manual_seed(stream_seed(seed, "init"))  # as training.fit
            states.append(build_model(config).state_dict())
        self.template = build_model(config)  # the module layout, for unstacking
        self.state: dict[str, torch.Tensor] = {}  # state_dict key -> stacked tensor
        for key, value in states[0].items():
            if key.endswith("num_batches_tracked"):
                continue
            stacked = torch.stack([state[key] for state in states]).to(device)
            if not key.endswith(("running_mean", "running_var")) and value.dim() == 1:
                stacked = stacked.unsqueeze(-1)  # [K, out, 1]: broadcasts against [K, out, b]
            self.state[key] = stacked.clone(memory_format=torch.contiguous_format)
        self.activation = ACTIVATIONS[config.activation]
        self.layers: list[_Layer] = []
        self.drop_width = 0
        for index, module in enumerate(self.template):
            if isinstance(module, nn.Linear):
                weight, bias = self.state[f"{index}.weight"], self.state[f"{index}.bias"]
                self.layers.append(_Layer(weight, bias, None, False, 0.0, 0))
            elif isinstance(module, nn.BatchNorm1d):
                self.layers[-1].norm = tuple(
                    self.state[f"{index}.{name}"]
                    for name in ("weight", "bias", "running_mean", "running_var")
                )
            elif isinstance(module, nn.Dropout):
                self.layers[-1].dropout, self.layers[-1].drop_offset = module.p, self.drop_width
                self.drop_width += self.layers[-1].weight.shape[1]  # the layer's width
            else:
                self.layers[-1].activation = True
        self.params = [
            tensor.requires_grad_()
            for key, tensor in self.state.items()
            if not key.endswith(("running_mean", "running_var"))
        ]

    def forward(
        self, x: torch.Tensor, training: bool, masks: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [K, 10, b] of inputs [K, 784, b]; masks [K, dropout widths, b] are the
        scaled keep-masks of the dropout layers (None: no dropout, as in eval mode)."""
        h = x
        for layer in self.layers:
            h = torch.baddbmm(layer.bias, layer.weight, h)
            if layer.norm is not None:
                k, width, b = h.shape
                gamma, beta, mean, var = layer.norm
                h = F.batch_norm(
                    h.view(1, k * width, b),
                    mean.view(-1),
                    var.view(-1),
                    gamma.view(-1),
                    beta.view(-1),
                    training,
                    BN_MOMENTUM,
                    BN_EPS,
                ).view(k, width, b)
            if layer.activation:
                h = self.activation(h)
            if layer.dropout > 0 and masks is not None:
                h = h * masks[:, layer.drop_offset : layer.drop_offset + h.shape[1]]
        return h

    def member_state(self, k: int, state: dict[str, torch.Tensor] | None = None) -> dict:
        """Member k's slice of a stacked state as build_model(config)'s state_dict."""
        state = self.state if state is None else state
        shapes = self.template.state_dict()
        out = {}
        for key, template in shapes.items():
            if key.endswith("num_batches_tracked"):
                out[key] = template.clone()
            else:
                out[key] = state[key][k].detach().reshape(template.shape).clone()
        return out


class StackedTrainer:
    """Trains the members of one stack epoch by epoch; fit_stacked drives it.

    data_per_seed is read once, member by member, into stacked tensors on the device
    (K × 55,000 × 784 floats: 172 MB per member for MNIST).
    """

    def __init__(
        self,
        config: Config,
        seeds: Sequence[int],
        data_per_seed: Iterable[Split],
        device: torch.device | str = CPU,
    ) -> None:
        self.config, self.seeds = config, list(seeds)
        self.device = device = torch.device(device)
        if not self.seeds:
            raise ValueError("fit_stacked: no seeds")
        self.k = k = len(self.seeds)
        self.net = StackedMLP(config, self.seeds, device)
        self._load(data_per_seed)
        self.order_generators = [generator(s, "order") for s in self.seeds]
        self.shift_generators = [generator(s, "shift") for s in self.seeds]
        self.dropout_generators = [generator(s, "dropout", device) for s in self.seeds]
        self.exp_avg = [torch.zeros_like(p) for p in self.net.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.net.params]
        self.steps = 0
        self.lr = torch.full((k, 1, 1), config.lr, device=device)
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.masks = None
        if self.net.drop_width:
            self.masks = torch.empty(
                k, DROPOUT_BLOCK, self.net.drop_width, config.batch_size, device=device
            )

    def _load(self, data_per_seed: Iterable[Split]) -> None:
        count = 0
        for index, data in enumerate(data_per_seed):
            if index == 0:
                n, n_val = len(data.train_labels), len(data.val_labels)
                self.images = torch.empty(self.k, n, INPUT_SIZE, device=self.device)
                self.labels = torch.empty(self.k, n, dtype=torch.long, device=self.device)
                self.val_images = torch.empty(self.k, n_val, INPUT_SIZE, device=self.device)
                self.val_labels = torch.empty(self.k, n_val, dtype=torch.long, device=self.device)
            elif index >= self.k:
                raise ValueError(f"fit_stacked: more splits than the {self.k} seeds")
            if (len(data.train_labels), len(data.val_labels)) != (n, n_val):
                raise ValueError("fit_stacked: every member's split must have the same sizes")
            self.images[index].copy_(data.train_images)
            self.labels[index].copy_(data.train_labels)
            self.val_images[index].copy_(data.val_images)
            self.val_labels[index].copy_(data.val_labels)
            count += 1
        if count != self.k:
            raise ValueError(f"fit_stacked: {count} splits for {self.k} seeds")

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of every member over its own data in its own order: per-member sums of
        the batch-mean losses (weighted by batch size) and correct counts, on the device."""
        k, n = self.labels.shape
        batch_size = self.config.batch_size
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.order_generators])
        flat_order = (orders + torch.arange(k).unsqueeze(1) * n).to(self.device)
        images = self.images
        if self.config.shift > 0:  # each member's own images shifted from its own stream
            images = torch.stack(
                [
                    random_shifts(self.images[m], self.config.shift, self.shift_generators[m])
                    for m in range(k)
                ]
            )
        images, labels = images.view(k * n, INPUT_SIZE), self.labels.view(k * n)
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, dtype=torch.long, device=self.device)
        n_steps = math.ceil(n / batch_size)
        for step in range(n_steps):
            start = step * batch_size
            b = min(batch_size, n - start)
            masks = None
            if self.masks is not None:
                if step % DROPOUT_BLOCK == 0:
                    self._draw_masks(min(DROPOUT_BLOCK, n_steps - step))
                masks = self.masks[:, step % DROPOUT_BLOCK, :, :b]
            index = flat_order[:, start : start + b].reshape(-1)
            x = images.index_select(0, index).view(k, b, INPUT_SIZE).transpose(1, 2)
            y = labels.index_select(0, index).view(k, b)
            logits = self.net.forward(x, training=True, masks=masks)
            member_loss = F.cross_entropy(logits, y, reduction="none").mean(1)
            loss = torch.where(self.active, member_loss, 0.0).sum()
            for p in self.net.params:
                p.grad = None
            loss.backward()
            self._adam_step()
            loss_sum.add_(member_loss.detach(), alpha=b)
            correct += (logits.detach().argmax(1) == y).sum(1)
        self._reset_frozen_statistics()
        return loss_sum, correct

    def _reset_frozen_statistics(self) -> None:
        """Frozen members' running statistics back to freeze's values: their forward passes
        (masked out of the loss) still moved them."""
        with torch.no_grad():
            frozen = ~self.active.unsqueeze(1)
            for key, tensor in self.net.state.items():
                if key.endswith("running_mean"):
                    tensor.masked_fill_(frozen, 0.0)
                elif key.endswith("running_var"):
                    tensor.masked_fill_(frozen, 1.0)

    def _draw_masks(self, steps: int) -> None:
        """Dropout keep-masks, already scaled by 1/(1-p), for the next `steps` steps."""
        with torch.no_grad():
            for m, gen in enumerate(self.dropout_generators):
                self.masks[m, :steps].uniform_(generator=gen)
            for layer in self.net.layers:
                if layer.dropout > 0:
                    width = layer.weight.shape[1]
                    rows = self.masks[:, :steps, layer.drop_offset : layer.drop_offset + width]
                    rows.ge_(layer.dropout).mul_(1.0 / (1.0 - layer.dropout))

    def _adam_step(self) -> None:
        """torch.optim.Adam's update (coupled L2, bias correction) with a per-member lr."""
        params = self.net.params
        grads = [p.grad for p in params]
        beta1, beta2 = ADAM_BETAS
        self.steps += 1
        with torch.no_grad():
            if self.config.weight_decay:
                torch._foreach_add_(grads, params, alpha=self.config.weight_decay)
            torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(self.exp_avg_sq, beta2)
            torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(self.exp_avg_sq)
            torch._foreach_div_(denom, math.sqrt(1 - beta2**self.steps))
            torch._foreach_add_(denom, ADAM_EPS)
            ratio = torch._foreach_div(self.exp_avg, denom)
            step_size = self.lr * (-1.0 / (1 - beta1**self.steps))  # [K, 1, 1]
            for p, r in zip(params, ratio, strict=True):
                p.addcmul_(r, step_size)

    def evaluate(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member summed cross-entropy and correct counts in eval mode (running stats);
        images [K, n, 784] and labels [K, n], each member its own."""
        k, n, _ = images.shape
        widest = max(layer.weight.shape[1] for layer in self.net.layers)
        rows = max(1, min(EVAL_BATCH, EVAL_ELEMENTS // (k * widest)))
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            for start in range(0, n, rows):
                x = images[:, start : start + rows].transpose(1, 2)
                y = labels[:, start : start + rows]
                logits = self.net.forward(x, training=False)
                loss_sum += F.cross_entropy(logits, y, reduction="none").sum(1)
                correct += (logits.argmax(1) == y).sum(1)
        return loss_sum, correct

    def freeze(self, m: int) -> None:
        """Member m stops: its weights, statistics and Adam state zeroed (finite whatever it
        diverged to), its loss masked and its learning rate 0, so its slices stay as they are."""
        with torch.no_grad():
            for key, tensor in self.net.state.items():
                tensor[m] = 1.0 if key.endswith("running_var") else 0.0
            for state in (*self.exp_avg, *self.exp_avg_sq):
                state[m] = 0.0
            self.active[m] = False
            self.lr[m] = 0.0


def fit_stacked(
    config: Config,
    seeds: Sequence[int],
    data_per_seed: Iterable[Split],
    device: torch.device | str = CPU,
) -> list[FitResult]:
    """training.fit for each seed at once, one stacked model: results in the order of seeds,
    each model holding that member's weights of its best validation epoch."""
    trainer = StackedTrainer(config, seeds, data_per_seed, device)
    k, n = trainer.labels.shape
    n_val = trainer.val_labels.shape[1]
    results = [FitResult(build_model(config)) for _ in seeds]
    schedulers = [None] * k
    if config.scheduler == "plateau":  # one torch scheduler per member, on a dummy optimizer
        schedulers = [
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr),
                mode="max",
                factor=config.scheduler_factor,
                patience=config.scheduler_patience,
            )
            for _ in seeds
        ]
    lrs = [config.lr] * k
    best = {key: t.detach().clone() for key, t in trainer.net.state.items()}
    best_steps = [0] * k
    active = list(range(k))

    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        loss_sum, correct = trainer.train_epoch()
        val_loss_sum, val_correct = trainer.evaluate(trainer.val_images, trainer.val_labels)
        train_losses = (loss_sum.double() / n).tolist()  # the epoch's one synchronization
        train_accuracies = (correct.double() / n).tolist()
        val_losses = (val_loss_sum.double() / n_val).tolist()
        val_accuracies = (val_correct.double() / n_val).tolist()
        seconds = (time.perf_counter() - started) / k
        improved = []
        for m in list(active):
            result = results[m]
            train_loss, val_loss, val_accuracy = train_losses[m], math.nan, math.nan
            if math.isfinite(train_loss):
                val_loss, val_accuracy = val_losses[m], val_accuracies[m]
            first_loss = result.history[0]["train_loss"] if result.history else train_loss
            result.divergence = divergence(train_loss, val_accuracy, first_loss)
            if result.divergence is not None:
                result.diverged_epoch = epoch
                trainer.freeze(m)
                active.remove(m)
                continue
            result.history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "train_accuracy": train_accuracies[m],
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "lr": lrs[m],
                    "seconds": seconds,
                }
            )
            if val_accuracy > result.best_val_accuracy:
                result.best_val_accuracy, result.best_epoch = val_accuracy, epoch
                improved.append(m)
                best_steps[m] = trainer.steps
            if schedulers[m] is not None:
                schedulers[m].step(val_accuracy)
                lrs[m] = schedulers[m].optimizer.param_groups[0]["lr"]
        if improved:
            index = torch.tensor(improved, device=trainer.device)
            with torch.no_grad():
                for key, tensor in trainer.net.state.items():
                    best[key].index_copy_(0, index, tensor.index_select(0, index))
        if not active:
            break
        trainer.lr.copy_(
            torch.tensor([lrs[m] if m in active else 0.0 for m in range(k)]).view(k, 1, 1)
        )

    for m, result in enumerate(results):
        state = trainer.net.member_state(m, best)
        for key in state:
            if key.endswith("num_batches_tracked"):
                state[key].fill_(best_steps[m])
        result.model.load_state_dict(state)
        result.model.to(trainer.device)
    return results


def run_stacked(
    config: Config,
    seeds: Sequence[int],
    mnist: Mnist,
    label: str = "",
    device: torch.device | str = CPU,
) -> list[dict[str, Any]]:
    """training.run for each seed, trained as one stack: one record per seed, in the order of
    seeds, with run's keys plus "stack_size"; the engine is "<device>-stacked"."""
    device = torch.device(device)
    started = time.perf_counter()
    splits = (split(mnist, config.val_size, seed) for seed in seeds)  # one at a time in memory
    results = fit_stacked(config, seeds, splits, device)
    test_images, test_labels = mnist.test_images.to(device), mnist.test_labels.to(device)
    records = []
    for seed, result in zip(seeds, results, strict=True):
        record: dict[str, Any] = {
            "label": label,
            "config_hash": config.hash(),
            "seed": seed,
            "engine": engine(device, torch.get_num_threads(), stacked=True),
            "config": config.to_dict(),
            "status": "ok" if result.diverged_epoch is None else "diverged",
            "diverged_epoch": result.diverged_epoch,
            "divergence": result.divergence,
            "divergence_rule": DIVERGENCE_RULE,
            "history": result.history,
            "parameters": parameter_count(result.model),
            "environment": environment(device),
        }
        if result.diverged_epoch is None:
            best = result.history[result.best_epoch - 1]
            test = test_metrics(result.model, test_images, test_labels)
            # as run: the two numbers in "metrics", the per-digit and per-image fields beside
            record.update({key: value for key, value in test.items() if key not in METRIC_KEYS})
            record["metrics"] = {
                **{key: test[key] for key in METRIC_KEYS},
                "best_val_accuracy": result.best_val_accuracy,
                "best_epoch": result.best_epoch,
                "train_accuracy_at_best": best["train_accuracy"],
                "train_val_gap": best["train_accuracy"] - best["val_accuracy"],
            }
        seconds = [epoch["seconds"] for epoch in result.history]
        record["seconds_per_epoch"] = sum(seconds) / len(seconds) if seconds else None
        record["stack_size"] = len(seeds)
        records.append(record)
    total = (time.perf_counter() - started) / len(seeds)  # the per-seed share of the wall time
    for record in records:
        record["total_seconds"] = total
    return records
