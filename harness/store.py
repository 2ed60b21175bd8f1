"""Run records: one JSON file per (config hash, seed), written atomically, never twice.

A record is written to a temporary file in the same folder and renamed into place, so a
process killed mid-write leaves at most a *.partial file that no reader takes for a run.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

RESULTS_DIR_ENV = "HARNESS_RESULTS_DIR"
DEFAULT_RESULTS_DIR = Path("results")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_results_dir(arg: str | Path | None = None) -> Path:
    """--results-dir, else $HARNESS_RESULTS_DIR, else ./results."""
    return Path(arg or os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RESULTS_DIR)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, config_hash: str, seed: int) -> Path:
        return self.runs / f"{config_hash}-seed{seed}.json"

    def has(self, config_hash: str, seed: int) -> bool:
        return self.path(config_hash, seed).exists()

    def load(self, config_hash: str, seed: int) -> dict[str, Any]:
        return json.loads(self.path(config_hash, seed).read_text())

    def save(self, record: dict[str, Any]) -> Path:
        """Stores a finished run, unless that (config hash, seed) is stored already."""
        path = self.path(record["config_hash"], record["seed"])
        if path.exists():
            return path
        self.runs.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=self.runs, suffix=".partial", delete=False
        ) as handle:
            json.dump(record, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
        return path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.runs.glob("*.json"))]

    def frame(self) -> pd.DataFrame:
        """All runs, one row each: identity and metrics as columns, nested parts as objects."""
        rows = []
        for record in self.records():
            row = {k: v for k, v in record.items() if k != "metrics"}
            row.update(record.get("metrics", {}))
            rows.append(row)
        return pd.DataFrame(rows)


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run ran: enough to tell whether two numbers are comparable."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "git_commit": git_commit(),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str | None:
    """The project's commit, with '-dirty' when the working tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")
