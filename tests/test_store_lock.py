"""A run's lock: one holder at a time across processes, free again when its holder dies."""

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.core.store import RunKey, RunStore

KEY = RunKey("abc", 0, "cpu1t", "avx2-abcdef")
KEY_TEXT = "RunKey('abc', 0, 'cpu1t', 'avx2-abcdef')"
PROCESSES, ROUNDS = 8, 300


def _race(root: Path, start, violations, wins, dead_holder: str) -> None:
    """Each round: every process tries to claim the one key at once (two rounds in three over a
    stale lock file left by a dead holder); a holder creates a marker file that must not exist,
    so two holders at once are counted."""
    store = RunStore(root)
    marker = root / "holder"
    for round_ in range(ROUNDS):
        if round_ % 3 and start.wait() == 0:  # one process lays a dead holder's lock file
            store.path(KEY).with_suffix(".lock").write_text(dead_holder)
        start.wait()
        with store.claim(KEY) as held:
            if not held:
                continue
            with wins.get_lock():
                wins.value += 1
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                with violations.get_lock():
                    violations.value += 1
                continue
            time.sleep(0.02)  # long enough for a second holder to show
            os.unlink(marker)


def test_many_processes_racing_for_one_lock_never_hold_it_together(tmp_path):
    RunStore(tmp_path).check_writable()
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    violations, wins = context.Value("i", 0), context.Value("i", 0)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_holder = f"{socket.gethostname()} {dead.stdout.strip()}\n"  # this host, a pid now gone
    racers = [
        context.Process(target=_race, args=(tmp_path, start, violations, wins, dead_holder))
        for _ in range(PROCESSES)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=300)
    assert all(racer.exitcode == 0 for racer in racers)
    print(
        f"{PROCESSES} processes x {ROUNDS} rounds: {wins.value} claims won, "
        f"{violations.value} while another held the lock"
    )
    assert violations.value == 0
    assert wins.value >= ROUNDS  # every round somebody won, stale lock or not


def test_a_held_lock_is_refused_then_waited_for(tmp_path):
    store = RunStore(tmp_path)
    store.check_writable()
    with store.claim(KEY) as first, store.claim(KEY) as second:
        assert first and not second
    assert not store.path(KEY).with_suffix(".lock").exists()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from harness.core.store import RunStore, RunKey\n"
            f"with RunStore({str(tmp_path)!r}).claim({KEY_TEXT}) as held:\n"
            "    print(held, flush=True); time.sleep(1)\n"
            f"    open({str(tmp_path / 'letting-go')!r}, 'w').close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "True"
    with store.claim(KEY, wait=True) as mine:
        assert mine
        assert (tmp_path / "letting-go").exists()  # only once the holder was letting go
    holder.wait()


def test_a_killed_holders_lock_is_free(tmp_path):
    store = RunStore(tmp_path)
    store.check_writable()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from harness.core.store import RunStore, RunKey\n"
            f"with RunStore({str(tmp_path)!r}).claim({KEY_TEXT}) as held:\n"
            "    print(held, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "True"
    with store.claim(KEY) as taken:
        assert not taken
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert store.path(KEY).with_suffix(".lock").exists()  # left behind, yet no longer held
    with store.claim(KEY) as taken:
        assert taken


def test_the_locks_a_killed_command_left_beside_its_stored_runs_are_removed(tmp_path):
    """Only those: a lock beside no record is a run in flight or a dead holder's, which the
    next claim takes; one still held stays with its holder."""
    store = RunStore(tmp_path)
    store.check_writable()
    stored, pending, held = (RunKey("abc", seed, "cpu1t", "avx2-abcdef") for seed in (0, 1, 2))
    for key in (stored, held):
        store.path(key).write_text("{}")
    for key in (stored, pending):
        store.path(key).with_suffix(".lock").write_text("a dead holder")
    with store.claim(held):
        store.remove_stale_locks()
        assert store.path(held).with_suffix(".lock").exists()
    assert not store.path(stored).with_suffix(".lock").exists()
    assert store.path(pending).with_suffix(".lock").read_text() == "a dead holder"
