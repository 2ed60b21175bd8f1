"""Helpers the test modules share that are no fixtures: tiny configs and data, an IDX set on disk,
records without their timings, and the processes of a command under test."""

from __future__ import annotations

import gzip
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.config import Config
from harness.core.data import FILES, Mnist, Split, split
from harness.core.store import RunStore

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TINY = Config(hidden_widths=(32, 16), dropout=(0.2, 0.0), epochs=3, batch_size=32, val_size=100)
SEARCH_BASE = Config(val_size=100)  # the searches' base on synthetic_mnist's 600 images
# The small study's recipe: the reference's shape shrunk, for commands on the small IDX set
SMALL_SET = [
    "hidden_widths=[24, 12, 8]",
    "dropout=[0.2, 0.1, 0.0]",
    "batch_size=64",
    "val_size=200",
    "epochs=2",
    "lr=0.003",
]


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
    return Mnist(train_images, train_labels, test_images, test_labels, "synthetic")


def search_split() -> Split:
    """The trials' train/validation split of synthetic_mnist, as a search on trial seed 0."""
    return split(synthetic_mnist(), SEARCH_BASE.val_size, 0)


def write_idx_set(folder: Path, n_train: int = 1200, n_test: int = 400, seed: int = 0) -> Path:
    """The four files of a small MNIST-format IDX set (gzipped, MNIST's names) in folder: ten
    random pixel patterns, each image one of them under noise, as uint8; a small network learns
    it to about 90% in two epochs."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 28, 28)) > 0.7

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        images = 0.8 * prototypes[labels] + 0.5 * rng.random((n, 28, 28))
        return np.clip(255 * images, 0, 255).astype(np.uint8), labels.astype(np.uint8)

    folder.mkdir(parents=True, exist_ok=True)
    for (images, labels), (image_file, label_file) in zip(
        (sample(n_train), sample(n_test)), (FILES[0:2], FILES[2:4]), strict=True
    ):
        with gzip.open(folder / image_file, "wb") as out:
            out.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes())
        with gzip.open(folder / label_file, "wb") as out:
            out.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())
    return folder


def metrics_only(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its timings and environment, which legitimately differ run to run."""
    history = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in record["history"]]
    return {
        **{k: record[k] for k in ("metrics", "per_digit_accuracy", "confusion_matrix")},
        "history": history,
        "test_history": record.get("test_history"),
    }


def stored(results: Path) -> list[dict[str, Any]]:
    return RunStore(results).records()


def as_a_background_job() -> None:
    """preexec_fn: start the command as a script's `cmd &` does, with SIGINT ignored (so CI
    runners start their jobs); the command must stop on Ctrl-C all the same."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def dask_workers(pid: int) -> list[int]:
    """The worker processes a local Dask cluster spawned from the given process."""
    return [
        child
        for child in _children(pid)
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
    ]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def wait_for_a_new_run(runs: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    """Until a run record the runs folder did not hold before appears, while the process lives."""
    before = set(runs.glob("*.json"))
    deadline = time.time() + timeout
    while not set(runs.glob("*.json")) - before:
        if process.poll() is not None or time.time() > deadline:
            _, err = process.communicate(timeout=60)
            raise AssertionError(f"no run finished (exit {process.returncode}):\n{err}")
        time.sleep(0.1)


def seconds_to_exit(process: subprocess.Popen, timeout: float = 600) -> tuple[float, str]:
    """How long the process takes to exit from now, and its stderr."""
    started = time.perf_counter()
    _, err = process.communicate(timeout=timeout)
    return time.perf_counter() - started, err
