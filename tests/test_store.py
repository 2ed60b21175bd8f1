import json

from harness.store import RunStore
from harness.train import run
from tests.conftest import TINY


def test_save_once_atomic_and_frame(tmp_path, tiny_mnist):
    store = RunStore(tmp_path)
    record = run(TINY, 0, tiny_mnist, label="tiny")
    assert not store.has(TINY.hash(), 0)
    path = store.save(record)
    assert store.has(TINY.hash(), 0) and json.loads(path.read_text()) == record
    assert not list(store.runs.glob("*.partial"))

    changed = {**record, "label": "other"}
    assert store.save(changed) == path  # stored once: the first record stays
    assert store.load(TINY.hash(), 0)["label"] == "tiny"

    (store.runs / "killed-mid-write.partial").write_text('{"config_hash": "x", "se')
    frame = store.frame()
    assert len(frame) == 1
    assert frame.loc[0, "test_accuracy"] == record["metrics"]["test_accuracy"]
    assert frame.loc[0, "seed"] == 0 and frame.loc[0, "label"] == "tiny"
