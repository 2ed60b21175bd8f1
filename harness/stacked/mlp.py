"""K networks of one shape as batched tensors (weights K × out × in): the stacked model that
harness.stacked.model trains. Member k starts from its seed's single-run weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.config import Config
from harness.core.model import build_model
from harness.core.seeding import global_stream

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm1d's defaults
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


@dataclass
class _Layer:
    weight: torch.Tensor  # [K, out, in]
    bias: torch.Tensor  # [K, out, 1]
    norm: tuple[torch.Tensor, ...] | None  # γ, β [K, out, 1]; running mean, var [K, out]
    activation: bool
    drops: bool  # a dropout slot: some member drops units of this layer
    drop_offset: int  # first row of this layer's masks in the dropout block


def stack_shape(configs: Sequence[Config]) -> Config:
    """The network that every member's fits: their common widths, BatchNorm and activation,
    with a dropout slot in each hidden layer that any member drops (the highest rate there)."""
    first = configs[0]
    for config in configs[1:]:
        if (config.hidden_widths, config.batchnorm, config.activation, config.batch_size) != (
            first.hidden_widths,
            first.batchnorm,
            first.activation,
            first.batch_size,
        ):
            raise ValueError("stacked members need one width, BatchNorm, activation and batch")
    rates = zip(*(config.dropout for config in configs), strict=True)  # layer by layer
    return dataclasses.replace(first, dropout=tuple(map(max, rates)))


class StackedMLP:
    """K networks of one shape (stack_shape), member k initialized as its seed's single run.

    Activations are feature-major, [K, features, batch]: each layer is one baddbmm, and
    BatchNorm is one F.batch_norm over K × width channels with no transposing copy.
    """

    def __init__(
        self,
        configs: Sequence[Config],
        seeds: Sequence[int],
        device: torch.device,
        cudnn_batchnorm: bool = False,
    ) -> None:
        shape = stack_shape(configs)
        inits = {}  # by seed: members of one seed (trials) start alike
        for seed in dict.fromkeys(seeds):
            # as training.fit; dropout holds no weights, so any member's rates give this init
            with global_stream(seed, "init"):
                inits[seed] = build_model(shape).state_dict()
        states = [inits[seed] for seed in seeds]
        self.template = build_model(shape)  # the module layout, for unstacking
        self.state: dict[str, torch.Tensor] = {}  # state_dict key -> stacked tensor
        for key, value in states[0].items():
            if key.endswith("num_batches_tracked"):
                continue
            stacked = torch.stack([state[key] for state in states]).to(device)
            if not key.endswith(("running_mean", "running_var")) and value.dim() == 1:
                stacked = stacked.unsqueeze(-1)  # [K, out, 1]: broadcasts against [K, out, b]
            self.state[key] = stacked.clone(memory_format=torch.contiguous_format)
        self.activation = ACTIVATIONS[shape.activation]
        self.layers: list[_Layer] = []
        self.drop_width = 0
        for index, module in enumerate(self.template):
            if isinstance(module, nn.Linear):
                weight, bias = self.state[f"{index}.weight"], self.state[f"{index}.bias"]
                self.layers.append(_Layer(weight, bias, None, False, False, 0))
            elif isinstance(module, nn.BatchNorm1d):
                self.layers[-1].norm = tuple(
                    self.state[f"{index}.{name}"]
                    for name in ("weight", "bias", "running_mean", "running_var")
                )
            elif isinstance(module, nn.Dropout):
                self.layers[-1].drops, self.layers[-1].drop_offset = True, self.drop_width
                self.drop_width += self.layers[-1].weight.shape[1]  # the layer's width
            else:
                self.layers[-1].activation = True
        # BatchNorm through torch's own CUDA kernel by default: cuDNN's, for one sample of
        # K × width channels, took 40% of a K = 32 step on an H100 (benchmarks/profile_step.py)
        self.cudnn_batchnorm = cudnn_batchnorm
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
        with torch.backends.cudnn.flags(enabled=self.cudnn_batchnorm):
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
                if layer.drops and masks is not None:
                    h = h * masks[:, layer.drop_offset : layer.drop_offset + h.shape[1]]
        return h

    def member_state(
        self, k: int, model: nn.Module, state: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Member k's slice of a stacked state as its own model's state_dict: the same tensors
        in the same order, numbered without the dropout slots that the member does not use."""
        state = self.state if state is None else state
        out = {}
        for (key, template), own_key in zip(
            self.template.state_dict().items(), model.state_dict(), strict=True
        ):
            if key.endswith("num_batches_tracked"):
                out[own_key] = template.clone()
            else:
                out[own_key] = state[key][k].detach().reshape(template.shape).clone()
        return out
