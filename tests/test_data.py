"""Tests for geomhead.data: digits split, atomic npz round trip, CIFAR from files the test writes itself."""

from __future__ import annotations

import os
import pickle
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar as tv_cifar

from geomhead import data as D
from geomhead.data import DataUnavailableError, ImageDataset


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return D.prepare_digits()


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# ---------------------------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_range(digits):
    assert digits.name == "digits" and digits.classes == 10
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.image_shape == (1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    assert np.array_equal(np.unique(np.concatenate([digits.x_train, digits.x_test]) * 16), np.arange(17))
    assert digits.meta["split_seed"] == 0 and digits.meta["test_fraction"] == 0.2


def test_digits_split_is_stratified_and_a_partition(digits):
    from sklearn.datasets import load_digits

    y_all = load_digits().target
    all_counts = np.bincount(y_all, minlength=10)
    test_counts = np.bincount(digits.y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1.0)
    assert np.array_equal(np.bincount(digits.y_train, minlength=10) + test_counts, all_counts)
    rows = {r.tobytes() + bytes([lab]) for r, lab in zip(load_digits().images.astype(np.float32) / 16, y_all, strict=True)}
    split = np.concatenate([digits.x_train, digits.x_test])[:, 0]
    labels = np.concatenate([digits.y_train, digits.y_test])
    assert {r.tobytes() + bytes([int(lab)]) for r, lab in zip(split, labels, strict=True)} == rows


def test_digits_split_is_deterministic_in_the_seed(digits):
    again = D.prepare_digits(split_seed=0)
    other = D.prepare_digits(split_seed=1)
    assert np.array_equal(again.x_test, digits.x_test) and np.array_equal(again.y_test, digits.y_test)
    assert not np.array_equal(other.x_test, digits.x_test)
    small = D.prepare_digits(test_fraction=0.1, split_seed=3)
    assert small.x_test.shape[0] == 180 and small.meta == {**small.meta, "split_seed": 3, "test_fraction": 0.1}


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"split_seed": -1}, "split_seed"),
        ({"split_seed": 1.5}, "split_seed"),
    ],
)
def test_digits_rejects_bad_split_args(kwargs, word):
    with pytest.raises(ValueError, match=word):
        D.prepare_digits(**kwargs)


# ---------------------------------------------------------------------------------------------- save / load


def _assert_bitwise_equal(a: ImageDataset, b: ImageDataset) -> None:
    for k in ("x_train", "y_train", "x_test", "y_test"):
        u, v = getattr(a, k), getattr(b, k)
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes(), k
    assert (a.name, a.classes, a.meta) == (b.name, b.classes, b.meta)


