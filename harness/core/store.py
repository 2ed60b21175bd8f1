"""Run records: one JSON file per (config hash, seed, engine), written atomically, never twice.

A record is written to a temporary file in the same folder and renamed into place, so a
process killed mid-write leaves at most a *.partial file that no reader takes for a run. A
record that does not parse is moved aside into runs/corrupt/ (and so trained again); a run
being trained holds a lock file, so that a second command does not train it too.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import torch

from harness import UserError
from harness.core.data import MNIST_SOURCE
from harness.core.record import RunRecord, check_record

RESULTS_DIR_ENV = "HARNESS_RESULTS_DIR"
DEFAULT_RESULTS_DIR = Path("results")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_results_dir(arg: str | Path | None = None) -> Path:
    """The results folder: the option, else $HARNESS_RESULTS_DIR, else ./results."""
    return Path(arg or os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RESULTS_DIR)


@functools.cache
def rescue_dir() -> Path:
    """Where this process saves the records that the store could not take: a new folder of its
    own (mode 700) in the system's temporary folder, made on first use."""
    return Path(tempfile.mkdtemp(prefix="harness-unsaved-runs-"))


class StoreError(UserError):
    pass


def write_json_atomically(path: Path, data: Any) -> None:
    """Written to a temporary file beside path, then renamed into place: a reader never sees
    half a file, and a process killed mid-write leaves at most a *.partial file."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".partial", delete=False, encoding="utf-8"
    ) as handle:
        try:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)


class RunConditions(NamedTuple):
    """What, besides the config and the seed, fixes a run's numbers: the engine (device, threads,
    stacking: training.engine), the machine's numeric platform (numeric_platform) and the data
    set (data.Mnist.source). Runs of other conditions never replace or stand in for each other."""

    engine: str
    platform: str
    data: str = MNIST_SOURCE

    def key(self, config_hash: str, seed: int) -> RunKey:
        return RunKey(config_hash, seed, *self)


class RunKey(NamedTuple):
    """What identifies a run: the experiment and the seed, and what else fixes its numbers: the
    engine (device, threads, stacking), the machine's numeric platform and the data set."""

    config_hash: str
    seed: int
    engine: str  # training.engine
    platform: str  # numeric_platform of the machine that trained it
    data: str = MNIST_SOURCE  # data.Mnist.source

    @classmethod
    def of(cls, record: RunRecord) -> RunKey:
        """A record's key; one stored before the platform and data were recorded (schema 2) is
        keyed by the platform of its environment, on MNIST."""
        platform = record.get("platform") or numeric_platform(record["environment"])
        data = record.get("data", MNIST_SOURCE)
        return cls(record["config_hash"], record["seed"], record["engine"], platform, data)

    @property
    def conditions(self) -> RunConditions:
        return RunConditions(self.engine, self.platform, self.data)

    def file_name(self) -> str:
        data = "" if self.data == MNIST_SOURCE else f"-{self.data}"
        return f"{self.config_hash}-seed{self.seed}-{self.engine}-{self.platform}{data}.json"

    def legacy_file_name(self) -> str:
        """The name of schema 2's records, which named no platform and no data."""
        return f"{self.config_hash}-seed{self.seed}-{self.engine}.json"


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.corrupt = self.runs / "corrupt"

    def check_writable(self) -> None:
        """Fails in one line, before any training, where finished runs could not be saved."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.runs, suffix=".probe"):
                pass
        except OSError as error:
            raise StoreError(
                f"results folder {self.root} is not a writable folder ({error.strerror}): "
                f"give another (or set ${RESULTS_DIR_ENV})",
                "results_dir",
            ) from error

    def check_readable(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"results folder {self.root} is not a folder", "results_dir")

    def path(self, key: RunKey) -> Path:
        """Where the run's record is: its own file, or a schema-2 file of the same run."""
        path = self.runs / key.file_name()
        legacy = self.runs / key.legacy_file_name()
        old = not path.exists() and key.data == MNIST_SOURCE and legacy.exists()
        return legacy if old and _legacy_platform(legacy) == key.platform else path

    def has(self, key: RunKey) -> bool:
        return self.path(key).exists()

    def load(self, key: RunKey) -> RunRecord:
        return json.loads(self.path(key).read_text())

    def save(self, record: RunRecord) -> Path:
        """Stores a finished run, unless that run is stored already. Where the folder cannot be
        written, the record goes to a rescue folder instead and StoreError says where."""
        path = self.path(RunKey.of(record))
        if path.exists():
            return path
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            write_json_atomically(path, record)
        except OSError as error:
            rescued = self.rescue(record)
            raise StoreError(
                f"cannot store {path} ({error.strerror}); the finished run is saved in "
                f"{rescued.parent}/: copy it into {self.runs}/ once that is writable, then run "
                "the same command again",
                "results_dir",
            ) from None
        return path

    def rescue(self, record: RunRecord) -> Path:
        """Saves a finished run that the store could not take in rescue_dir(), under its store
        file name, so that it can be copied back."""
        try:
            path = rescue_dir() / self.path(RunKey.of(record)).name
            write_json_atomically(path, record)
        except OSError as error:
            raise StoreError(
                f"cannot store {record.get('label')} seed {record.get('seed')} in {self.runs} "
                f"nor in a temporary folder ({error.strerror}): the run is lost"
            ) from None
        return path

    def records(self) -> list[RunRecord]:
        """Every stored run; a record that does not parse, fails check_record, or whose identity
        is not its file's name is set aside (and named) instead, so its run counts as missing."""
        records = []
        for path in sorted(self.runs.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                check_record(record)
                key = RunKey.of(record)
                if path.name not in (key.file_name(), key.legacy_file_name()):
                    raise ValueError(f"its identity names another file, {key.file_name()}")
            except FileNotFoundError:  # set aside by another command since the glob
                continue
            except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
                self._set_aside(path, error)
                continue
            except OSError as error:
                raise StoreError(f"cannot read {path} ({error.strerror})") from None
            records.append(record)
        return records

    def set_aside_unreadable(self) -> None:
        """Moves every record that does not parse or check into runs/corrupt/ (named on
        stderr), so that its run counts as missing and is trained again."""
        self.records()

    def remove_stale_locks(self) -> None:
        """Removes the lock files that a killed command left beside runs it had stored (a grid
        holds its runs' locks until its last run ends); a lock still held is left to its holder."""
        for path in self.runs.glob("*.lock") if self.runs.is_dir() else ():
            if path.with_suffix(".json").exists():
                with file_lock(path):  # taken and removed if free
                    pass

    def corrupt_count(self) -> int:
        return len(list(self.corrupt.glob("*.json"))) if self.corrupt.is_dir() else 0

    def _set_aside(self, path: Path, error: Exception) -> None:
        """Moves the record into runs/corrupt/, beside (never over) one set aside before."""
        self.corrupt.mkdir(parents=True, exist_ok=True)
        target, number = self.corrupt / path.name, 1
        while target.exists():
            target, number = self.corrupt / f"{path.stem}.{number}{path.suffix}", number + 1
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another command set it aside first
            return
        print(
            f"warning: {path} is not a readable run record ({type(error).__name__}: {error}); "
            f"moved to {self.corrupt}/, the run will be trained again",
            file=sys.stderr,
        )

    def claim(self, key: RunKey, wait: bool = False) -> contextlib.AbstractContextManager[bool]:
        """Holds the run's lock while the block runs; yields False when another process holds
        it (that process is training the run), or with wait=True blocks until it lets go."""
        return file_lock((self.runs / key.file_name()).with_suffix(".lock"), wait)


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = False) -> Iterator[bool]:
    """Holds an exclusive lock on path (created, and removed after) while the block runs; yields
    False when another process holds it, or with wait=True blocks until it lets go. The lock is
    the kernel's (flock): no two processes hold it at once, and it is released when its holder
    dies, however it dies, so a crashed command's runs are free again."""
    handle = _locked(path, wait)
    if handle is None:
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):  # an unwritable folder keeps the file, not the lock
            path.unlink()  # before letting go: see _locked
        handle.close()


