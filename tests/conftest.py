"""Shared fixtures: tiny synthetic data for logic, a small study on disk (an IDX set, a folder of
specs, a shrunk recipe) for the commands' plumbing, the real files for integration; the one
one-line-error check, the one free port, the one command launcher."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from harness.core.config import Config
from harness.core.data import DataError, Mnist, load_mnist, raw_folder, resolve_data_dir
from tests.helpers import PROJECT_ROOT, SMALL_SET, TINY, synthetic_mnist, write_idx_set

SMALL_SPECS = {
    "reference.toml": 'description = "the reference"\n',
    "no_dropout.toml": 'description = "no dropout"\n[config]\ndropout = [0.0, 0.0, 0.0]\n',
    "no_batchnorm.toml": 'description = "no BatchNorm"\n[config]\nbatchnorm = false\n',
    "width_half.toml": 'description = "half width"\n[config]\nhidden_widths = [12, 6, 4]\n',
    "factorials/components.toml": """description = "BatchNorm, dropout and width, every combination"
seeds = 2
[factors.batchnorm]
on = {}
off = { batchnorm = false }
[factors.dropout]
on = {}
off = { dropout = [0.0, 0.0, 0.0] }
[factors.width]
reference = {}
half = { hidden_widths = [12, 6, 4] }
""",
}


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in every test process: the suite runs as two processes on two cores
    (pytest-xdist, pyproject.toml), where two threads each wait on each other (a 3 s test took
    18 s); and one thread sums in the same order every run, so that a stacked member compares
    bit for bit with its run alone. The commands under test get --threads 1 (Harness.start)."""
    torch.set_num_threads(1)


@pytest.fixture
def tiny() -> Config:
    return TINY


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


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small IDX set of 1,200 training and 400 test images, written once."""
    return write_idx_set(tmp_path_factory.mktemp("small-data"))


@pytest.fixture(scope="session")
def small_specs(tmp_path_factory) -> Path:
    """A folder of specs for the small recipe, and a 2^3 factorial (BatchNorm, dropout, width)."""
    folder = tmp_path_factory.mktemp("small-specs")
    for name, text in SMALL_SPECS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@dataclass
class Harness:
    """Launches the harness's commands as a user types them, results and reports in tmp."""

    root: Path
    data: Path  # the small IDX set
    specs: Path  # the small specs folder

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def start(self, module: str, *args: str, small: bool = True, **popen) -> subprocess.Popen:
        """`python -m MODULE ARGS` (MODULE "run_all.py": the script) with this test's results
        and reports folders, and the small study's data, specs and recipe on one torch thread
        per run unless small=False."""
        script = module.endswith(".py")
        command = [sys.executable, *([module] if script else ["-m", module])]
        if small and module != "harness.report":  # first: the test's own options come after
            command += ["--data-dir", str(self.data), "--threads", "1"]
            command += [option for a in SMALL_SET for option in ("--set", a)]
            if module != "harness.train":
                command += ["--specs-dir", str(self.specs)]
        command += [*args, "--results-dir", str(self.results)]
        if module == "harness.report":
            command += ["--out", str(self.reports)]
        elif module != "harness.train":
            command += ["--reports-dir", str(self.reports)]
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )

    def run(
        self, module: str, *args: str, timeout: float = 600, **options
    ) -> subprocess.CompletedProcess:
        """start, then wait: the finished command with its output."""
        process = self.start(module, *args, **options)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def harness(tmp_path, small_data, small_specs) -> Harness:
    return Harness(tmp_path, small_data, small_specs)


@pytest.fixture
def one_line_error() -> Callable[..., str]:
    """Runs `python ARGS` and checks that it failed in one line, exit 2, soon: returns the line."""

    def check(*command: str, timeout: float = 120, cwd: Path = PROJECT_ROOT, env=None) -> str:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert time.perf_counter() - started < timeout / 2
        return lines[0]

    return check


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
