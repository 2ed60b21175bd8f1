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

# Steps of dropout draws made at once, per seed: one generator call per seed every
# DROPOUT_BLOCK steps instead of one per step and layer. Fixed, so that a member's masks do
# not depend on K. Memory: seeds × DROPOUT_BLOCK × batch × (dropout widths) floats.
DROPOUT_BLOCK = 32
EVAL_ELEMENTS = 2**27  # the largest activation (K × width × rows) of one evaluation chunk
STEP_MODES = ("eager", "graph", "static")  # StackedTrainer's ways to run a step


class StackedTrainer:
    """Trains the members of one stack epoch by epoch; fit_stacked drives it.

    A member is a (config, seed) pair: seeds of one config (the grid's stacks), or trials of
    one shape (stack_shape) on one seed, each with its own learning rate, weight decay, dropout
    rates, shift and schedule (the search's stacks). data_per_seed holds one split per distinct
    seed, in the order the seeds first appear; it is read once into stacked tensors on the
    device (172 MB per seed for MNIST; members of one seed share it), and every distinct
    (seed, shift) pair trains on its own images (a "view": the split's, or a persistent buffer
    refilled with their shifts each epoch, so that a CUDA graph can read it).

    mode (may change between epochs):
    - "eager": every step's kernels launched one by one;
    - "graph" (CUDA only): each full batch's row indices and dropout draws are copied into
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
        config: Config | Sequence[Config],
        seeds: Sequence[int],
        data_per_seed: Iterable[Split],
        device: torch.device | str = CPU,
        mode: str = "eager",
        adam: Callable[..., None] | None = None,
        cudnn_batchnorm: bool = False,
    ) -> None:
        self.seeds = list(seeds)
        self.configs = [config] * len(self.seeds) if isinstance(config, Config) else list(config)
        self.device = device = torch.device(device)
        if not self.seeds:
            raise ValueError("fit_stacked: no seeds")
        if len(self.configs) != len(self.seeds):
            raise ValueError("fit_stacked: one config per member, or one for all")
        if mode not in STEP_MODES:
            raise ValueError(f"fit_stacked: mode {mode!r} is not one of {STEP_MODES}")
        if mode == "graph" and device.type != "cuda":
            raise ValueError(f"fit_stacked: CUDA graphs need a CUDA device, not {device}")
        self.config = self.configs[0]  # the batch size and shape are every member's
        self.k = k = len(self.seeds)
        self.net = StackedMLP(self.configs, self.seeds, device, cudnn_batchnorm)
        self.sources = list(dict.fromkeys(self.seeds))  # one split per distinct seed
        member_views = [(s, c.shift) for s, c in zip(self.seeds, self.configs, strict=True)]
        self.views = list(dict.fromkeys(member_views))  # distinct (seed, shift) pairs
        self.member_source = self._index([self.sources.index(s) for s in self.seeds])
        self.member_view = self._index([self.views.index(view) for view in member_views])
        self._load(data_per_seed)
        self.order_generators = [generator(s, "order") for s in self.sources]
        self.shift_generators = [generator(seed, "shift") for seed, _ in self.views]
        self.dropout_generators = [generator(s, "dropout", device) for s in self.sources]
        self.adam = adam or adam_for(device)  # torch.optim.Adam's update, per-member lr
        self.exp_avg = [torch.zeros_like(p) for p in self.net.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.net.params]
        self.steps = 0  # on the host, for num_batches_tracked
        # Everything a step reads or writes lives in tensors allocated here and only ever
        # updated in place (copy_, add_, index assignment), so a captured graph sees it.
        self.step_count = torch.zeros((), dtype=torch.float64, device=device)  # Adam's t
        self.lr = self._per_member([c.lr for c in self.configs])
        decays = {c.weight_decay for c in self.configs}  # one for all: torch's own foreach op
        self.weight_decay = (
            decays.pop()
            if len(decays) == 1
            else self._per_member([c.weight_decay for c in self.configs])
        )
        self.active = torch.ones(k, dtype=torch.bool, device=device)
        self.loss_sum = torch.zeros(k, device=device)  # the epoch's sums
        self.correct = torch.zeros(k, dtype=torch.long, device=device)
        batch = self.config.batch_size
        self.batch_index = torch.zeros(k, batch, dtype=torch.long, device=device)
        self.uniforms = self.batch_uniforms = None
        if self.net.drop_width:
            rows = (len(self.sources), DROPOUT_BLOCK, self.net.drop_width, batch)
            self.uniforms = torch.empty(rows, device=device)
            self.batch_uniforms = torch.empty(rows[0], *rows[2:], device=device)
            self.drop_rate, self.drop_scale = self._dropout_rates()
        self.graph_step = GraphStep(
            lambda: self._step(self.batch_index, self.batch_uniforms), device
        )
        self.mode = mode

    def _index(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def _per_member(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device).view(self.k, 1, 1)

    def _dropout_rates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's rate and keep scale 1/(1-p) for every row of the dropout slots,
        [K, dropout widths, 1] (rate 0, scale 1 where a member does not drop)."""
        rate = torch.zeros(self.k, self.net.drop_width, 1, dtype=torch.float64)
        for index, layer in enumerate(self.net.layers):
            if layer.drops:
                rows = slice(layer.drop_offset, layer.drop_offset + layer.weight.shape[1])
                for m, config in enumerate(self.configs):
                    rate[m, rows] = config.dropout[index]
        return rate.float().to(self.device), (1.0 / (1.0 - rate)).float().to(self.device)

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
        sources, count = len(self.sources), 0
        for index, data in enumerate(data_per_seed):
            if index == 0:
                n, n_val = len(data.train_labels), len(data.val_labels)
                self.images = torch.empty(sources, n, INPUT_SIZE, device=self.device)
                self.labels = torch.empty(sources, n, dtype=torch.long, device=self.device)
                self.val_images = torch.empty(sources, n_val, INPUT_SIZE, device=self.device)
                self.val_labels = torch.empty(sources, n_val, dtype=torch.long, device=self.device)
            elif index >= sources:
                raise ValueError(f"fit_stacked: more splits than the {sources} distinct seeds")
            if (len(data.train_labels), len(data.val_labels)) != (n, n_val):
                raise ValueError("fit_stacked: every member's split must have the same sizes")
            self.images[index].copy_(data.train_images)
            self.labels[index].copy_(data.train_labels)
            self.val_images[index].copy_(data.val_images)
            self.val_labels[index].copy_(data.val_labels)
            count += 1
        if count != sources:
            raise ValueError(f"fit_stacked: {count} splits for {sources} distinct seeds")
        # the images an epoch trains on, a view each: the splits', or a buffer refilled with
        # their shifts
        self.view_source = [self.sources.index(seed) for seed, _ in self.views]
        if any(shift for _, shift in self.views):
            self.epoch_images = torch.empty(len(self.views), n, INPUT_SIZE, device=self.device)
        else:
            self.epoch_images = self.images  # a view per seed, in the same order
        self._flat_images = self.epoch_images.view(len(self.views) * n, INPUT_SIZE)
        self._flat_labels = self.labels[self._index(self.view_source)].view(-1)

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of every member over its own data in its seed's order: per-member sums of
        the batch-mean losses (weighted by batch size) and correct counts, on the device."""
        n = self.labels.shape[1]
        batch_size = self.config.batch_size
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.order_generators])
        orders = orders.to(self.device)
        flat_order = orders[self.member_source] + self.member_view.unsqueeze(1) * n
        if self.epoch_images is not self.images:  # each view's images from its own stream
            for view, (_, shift) in enumerate(self.views):
                images = self.images[self.view_source[view]]
                if shift:
                    images = random_shifts(images, shift, self.shift_generators[view])
                self.epoch_images[view].copy_(images)
        self.loss_sum.zero_()
        self.correct.zero_()
        n_steps = math.ceil(n / batch_size)
        for step in range(n_steps):
            start = step * batch_size
            b = min(batch_size, n - start)
            index, uniforms = flat_order[:, start : start + b], None
            if self.uniforms is not None:
                if step % DROPOUT_BLOCK == 0:
                    self._draw_uniforms(min(DROPOUT_BLOCK, n_steps - step))
                uniforms = self.uniforms[:, step % DROPOUT_BLOCK, :, :b]
            if self.mode == "eager" or b < batch_size:
                self._step(index, uniforms)
            else:
                self.batch_index.copy_(index)
                if uniforms is not None:
                    self.batch_uniforms.copy_(uniforms)
                self.graph_step()
            self.steps += 1
        self._reset_frozen_statistics()
        return self.loss_sum.clone(), self.correct.clone()  # the sums are reused next epoch

    def _step(self, index: torch.Tensor, uniforms: torch.Tensor | None) -> None:
        """One step of every member: forward, loss, gradients, Adam and the epoch's sums, for
        row indices [K, b] into the flat epoch images and each seed's dropout draws
        [seeds, dropout widths, b]. The one function of every mode: it never syncs with the
        host and writes persistent tensors only in place, so that a CUDA graph (GraphStep)
        can capture it as it is."""
        k, b = index.shape
        flat = index.reshape(-1)
        x = self._flat_images.index_select(0, flat).view(k, b, INPUT_SIZE).transpose(1, 2)
        y = self._flat_labels.index_select(0, flat).view(k, b)
        masks = None if uniforms is None else self.member_masks(uniforms)
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
                self.weight_decay,
            )
            self.loss_sum.add_(member_loss, alpha=b)
            self.correct.add_((logits.argmax(1) == y).sum(1))

    def member_masks(self, uniforms: torch.Tensor) -> torch.Tensor:
        """Each member's dropout keep-masks [K, dropout widths, b], scaled by 1/(1-p), from its
        seed's uniform draws [seeds, dropout widths, b] and its own rates."""
        draws = uniforms.index_select(0, self.member_source)
        return draws.ge_(self.drop_rate).mul_(self.drop_scale)

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

    def _draw_uniforms(self, steps: int) -> None:
        """Each seed's uniform draws for the dropout masks of the next `steps` steps: one
        generator call per seed every DROPOUT_BLOCK steps instead of one per step and layer."""
        with torch.no_grad():
            for source, gen in enumerate(self.dropout_generators):
                self.uniforms[source, :steps].uniform_(generator=gen)

    def evaluate(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member summed cross-entropy and correct counts in eval mode (running stats);
        images [seeds, n, 784] and labels [seeds, n], one per distinct seed, as loaded."""
        loss_sum, predictions = self.predict(images, labels, self.member_source)
        correct = (predictions == labels.index_select(0, self.member_source)).sum(1)
        return loss_sum, correct

    def predict(
        self, images: torch.Tensor, labels: torch.Tensor, source: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member summed cross-entropy and predicted digits [K, n] in eval mode; images
        [sets, n, 784] and labels [sets, n], member m reading set source[m] (None: the one set
        every member shares, as the test set)."""
        n = images.shape[1]
        if source is None:
            source = torch.zeros(self.k, dtype=torch.long, device=self.device)
        widest = max(layer.weight.shape[1] for layer in self.net.layers)
        rows = max(1, min(EVAL_BATCH, EVAL_ELEMENTS // (self.k * widest)))
        with torch.inference_mode():
            loss_sum = torch.zeros(self.k, device=self.device)
            predictions = torch.empty(self.k, n, dtype=torch.long, device=self.device)
            for start in range(0, n, rows):
                x = images[:, start : start + rows].index_select(0, source)
                y = labels[:, start : start + rows].index_select(0, source)
                logits = self.net.forward(x.transpose(1, 2), training=False)
                loss_sum += F.cross_entropy(logits, y, reduction="none").sum(1)
                predictions[:, start : start + rows] = logits.argmax(1)
        return loss_sum, predictions

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
