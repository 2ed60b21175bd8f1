import json

import torch

from harness.core.store import RunKey, RunStore
from harness.core.training import run
from tests.conftest import TINY


def test_save_once_atomic_and_read_back(tmp_path, tiny_mnist):
    store = RunStore(tmp_path)
    record = run(TINY, 0, tiny_mnist, label="tiny")
    key = RunKey.of(record)
    assert key == RunKey(TINY.hash(), 0, record["engine"])
    assert not store.has(key)
    path = store.save(record)
    assert store.has(key) and json.loads(path.read_text()) == record
    assert not list(store.runs.glob("*.partial"))

    changed = {**record, "label": "other"}
    assert store.save(changed) == path  # stored once: the first record stays
    assert store.load(key)["label"] == "tiny"

    (store.runs / "killed-mid-write.partial").write_text('{"config_hash": "x", "se')
    assert store.records() == [record]  # a partial write is no run
    assert store.corrupt_count() == 0


def test_record_keeps_what_identifies_its_numeric_path(tiny_mnist):
    environment = run(TINY, 0, tiny_mnist)["environment"]
    assert {"cpu", "cpu_flags", "cpu_capability", "math_libraries", "threads"} <= set(environment)
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["cpu_capability"]  # a real name on any architecture, never empty


def test_a_record_without_an_engine_is_set_aside_not_matched(tmp_path, tiny_mnist):
    """A run's identity includes its engine: a record without one cannot be matched to a task,
    so it is set aside (and trained again) rather than taken for any engine's run."""
    store = RunStore(tmp_path)
    record = run(TINY, 0, tiny_mnist)
    store.runs.mkdir(parents=True)
    no_engine = {k: v for k, v in record.items() if k != "engine"}
    (store.runs / f"{TINY.hash()}-seed0.json").write_text(json.dumps(no_engine))
    store.save(record)
    assert store.records() == [record]
    assert store.corrupt_count() == 1
