"""One seed, one independent random stream per source of randomness.

Each source (the train/validation split, the initialization, the data order, the dropout masks,
the augmentation) draws from its own generator derived from (seed, source). Two variants run with
the same seed therefore share every stream whose use their difference leaves untouched: removing
BatchNorm leaves the split, the initialization, the data order and the dropout masks the same,
where a single shared stream would shift every later draw after the first difference.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

STREAMS = ("split", "init", "order", "dropout", "shift")


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one source of randomness, stable across processes and versions."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r} (known: {', '.join(STREAMS)})")
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


@contextlib.contextmanager
def global_stream(seed: int, stream: str) -> Iterator[None]:
    """torch's global generator seeded from one stream inside the block (a layer's default
    initialization and nn.Dropout draw from it), and put back as it was after it, so that a
    run changes no caller's draws."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(stream_seed(seed, stream))
        yield
