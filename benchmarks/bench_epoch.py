"""pytest-benchmark: one training epoch of the reference on real MNIST (55,000 images).

    python -m pytest benchmarks --benchmark-enable

In the normal test run benchmarks are disabled and each body runs once, as a smoke test.
"""

import torch

from harness.core.config import Config
from harness.core.data import split
from harness.core.model import build_model
from harness.core.training import make_optimizer, train_epoch


def test_reference_epoch(benchmark, real_mnist):
    config = Config()
    data = split(real_mnist, config.val_size, seed=0)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    order = torch.randperm(len(data.train_images), generator=torch.Generator().manual_seed(0))

    loss, accuracy = benchmark.pedantic(
        train_epoch,
        args=(model, optimizer, data.train_images, data.train_labels, order, config.batch_size),
        rounds=3,
        warmup_rounds=0,
    )
    assert 0 < loss < 1 and accuracy > 0.85  # one epoch of the reference learns MNIST
