"""Shared fixtures: tiny synthetic MNIST-shaped data for logic, the real files for integration."""

from __future__ import annotations

import pytest
import torch

from harness.core.config import Config
from harness.core.data import DataError, Mnist, load_mnist, raw_folder, resolve_data_dir

TINY = Config(hidden_widths=(32, 16), dropout=(0.2, 0.0), epochs=3, batch_size=32, val_size=100)


def synthetic_mnist(n_train: int = 600, n_test: int = 200, seed: int = 0) -> Mnist:
    """Ten noisy class prototypes: learnable in a few epochs, so metrics mean something."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, 784, generator=generator)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        noise = 2.0 * torch.randn(n, 784, generator=generator)
        return prototypes[labels] + noise, labels

    train_images, train_labels = sample(n_train)
    test_images, test_labels = sample(n_test)
    return Mnist(train_images, train_labels, test_images, test_labels)


@pytest.fixture(scope="session")
def tiny_mnist() -> Mnist:
    return synthetic_mnist()


@pytest.fixture(scope="session")
def real_mnist() -> Mnist:
    try:
        return load_mnist(resolve_data_dir())
    except DataError as error:
        pytest.skip(f"real MNIST not available ({error}); set HARNESS_DATA_DIR")


@pytest.fixture
def real_files() -> None:
    """The four MNIST files, for commands that check them before training (no loading here)."""
    if not (raw_folder(resolve_data_dir()) / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("real MNIST files not available; set HARNESS_DATA_DIR")


@pytest.fixture
def one_thread():
    """One torch thread: sums in the same order every run (so that a stacked member can be
    compared with its rerun), and the machine's other core left to others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
