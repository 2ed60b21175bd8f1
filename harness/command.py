"""How every command starts and stops: Ctrl-C and SIGTERM take one clean path from the command's
first moment (its modules take seconds to import) to its last, and a stop is one line on stderr
and an exit at once.

    python -m harness.ablate  →  harness/ablate.py  →  run("harness.cli.ablate")

The handlers are set explicitly: a process started in the background by a script inherits SIGINT
*ignored*, and Python then leaves it ignored, so `kill -INT` or a CI runner's Ctrl-C would do
nothing. The exit skips the interpreter's teardown of torch and Dask, which takes seconds and
lets Dask's threads print after the stop; every finished run is on disk by then (written and
synced as it ended), every lock released by the kernel. This module imports nothing heavy.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any, NoReturn

INTERRUPTED = (
    "\ninterrupted: finished runs and trials are kept; run the same command again to train only "
    "what is missing"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the same clean stop, exit 143."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt (Terminated) in the main thread."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)


def stop(interrupt: KeyboardInterrupt) -> NoReturn:
    """The one line of a stop, then the exit: 130 for Ctrl-C, 143 for SIGTERM."""
    print(INTERRUPTED, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(143 if isinstance(interrupt, Terminated) else 130)


def run(module: str) -> NoReturn:
    """A command: its module's main under harness.cli.guard, stoppable while it imports."""
    stop_on_signals()
    try:
        from harness import cli

        main = importlib.import_module(module).main
    except KeyboardInterrupt as interrupt:
        stop(interrupt)
    raise SystemExit(cli.guard(main))