def _uint8_dataset(seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    k_train = rng.integers(0, 256, size=(6, 3, 4, 4), dtype=np.uint8)
    k_test = rng.integers(0, 256, size=(3, 3, 4, 4), dtype=np.uint8)
    return ImageDataset(
        x_train=k_train.astype(np.float32) / np.float32(255),
        y_train=rng.integers(0, 10, size=6).astype(np.int64),
        x_test=k_test.astype(np.float32) / np.float32(255),
        y_test=rng.integers(0, 10, size=3).astype(np.int64),
        name="cifar10",
        classes=10,
        meta={"source": "test", "nested": {"a": [1, 2]}},
    )


def test_save_load_round_trip_digits_float32(digits, tmp_path):
    path = tmp_path / "sub" / "digits.npz"
    D.save_dataset(digits, path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.float32 and str(npz["x_encoding"]) == "float32"
    _assert_bitwise_equal(D.load_dataset(path), digits)
    assert _listing(path.parent) == ["digits.npz"]


def test_save_load_round_trip_k_over_255_as_uint8(tmp_path):
    ds = _uint8_dataset()
    path = tmp_path / "c.npz"
    D.save_dataset(ds, path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.uint8 and str(npz["x_encoding"]) == "uint8/255"
    _assert_bitwise_equal(D.load_dataset(str(path)), ds)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    ds = _uint8_dataset()
    path = tmp_path / "d.npz"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        D.save_dataset(ds, path)
    assert _listing(tmp_path) == []
    monkeypatch.undo()
    D.save_dataset(ds, path)  # an existing file survives a failed overwrite unchanged
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        D.save_dataset(_uint8_dataset(seed=1), path)
    assert _listing(tmp_path) == ["d.npz"] and path.read_bytes() == before


def test_save_rejects_non_json_meta(tmp_path):
    ds = _uint8_dataset()
    bad = ImageDataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.name, ds.classes, {"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        D.save_dataset(bad, tmp_path / "e.npz")
    assert _listing(tmp_path) == []


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        D.load_dataset(tmp_path / "nothere.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        D.load_dataset(garbage)
    good = tmp_path / "good.npz"
    D.save_dataset(_uint8_dataset(), good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated.npz"):
        D.load_dataset(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        D.load_dataset(other)


def test_image_dataset_validates_its_arrays():
    ds = _uint8_dataset()
    args = (ds.x_train, ds.y_train, ds.x_test, ds.y_test, "cifar10", 10)
    with pytest.raises(ValueError, match="x_train"):
        ImageDataset(ds.x_train.astype(np.float64), *args[1:])
    with pytest.raises(ValueError, match="y_test"):
        ImageDataset(*args[:3], ds.y_test.astype(np.int32), *args[4:])
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(*args[:5], 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageDataset(ds.x_train * 2, *args[1:])
    with pytest.raises(ValueError, match="shapes differ"):
        ImageDataset(*args[:2], ds.x_test[:, :1], *args[3:])


# ---------------------------------------------------------------------------------------------- CIFAR


def _write_fake_cifar(root: Path, name: str, per_batch: int = 3, seed: int = 0) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """Write a tiny CIFAR directory in the python-pickle layout torchvision reads; return its content."""
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    cls = tv_cifar.CIFAR10 if name == "cifar10" else tv_cifar.CIFAR100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i, (fname, _) in enumerate(cls.train_list):
        x = rng.integers(0, 256, size=(per_batch + i, 3 * 32 * 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, classes, size=per_batch + i)]
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": x, label_key: y}, fh)
        train_x.append(x)
        train_y += y
    ((test_name, _),) = cls.test_list
    tx = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
    ty = [int(v) for v in rng.integers(0, classes, size=per_batch)]
    with open(folder / test_name, "wb") as fh:
        pickle.dump({"data": tx, label_key: ty}, fh)
    with open(folder / cls.meta["filename"], "wb") as fh:
        pickle.dump({cls.meta["key"]: [f"class{c}" for c in range(classes)]}, fh)
    return np.concatenate(train_x), train_y, tx, ty


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision md5-checks every file on load (not only on download); the fake files cannot pass it."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize(("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_missing_files_name_the_expected_path(tmp_path, name, folder):
    with pytest.raises(DataUnavailableError) as info:
        D.prepare_cifar(name, tmp_path)
    msg = str(info.value)
    assert str(tmp_path / folder) in msg and "data.download: true" in msg and "extracted" in msg
    assert ("data_batch_1" in msg) if name == "cifar10" else ("train" in msg and "meta" in msg)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_a_fake_directory(tmp_path, no_md5, name):
    train_x, train_y, test_x, test_y = _write_fake_cifar(tmp_path, name)
    ds = D.prepare_dataset(name, root=tmp_path)
    n_train = len(train_y)
    assert ds.name == name and ds.classes == (10 if name == "cifar10" else 100)
    assert ds.x_train.shape == (n_train, 3, 32, 32) and ds.x_test.shape == (len(test_y), 3, 32, 32)
    expected = train_x.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    assert ds.x_train.tobytes() == expected.tobytes()
    assert ds.x_test.tobytes() == (test_x.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)).tobytes()
    assert ds.y_train.tolist() == train_y and ds.y_test.tolist() == test_y
    assert ds.meta["split"] == "official" and ds.meta["class_names"][:2] == ["class0", "class1"]
    path = tmp_path / "out" / f"{name}.npz"
    D.save_dataset(ds, path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.uint8
    _assert_bitwise_equal(D.load_dataset(path), ds)


def test_cifar_files_failing_md5_are_reported(tmp_path):
    _write_fake_cifar(tmp_path, "cifar10")
    with pytest.raises(DataUnavailableError, match="integrity"):
        D.prepare_cifar("cifar10", tmp_path)


def test_cifar_download_failure_is_data_unavailable_and_restores_timeout(tmp_path, monkeypatch):
    seen = {}

    def offline(url, download_root, **kwargs):
        seen["timeout"] = socket.getdefaulttimeout()
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(DataUnavailableError, match="downloading cifar10.*no network"):
        D.prepare_cifar("cifar10", tmp_path / "raw", download=True)
    assert seen["timeout"] is not None and seen["timeout"] > 0
    assert socket.getdefaulttimeout() == before


def test_prepare_dataset_dispatch(digits, tmp_path):
    _assert_bitwise_equal(D.prepare_dataset("digits"), digits)
    with pytest.raises(ValueError, match="name must be one of"):
        D.prepare_dataset("mnist")
    with pytest.raises(ValueError, match="root"):
        D.prepare_dataset("cifar10")
    with pytest.raises(ValueError, match="name must be one of"):
        D.prepare_cifar("digits", tmp_path)
    assert D.DATASETS == ("digits", "cifar10", "cifar100")
