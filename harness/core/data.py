"""MNIST as normalized float32 tensors in memory, and the seeded train/validation split.

torchvision reads the four official files and checks their md5 sums. It extracts them next to
themselves, so they are staged in a temporary folder first: the data folder is never written,
except to save files that torchvision had to download because the folder had none.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity

from harness import UserError
from harness.core.seeding import generator as seeded_generator

DATA_DIR_ENV = "HARNESS_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")
MEAN, STD = 0.1307, 0.3081  # the training images' pixel mean and std, the usual constants
SIDE = 28


class DataError(UserError):
    """MNIST could not be loaded; the message says where we looked and what to do."""


@dataclass(frozen=True)
class Mnist:
    """The official 60,000 training and 10,000 test images, flattened and normalized."""

    train_images: torch.Tensor  # float32 [60000, 784]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor  # float32 [10000, 784]
    test_labels: torch.Tensor  # int64 [10000]


@dataclass(frozen=True)
class Split:
    """One seed's stratified train/validation split of the training images."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor


def resolve_data_dir(arg: str | Path | None = None) -> Path:
    """--data-dir, else $HARNESS_DATA_DIR, else ./data."""
    return Path(arg or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def raw_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def check_files(data_dir: Path) -> list[str]:
    """Names of the official files missing from the data folder; raises on a corrupt one."""
    missing = []
    for filename, md5 in MNIST.resources:
        path = raw_folder(data_dir) / filename
        if not path.exists():
            missing.append(filename)
        elif not check_integrity(str(path), md5):
            raise DataError(
                f"{path} is corrupt (md5 is not {md5}): replace it with the official file"
            )
    return missing


@contextlib.contextmanager
def staged_mnist(
    data_dir: Path, transform: Callable | None = None
) -> Iterator[tuple[MNIST, MNIST]]:
    """torchvision's train and test datasets over a temporary copy of the data folder's files.

    The files are md5-checked first. Files missing from the data folder are downloaded from
    torchvision's mirrors and saved there; the datasets hold their data in memory.
    """
    data_dir = Path(data_dir)
    missing = check_files(data_dir)
    with tempfile.TemporaryDirectory(prefix="harness-mnist-") as stage:
        staged_raw = raw_folder(Path(stage))
        staged_raw.mkdir(parents=True)
        for filename, _ in MNIST.resources:
            if filename not in missing:
                shutil.copyfile(raw_folder(data_dir) / filename, staged_raw / filename)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints each step
                train = MNIST(stage, train=True, transform=transform, download=True)
                test = MNIST(stage, train=False, transform=transform, download=True)
        except RuntimeError as error:
            if not missing:
                raise  # the official files were all there: not a download problem
            cause = " ".join(str(error).split())  # torchvision's message spans several lines
            raise DataError(
                f"MNIST files missing from {raw_folder(data_dir)} ({', '.join(missing)}) and "
                f"downloading them failed ({cause}): copy the four official .gz files there, "
                f"or point --data-dir / ${DATA_DIR_ENV} at a folder holding MNIST/raw/*.gz"
            ) from error
        if missing:
            _save_downloaded(staged_raw, raw_folder(data_dir), missing)
        yield train, test


def check_dataset(data_dir: Path) -> None:
    """Fails in one line, before any training, where MNIST could not be loaded; cheap when the
    four files are there (their md5 sums), a download attempt when some are missing."""
    if check_files(data_dir):
        load_mnist(data_dir)


def load_mnist(data_dir: Path) -> Mnist:
    """Reads MNIST from <data_dir>/MNIST/raw into memory, downloading only missing files."""
    with staged_mnist(data_dir) as (train, test):
        return Mnist(_normalize(train.data), train.targets, _normalize(test.data), test.targets)


def _save_downloaded(staged_raw: Path, target: Path, filenames: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for filename in filenames:
        shutil.copyfile(staged_raw / filename, target / filename)


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return ((images.reshape(len(images), -1).float() / 255.0 - MEAN) / STD).contiguous()


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Train and validation indices, each class sent to validation in proportion to its count."""
    generator = seeded_generator(seed, "split")
    classes, counts = labels.unique(return_counts=True)
    quotas = counts.double() * val_size / len(labels)
    take = quotas.floor().long()
    shortfall = val_size - int(take.sum())  # handed out by largest remainder
    take[(quotas - take).argsort(descending=True, stable=True)[:shortfall]] += 1
    train_parts, val_parts = [], []
    for cls, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = (labels == cls).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        val_parts.append(members[:k])
        train_parts.append(members[k:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def split(mnist: Mnist, val_size: int, seed: int) -> Split:
    train_idx, val_idx = stratified_split(mnist.train_labels, val_size, seed)
    return Split(
        mnist.train_images[train_idx],
        mnist.train_labels[train_idx],
        mnist.train_images[val_idx],
        mnist.train_labels[val_idx],
    )


def random_shifts(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Every image translated by its own random (dx, dy) in [-max_shift, max_shift] pixels.

    Translation is the classic MNIST augmentation that an MLP cannot learn from its own
    architecture; the uncovered border is filled with the normalized background value.
    """
    n = len(images)
    padded = F.pad(images.view(n, SIDE, SIDE), (max_shift,) * 4, value=-MEAN / STD)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(images.device)
    shifted = torch.empty_like(images).view(n, SIDE, SIDE)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            chosen = ((offsets[0] == dy) & (offsets[1] == dx)).nonzero().squeeze(1)
            shifted[chosen] = padded[chosen, dy : dy + SIDE, dx : dx + SIDE]
    return shifted.view(n, -1)
