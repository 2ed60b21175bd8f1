"""The study's progress (harness.study.progress) drawn as one tqdm bar per command."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm


class Bar:
    """A Progress: steps added as the study learns of them, a status line, notes above it."""

    def __init__(self, description: str) -> None:
        self.bar = tqdm(total=0, desc=description, unit="step", dynamic_ncols=True)

    def add(self, steps: int, done: int = 0) -> None:
        self.bar.total += steps
        self.bar.n += done
        self.bar.refresh()

    def advance(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def note(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Bar]:
    bar = Bar(description)
    try:
        yield bar
    finally:
        bar.close()


@contextlib.contextmanager
def epoch_bar(epochs: int, description: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar over one run's epochs; yields the callback that advances it."""
    with tqdm(total=epochs, desc=description, unit="epoch", leave=False) as bar:

        def on_epoch(record: dict[str, Any]) -> None:
            bar.set_postfix(val_acc=f"{100 * record['val_accuracy']:.2f}%")
            bar.update()

        yield on_epoch
