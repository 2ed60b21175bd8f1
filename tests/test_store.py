import json

import pytest
import torch

from harness.core.store import RunKey, RunStore, numeric_platform
from harness.core.training import run_one


def test_save_once_atomic_and_read_back(tmp_path, tiny, tiny_mnist):
    store = RunStore(tmp_path)
    record = run_one(tiny, 0, tiny_mnist, label="tiny")
    key = RunKey.of(record)
    platform = numeric_platform(record["environment"])
    assert key == RunKey(tiny.hash(), 0, record["engine"], platform, "synthetic")
    assert not store.has(key)
    path = store.save(record)
    assert path.name == f"{tiny.hash()}-seed0-{record['engine']}-{platform}-synthetic.json"
    assert store.has(key) and json.loads(path.read_text()) == record
    assert not list(store.runs.glob("*.partial"))

    changed = {**record, "label": "other"}
    assert store.save(changed) == path  # stored once: the first record stays
    assert store.load(key)["label"] == "tiny"

    (store.runs / "killed-mid-write.partial").write_text('{"config_hash": "x", "se')
    assert store.records() == [record]  # a partial write is no run
    assert store.corrupt_count() == 0


def test_record_keeps_what_identifies_its_numeric_path(tiny, tiny_mnist):
    environment = run_one(tiny, 0, tiny_mnist)["environment"]
    assert {"cpu", "cpu_flags", "cpu_capability", "math_libraries", "threads"} <= set(environment)
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["cpu_capability"]  # a real name on any architecture, never empty


def test_the_platform_names_the_instruction_set_and_changes_with_what_changes_numbers(
    tiny, tiny_mnist
):
    env = run_one(tiny, 0, tiny_mnist)["environment"]
    platform = numeric_platform(env)
    assert platform.startswith(env["cpu_capability"].lower() + "-")
    for key, other in [
        ("cpu_capability", "AVX2"),
        ("math_libraries", "OpenBLAS 0.3"),
        ("cpu_flags", "fma avx avx2"),
        ("torch", "2.0.0"),
    ]:
        assert numeric_platform(env | {key: other}) != platform, key
    assert numeric_platform(env | {"threads": 7, "timestamp": "then"}) == platform


def test_a_schema_2_record_loads_keyed_by_the_platform_of_its_environment(
    tmp_path, tiny, tiny_mnist
):
    """Records stored before the platform was named (their file name has none) still load, and
    a resume on the machine that trained them finds them; on another machine it does not."""
    record = run_one(tiny, 0, tiny_mnist)
    old = {k: v for k, v in record.items() if k not in ("platform", "data", "test_history")}
    old["schema"] = 2
    store = RunStore(tmp_path)
    store.runs.mkdir(parents=True)
    key = RunKey.of(record)._replace(data="mnist")
    (store.runs / key.legacy_file_name()).write_text(json.dumps(old))
    assert store.records() == [old] and RunKey.of(old) == key
    assert store.has(key) and store.load(key) == old
    assert not store.has(key._replace(platform="avx2-000000"))


DAMAGE = {
    "a short test_predictions": lambda r: r.update(test_predictions=r["test_predictions"][:-1]),
    "a string accuracy": lambda r: r["metrics"].update(test_accuracy="0.98"),
    "an infinite accuracy": lambda r: r["metrics"].update(test_accuracy=float("inf")),
    "an accuracy the confusion matrix disagrees with": lambda r: r["metrics"].update(
        test_accuracy=0.5
    ),
    "a misclassified index out of range": lambda r: r["test_misclassified"].append(10**6),
    "a history entry without its accuracy": lambda r: r["history"][0].pop("val_accuracy"),
    "an epoch's test evaluation missing": lambda r: r["test_history"].pop(),
    "a config that is not its hash's": lambda r: r["config"].update(lr=0.5),
    "a best epoch past the last": lambda r: r["metrics"].update(best_epoch=99),
    "a seed other than its file name's": lambda r: r.update(seed=r["seed"] + 1),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_record_is_set_aside_in_one_line(tmp_path, tiny, tiny_mnist, capsys, damage):
    store = RunStore(tmp_path)
    good = run_one(tiny, 0, tiny_mnist)
    damaged = json.loads(json.dumps(good))
    damaged["seed"] = 1
    path = store.save(run_one(tiny, 1, tiny_mnist))
    store.save(good)
    DAMAGE[damage](damaged)
    path.write_text(json.dumps(damaged))
    assert [r["seed"] for r in store.records()] == [0]
    assert (store.corrupt / path.name).exists() and store.corrupt_count() == 1
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and path.name in warning[0] and "trained again" in warning[0]


def test_a_record_without_an_engine_is_set_aside_not_matched(tmp_path, tiny, tiny_mnist):
    """A run's identity includes its engine: a record without one cannot be matched to a task,
    so it is set aside (and trained again) rather than taken for any engine's run."""
    store = RunStore(tmp_path)
    record = run_one(tiny, 0, tiny_mnist)
    store.runs.mkdir(parents=True)
    no_engine = {k: v for k, v in record.items() if k != "engine"}
    (store.runs / f"{tiny.hash()}-seed0.json").write_text(json.dumps(no_engine))
    store.save(record)
    assert store.records() == [record]
    assert store.corrupt_count() == 1
