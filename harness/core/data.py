"""MNIST as normalized float32 tensors in memory, and the seeded train/validation split.

A data folder holds the four official files as `MNIST/raw/*.gz` (torchvision's layout), md5-
checked, or the four files of an IDX set of one's own (a subset, another digit set) at its top
level under MNIST's file names: the same loader reads both, and a run records which it trained on
(`Mnist.source`: "mnist", or "idx-" and a digest of the files), so that runs on other data never
stand in for MNIST's.

torchvision reads the files (and checks MNIST's md5 sums). It extracts them next to themselves,
so they are staged in a temporary folder first: the data folder is never written, except to save
files that torchvision had to download because the folder had none.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness import UserError
from harness.core.seeding import generator as seeded_generator

DATA_DIR_ENV = "HARNESS_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")
MEAN, STD = 0.1307, 0.3081  # the training images' pixel mean and std, the usual constants
SIDE = 28
# MNIST's four files, gzipped IDX, and their md5 sums, as torchvision's MNIST.resources lists
# them (torchvision checks them again when it reads the files). Checked here with hashlib:
# importing torchvision takes seconds, which a command should spend only where it reads data.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FILES = tuple(MNIST_MD5)
MNIST_SOURCE = "mnist"


class DataError(UserError):
    """The data could not be loaded; the message says where we looked and what to do."""


@dataclass(frozen=True)
class Mnist:
    """The training and test images of an MNIST-format data set, flattened and normalized:
    the official 60,000 and 10,000, or an IDX set's."""

    train_images: torch.Tensor  # float32 [n_train, 784]
    train_labels: torch.Tensor  # int64 [n_train]
    test_images: torch.Tensor  # float32 [n_test, 784]
    test_labels: torch.Tensor  # int64 [n_test]
    source: str  # "mnist", or "idx-<digest>" (data_source): part of a run's identity


@dataclass(frozen=True)
class Split:
    """One seed's stratified train/validation split of the training images."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor


def resolve_data_dir(arg: str | Path | None = None) -> Path:
    """The data folder: the option, else $HARNESS_DATA_DIR, else ./data."""
    return Path(arg or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def raw_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def idx_set(data_dir: Path) -> bool:
    """Whether the folder holds an IDX set of its own (the four files at its top level, no
    MNIST/raw/), rather than MNIST in torchvision's layout."""
    data_dir = Path(data_dir)
    return not raw_folder(data_dir).is_dir() and any((data_dir / f).is_file() for f in FILES)


def check_files(data_dir: Path) -> list[str]:
    """Names of the files missing from the data folder's MNIST/raw/ (to download); raises on a
    corrupt official file, and on an IDX set that lacks one of its four files."""
    if idx_set(data_dir):
        absent = [f for f in FILES if not (Path(data_dir) / f).is_file()]
        if absent:
            raise DataError(
                f"{data_dir} holds an IDX set without {', '.join(absent)}: an IDX set is the "
                f"four files {', '.join(FILES)}"
            )
        return []
    missing = []
    for filename, md5 in MNIST_MD5.items():
        path = raw_folder(data_dir) / filename
        if not path.exists():
            missing.append(filename)
        elif _md5(path) != md5:
            raise DataError(
                f"{path} is corrupt (md5 is not {md5}): replace it with the official file"
            )
    return missing


def data_source(data_dir: Path) -> str:
    """What a run trained on: "mnist" for the official files (wherever they lie), else "idx-"
    and the first 10 hex digits of the SHA-256 of the four files, in FILES' order."""
    folder = Path(data_dir) if idx_set(data_dir) else raw_folder(data_dir)
    if all(_md5(folder / name) == md5 for name, md5 in MNIST_MD5.items()):
        return MNIST_SOURCE
    digest = hashlib.sha256()
    for filename in FILES:
        digest.update((folder / filename).read_bytes())
    return f"idx-{digest.hexdigest()[:10]}"


def _md5(path: Path) -> str | None:
    """The file's md5 (None if it is not there), computed once per version of the file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _md5_of(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _md5_of(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@contextlib.contextmanager
def staged_mnist(data_dir: Path, transform: Callable | None = None) -> Iterator[tuple[Any, Any]]:
    """torchvision's train and test datasets over a temporary copy of the data folder's files.

    MNIST's files are md5-checked first; files missing from the data folder are downloaded from
    torchvision's mirrors and saved there. An IDX set's files are read as they are. The
    datasets hold their data in memory.
    """
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import extract_archive

    data_dir = Path(data_dir)
    missing = check_files(data_dir)
    own = idx_set(data_dir)
    source = data_dir if own else raw_folder(data_dir)
    with tempfile.TemporaryDirectory(prefix="harness-mnist-") as stage:
        staged_raw = raw_folder(Path(stage))
        staged_raw.mkdir(parents=True)
        for filename in FILES:
            if filename not in missing:
                shutil.copyfile(source / filename, staged_raw / filename)
                if own:  # what download() would extract: torchvision then reads, not fetches
                    extract_archive(str(staged_raw / filename))
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints each step
                train = MNIST(stage, train=True, transform=transform, download=not own)
                test = MNIST(stage, train=False, transform=transform, download=not own)
        except (RuntimeError, AssertionError, ValueError, EOFError, OSError) as error:
            cause = " ".join(str(error).split()) or type(error).__name__  # one line
            if own:
                raise DataError(f"{data_dir}: not a readable IDX set ({cause})") from None
            if not missing:
                raise  # the official files were all there: not a download problem
            raise DataError(
                f"MNIST files missing from {raw_folder(data_dir)} ({', '.join(missing)}) and "
                f"downloading them failed ({cause}): copy the four official .gz files there, "
                f"or give (or set ${DATA_DIR_ENV} to) a folder holding MNIST/raw/*.gz",
                "data_dir",
            ) from error
        if missing:
            _save_downloaded(staged_raw, raw_folder(data_dir), missing)
        yield train, test


def check_dataset(data_dir: Path) -> None:
    """Fails in one line, before any training, where the data could not be loaded; cheap when
    the four files are there (MNIST's md5 sums), a download attempt when some are missing."""
    if check_files(data_dir):
        load_mnist(data_dir)


def load_mnist(data_dir: Path) -> Mnist:
    """Reads the data folder's MNIST (downloading only missing files) or IDX set into memory."""
    with staged_mnist(data_dir) as (train, test):
        for part in (train, test):
            if tuple(part.data.shape[1:]) != (SIDE, SIDE) or not part.targets.min() >= 0:
                raise DataError(f"{data_dir}: expected {SIDE}×{SIDE} images and digit labels")
            if part.targets.max() > 9:
                raise DataError(f"{data_dir}: a label above 9 ({int(part.targets.max())})")
        return Mnist(
            _normalize(train.data),
            train.targets,
            _normalize(test.data),
            test.targets,
            data_source(data_dir),
        )


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
    if not 0 < val_size < len(mnist.train_labels) - 1:
        raise DataError(
            f"val_size {val_size}: the data set has {len(mnist.train_labels)} training images, "
            "and the split must leave some on both sides"
        )
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
