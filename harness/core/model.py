"""The reference MLP: Linear → BatchNorm → activation → Dropout per hidden layer, then Linear 10."""

from __future__ import annotations

from torch import nn

from harness.core.config import Config

INPUT_SIZE, NUM_CLASSES = 28 * 28, 10
ACTIVATION_LAYERS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def build_model(config: Config) -> nn.Sequential:
    layers: list[nn.Module] = []
    width_in = INPUT_SIZE
    for width, rate in zip(config.hidden_widths, config.dropout, strict=True):
        layers.append(nn.Linear(width_in, width))
        if config.batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATION_LAYERS[config.activation]())
        if rate > 0:
            layers.append(nn.Dropout(rate))
        width_in = width
    layers.append(nn.Linear(width_in, NUM_CLASSES))  # logits; softmax lives in the loss
    return nn.Sequential(*layers)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
