"""One training step replayed as a CUDA graph: below a few dozen members a stacked step is
hundreds of small launches that cost more than their arithmetic, and a graph launches them all
at once."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured


class GraphStep:
    """Calls step, a function that never syncs with the host and writes persistent tensors only
    in place. With capture on (CUDA): WARMUP_STEPS eager calls on a side stream (as
    torch.cuda.graphs prescribes: lazy initializations kept out of the capture), then one
    capture, then replays. If capture fails: one line on stderr, capture off, and step runs
    eagerly from then on. With capture off, step runs eagerly: the "static" path that the CPU
    tests check against the eager trainer."""

    def __init__(self, step: Callable[[], None], device: torch.device) -> None:
        self.step, self.device = step, device
        self.capture = False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmups = 0

    def __call__(self) -> None:
        if self.capture:
            if self.graph is not None:
                self.graph.replay()
                return
            if self.warmups < WARMUP_STEPS:  # real training steps, only on a side stream
                self.warmups += 1
                with self._side_stream():
                    self.step()
                return
            self.graph = self._captured()
            if self.graph is not None:
                self.graph.replay()  # capture only records: this step runs now
                return
            self.capture = False
        self.step()

    @contextlib.contextmanager
    def _side_stream(self) -> Iterator[None]:
        if self.device.type != "cuda":
            yield
            return
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            yield
        current.wait_stream(side)

    def _captured(self) -> torch.cuda.CUDAGraph | None:
        """The graph of one step, or None (and one line on stderr) if capture fails. Capture
        executes nothing, so a failed one leaves the members as they were."""
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step()
            return graph
        except Exception as error:  # whatever it is, the run (or measurement) goes on
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
            print(
                f"warning: stacked trainer: CUDA graph capture failed ({reason}); "
                "training on without graphs",
                file=sys.stderr,
                flush=True,
            )
            if self.device.type == "cuda":
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize(self.device)
            return None
