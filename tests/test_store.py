import json

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
    assert environment["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512")


def test_records_of_the_previous_schema_stay_readable_and_apart(tmp_path, tiny_mnist):
    store = RunStore(tmp_path)
    record = run(TINY, 0, tiny_mnist)
    assert record["schema"] == 2
    old = {k: v for k, v in record.items() if k not in ("schema", "engine", "test_predictions")}
    store.runs.mkdir(parents=True)
    (store.runs / f"{TINY.hash()}-seed0.json").write_text(json.dumps(old))  # the old file name
    store.save(record)
    engines = sorted(RunKey.of(r).engine for r in store.records())
    assert engines == sorted(["legacy", record["engine"]])
    assert store.corrupt_count() == 0  # recognized, not set aside
    assert store.has(RunKey.of(record))  # the new record does not collide with the old one