def _locked(path: Path, wait: bool) -> IO[str] | None:
    """An open handle on path that holds its exclusive flock; None if another process holds it.
    A holder unlinks the file before letting go, so a lock won on a file no longer at path was
    its predecessor's: try again on the new one. The file names its holder, for people."""
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (held open: the handle is the lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return None
        except BaseException:  # Ctrl-C while waiting
            handle.close()
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(handle.fileno())
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            with contextlib.suppress(OSError):
                handle.truncate(0)
                handle.write(f"{socket.gethostname()} {os.getpid()}\n")
                handle.flush()
            return handle
        handle.close()


def _legacy_platform(path: Path) -> str | None:
    """The numeric platform of a schema-2 record, read once per file version."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _platform_of_file(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _platform_of_file(path: Path, mtime_ns: int, size: int) -> str | None:
    try:
        return numeric_platform(json.loads(path.read_text(encoding="utf-8"))["environment"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: records() sets it aside


PLATFORM_FIELDS = ("device", "cpu", "cpu_flags", "cpu_capability", "math_libraries", "torch")


def numeric_platform(env: dict[str, Any]) -> str:
    """What, on one engine, makes one machine's numbers another's: the kernels torch picks
    (its CPU capability: AVX2, AVX-512), the math libraries and their own dispatch (by CPU model
    and flags), torch's version, the GPU. A readable tag (the capability on a CPU, "cuda" on a
    GPU) and a digest of those fields of a run's environment: runs of different platforms never
    replace or stand in for each other."""
    fields = {key: env.get(key) for key in PLATFORM_FIELDS}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:6]
    on_cpu = str(env.get("device", "cpu")).startswith("cpu")
    tag = str(env.get("cpu_capability") or "cpu").lower() if on_cpu else "cuda"
    return f"{re.sub(r'[^a-z0-9]+', '', tag) or 'cpu'}-{digest}"


def this_platform(device: torch.device) -> str:
    """The numeric platform of this process on the device."""
    return numeric_platform(environment(device))


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run ran: enough to tell whether two numbers are comparable."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "math_libraries": math_libraries(),
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
def cpu_flags() -> str:
    """The vector instruction sets that select torch's numeric kernels (AVX2, AVX-512, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx", "amx", "fma")
                return " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(wanted))
    except OSError:
        pass
    return "unknown"


@functools.cache
def math_libraries() -> str:
    """The BLAS / oneDNN builds torch was compiled with, as its build configuration names them."""
    config = torch.__config__.show()
    lines = [
        line.strip(" -")
        for line in config.splitlines()
        if any(name in line for name in ("Math Kernel Library", "MKL-DNN", "oneDNN", "OpenBLAS"))
    ]
    settings = re.findall(r"\b(BLAS_INFO|LAPACK_INFO)=([^,\s]+)", config)
    return "; ".join(lines + [f"{key}={value}" for key, value in settings])


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
