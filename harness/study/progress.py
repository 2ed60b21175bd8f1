"""How a study tells what it is doing: the steps it expects and finishes, a status line, notes.

The library calls these; the command line draws them as one progress bar (harness.cli.progress).
A caller that wants nothing shown passes QUIET.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def add(self, steps: int, done: int = 0) -> None:
        """More steps are coming: `steps` in all, `done` of them finished already."""

    def advance(self, steps: int = 1) -> None:
        """Steps finished."""

    def status(self, text: str) -> None:
        """What is going on now (the run and epoch, the search's best so far)."""

    def note(self, message: str) -> None:
        """A message worth a line of its own."""


class Quiet:
    """Progress that shows nothing."""

    def add(self, steps: int, done: int = 0) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


QUIET = Quiet()
