import os
import shutil

import pytest
import torch
from torchvision.datasets import MNIST

from harness.core.data import (
    FILES,
    MEAN,
    MNIST_SOURCE,
    STD,
    DataError,
    data_source,
    load_mnist,
    random_shifts,
    raw_folder,
    resolve_data_dir,
    stratified_split,
)
from tests.helpers import write_idx_set


def test_stratified_split_is_seeded_disjoint_and_proportional():
    labels = torch.arange(1000) % 10
    labels[:50] = 3  # uneven classes
    train, val = stratified_split(labels, 200, seed=1)
    assert len(val) == 200 and len(train) == 800
    assert not set(train.tolist()) & set(val.tolist())
    expected = labels.bincount().double() * 200 / 1000
    assert (labels[val].bincount().double() - expected).abs().max() < 1
    again_train, again_val = stratified_split(labels, 200, seed=1)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, stratified_split(labels, 200, seed=2)[1])


def test_random_shifts_translate_each_image_by_at_most_max_shift():
    images = torch.randn(400, 784)
    shifted = random_shifts(images, 2, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, random_shifts(images, 2, torch.Generator().manual_seed(0)))
    assert torch.equal(random_shifts(images, 0, torch.Generator()), images)
    background = -MEAN / STD
    seen = set()
    for image, moved in zip(images.view(-1, 28, 28), shifted.view(-1, 28, 28), strict=True):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected = torch.full((32, 32), background)
                expected[2 + dy : 30 + dy, 2 + dx : 30 + dx] = image
                if torch.equal(expected[2:30, 2:30], moved):
                    matches.append((dy, dx))
        assert len(matches) == 1  # random content: exactly one translation explains the image
        seen.update(matches)
    assert len(seen) == 25  # every offset in [-2, 2]² is drawn


@pytest.fixture
def offline(monkeypatch):
    """No mirror can be reached: torchvision's download fails at once."""
    monkeypatch.setattr(MNIST, "mirrors", ["file:///nonexistent-mirror/"])


def test_missing_dataset_names_the_folder(tmp_path, offline):
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path)
    message = str(error.value)
    assert str(raw_folder(tmp_path)) in message and "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message


def test_corrupt_file_is_named(tmp_path, offline):
    raw_folder(tmp_path).mkdir(parents=True)
    (raw_folder(tmp_path) / "train-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is corrupt"):
        load_mnist(tmp_path)


def test_missing_dataset_cli_is_one_line_and_nonzero(tmp_path, one_line_error):
    line = one_line_error(
        "-m",
        "harness.train",
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--results-dir",
        str(tmp_path / "results"),
        env={**os.environ, "HARNESS_DATA_DIR": ""},
    )
    assert "nowhere" in line
    assert not (tmp_path / "results").exists()


def test_an_idx_set_of_ones_own_is_read_by_the_same_loader(tmp_path):
    folder = write_idx_set(tmp_path / "small", n_train=300, n_test=100)
    data = load_mnist(folder)
    assert data.train_images.shape == (300, 784) and data.test_images.shape == (100, 784)
    assert data.train_images.dtype == torch.float32 and data.train_labels.max() == 9
    assert data.source == data_source(folder) and data.source.startswith("idx-")
    assert data_source(write_idx_set(tmp_path / "other", n_train=300, n_test=100, seed=1)) != (
        data.source
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # nothing written there


def test_mnists_own_files_are_mnist_wherever_they_lie(tmp_path):
    source = resolve_data_dir()
    if not all((raw_folder(source) / name).exists() for name in FILES):
        pytest.skip(f"real MNIST files not in {raw_folder(source)}; set HARNESS_DATA_DIR")
    for name in FILES:
        shutil.copyfile(raw_folder(source) / name, tmp_path / name)
    assert data_source(tmp_path) == data_source(source) == MNIST_SOURCE


def test_an_idx_set_missing_a_file_is_one_line(tmp_path):
    folder = write_idx_set(tmp_path, n_train=300, n_test=100)
    (folder / FILES[3]).unlink()
    with pytest.raises(DataError, match=f"holds an IDX set without {FILES[3]}") as error:
        load_mnist(folder)
    assert "\n" not in str(error.value)


def test_read_only_folder_is_read_and_left_untouched(tmp_path):
    source = resolve_data_dir()
    if not all((raw_folder(source) / name).exists() for name in FILES):
        pytest.skip(f"real MNIST files not in {raw_folder(source)}; set HARNESS_DATA_DIR")
    copy = tmp_path / "mnist"
    shutil.copytree(raw_folder(source), raw_folder(copy))
    for path in [*raw_folder(copy).iterdir(), raw_folder(copy), copy / "MNIST", copy]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = sorted(p.name for p in raw_folder(copy).iterdir())
    mnist = load_mnist(copy)
    assert mnist.train_images.shape == (60_000, 784) and mnist.test_images.shape == (10_000, 784)
    assert mnist.train_images.dtype == torch.float32
    assert abs(mnist.train_images.mean().item()) < 0.01  # normalized
    assert sorted(p.name for p in raw_folder(copy).iterdir()) == before
