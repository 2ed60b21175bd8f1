"""The stacked trainer: one epoch of every member at once (harness.stacked.trainer drives it
epoch by epoch; its docstring says what a member keeps of the single run).

A step runs one of two ways: eagerly, kernel by kernel, or (on CUDA) as the replay of one CUDA
graph captured from the same function (harness.stacked.graph).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from harness.core.config import Config
from harness.core.data import Split, random_shifts
from harness.core.model import INPUT_SIZE
from harness.core.seeding import generator
from harness.core.training import CPU, EVAL_BATCH
from harness.stacked.adam import adam_for
from harness.stacked.graph import GraphStep
from harness.stacked.mlp import StackedMLP

# Steps of dropout masks drawn at once, per member: one generator call per member every
# DROPOUT_BLOCK steps instead of one per step and layer. Fixed, so that a member's masks do
# not depend on K. Memory: K × DROPOUT_BLOCK × batch × (dropout widths) floats.
DROPOUT_BLOCK = 32
EVAL_ELEMENTS = 2**27  # the largest activation (K × width × rows) of one evaluation chunk
STEP_MODES = ("eager", "graph", "static")  # StackedTrainer's ways to run a step


class StackedTrainer:
    """Trains the members of one stack epoch by epoch; fit_stacked drives it.

    data_per_seed is read once, member by member, into stacked tensors on the device
    (K × 55,000 × 784 floats: 172 MB per member for MNIST; twice that with shift, whose
    shifted copy is a persistent buffer so that a CUDA graph can read it).

    mode (may change between epochs):
    - "eager": every step's kernels launched one by one;
    - "graph" (CUDA only): each full batch's row indices and dropout masks are copied into
      static buffers and one CUDA graph of _step is replayed (GraphStep: captured after
      WARMUP_STEPS eager steps on a side stream; if capture fails, one line on stderr and mode
      becomes "static");
    - "static": the graph path run eagerly (the same buffers and function, nothing captured),
      so that the CPU tests what the graph replays.
    The last, partial batch of an epoch (55,000 % batch_size rows) always runs eagerly: no
    padding, so every mode computes the same numbers. adam and cudnn_batchnorm replace a speed
    choice with the slower alternative, for the benchmark that measures what each is worth.
    """

    def __init__(
        self,
        config: Config,
        seeds: Sequence[int],
        data_per_seed: Iterable[Split],
        device: torch.device | str = CPU,
        mode: str = "eager",
        adam: Callable[..., None] | None = None,
        cudnn_batchnorm: bool = False,
    ) -> None:
        self.config, self.seeds = config, list(seeds)
        self.device = device = torch.device(device)
        if not self.seeds:
            raise ValueError("fit_stacked: no seeds")
        if mode not in STEP_MODES:
            raise ValueError(f"fit_stacked: mode {mode!r} is not one of {STEP_MODES}")
        if mode == "graph" and device.type != "cuda":
            raise ValueError(f"fit_stacked: CUDA graphs need a CUDA device, not {device}")
        self.k = k = len(self.seeds)
        self.net = StackedMLP(config, self.seeds, device, cudnn_batchnorm)
        self._load(data_per_seed)
        self.order_generators = [generator(s, "order") for s in self.seeds]
        self.shift_generators = [generator(s, "shift") for s in self.seeds]
        self.dropout_generators = [generator(s, "dropout", device) for s in self.seeds]
        self.adam = adam or adam_for(device)  # torch.optim.Adam's update, per-member lr
        self.exp_avg = [torch.zeros_like(p) for p in self.net.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.net.params]
        self.steps = 0  # on the host, for num_batches_tracked
        # Everything a step reads or writes lives in tensors allocated here and only ever
        # updated in place (copy_, add_, index assignment), so a captured graph sees it.
        self.step_count = torch.zeros((), dtype=torch.float64, device=device)  # Adam's t
        self.lr = torch.full((k, 1, 1), config.lr, device=device)
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.loss_sum = torch.zeros(k, device=device)  # the epoch's sums
        self.correct = torch.zeros(k, dtype=torch.long, device=device)
        batch = config.batch_size
        self.batch_index = torch.zeros(k, batch, dtype=torch.long, device=device)
        self.masks = self.batch_masks = None
        if self.net.drop_width:
            self.masks = torch.empty(k, DROPOUT_BLOCK, self.net.drop_width, batch, device=device)
            self.batch_masks = torch.empty(k, self.net.drop_width, batch, device=device)
        self.graph_step = GraphStep(lambda: self._step(self.batch_index, self.batch_masks), device)
        self.mode = mode

    @property
    def mode(self) -> str:
        """How full batches step now (see the class docstring); settable between epochs."""
        if self._eager:
            return "eager"
        return "graph" if self.graph_step.capture else "static"

    @mode.setter
    def mode(self, mode: str) -> None:
        self._eager = mode == "eager"
        self.graph_step.capture = mode == "graph"

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
        # the images an epoch trains on: the split's, or a buffer refilled with their shifts
        self.epoch_images = torch.empty_like(self.images) if self.config.shift else self.images
        self._flat_images = self.epoch_images.view(self.k * n, INPUT_SIZE)
        self._flat_labels = self.labels.view(self.k * n)

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of every member over its own data in its own order: per-member sums of
        the batch-mean losses (weighted by batch size) and correct counts, on the device."""
        k, n = self.labels.shape
        batch_size = self.config.batch_size
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.order_generators])
        flat_order = (orders + torch.arange(k).unsqueeze(1) * n).to(self.device)
        if self.config.shift > 0:  # each member's own images shifted from its own stream
            for m in range(k):
                shifted = random_shifts(self.images[m], self.config.shift, self.shift_generators[m])
                self.epoch_images[m].copy_(shifted)
        self.loss_sum.zero_()
        self.correct.zero_()
        n_steps = math.ceil(n / batch_size)
        for step in range(n_steps):
            start = step * batch_size
            b = min(batch_size, n - start)
            index, masks = flat_order[:, start : start + b], None
            if self.masks is not None:
                if step % DROPOUT_BLOCK == 0:
                    self._draw_masks(min(DROPOUT_BLOCK, n_steps - step))
                masks = self.masks[:, step % DROPOUT_BLOCK, :, :b]
            if self.mode == "eager" or b < batch_size:
                self._step(index, masks)
            else:
                self.batch_index.copy_(index)
                if masks is not None:
                    self.batch_masks.copy_(masks)
                self.graph_step()
            self.steps += 1
        self._reset_frozen_statistics()
        return self.loss_sum.clone(), self.correct.clone()  # the sums are reused next epoch

    def _step(self, index: torch.Tensor, masks: torch.Tensor | None) -> None:
        """One step of every member: forward, loss, gradients, Adam and the epoch's sums, for
        row indices [K, b] into the flat epoch images and keep-masks [K, dropout widths, b].
        The one function of every mode: it never syncs with the host and writes persistent
        tensors only in place, so that a CUDA graph (GraphStep) can capture it as it is."""
        k, b = index.shape
        flat = index.reshape(-1)
        x = self._flat_images.index_select(0, flat).view(k, b, INPUT_SIZE).transpose(1, 2)
        y = self._flat_labels.index_select(0, flat).view(k, b)
        logits = self.net.forward(x, training=True, masks=masks)
        member_loss = F.cross_entropy(logits, y, reduction="none").mean(1)
        loss = torch.where(self.active, member_loss, 0.0).sum()
        # fresh gradients, no .grad to zero: inside a graph they live in its private pool
        grads = list(torch.autograd.grad(loss, self.net.params))
        with torch.no_grad():
            self.adam(
                self.net.params,
                grads,
                self.exp_avg,
                self.exp_avg_sq,
                self.step_count,
                self.lr,
                self.config.weight_decay,
            )
            self.loss_sum.add_(member_loss, alpha=b)
            self.correct.add_((logits.argmax(1) == y).sum(1))

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
