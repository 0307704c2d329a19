"""Image datasets as in-memory arrays, prepared once by a pipeline rule.

A dataset is an :class:`ImageDataset`: ``(N, C, H, W)`` float32 images in ``[0, 1]`` and int64 labels
for a train and a test split, plus a JSON-serialisable ``meta`` dict (source, split seed, ...).
:func:`prepare_dataset` builds one from its source (scikit-learn's bundled ``digits``, or torchvision's
CIFAR-10/100 python archives), :func:`save_dataset` writes it atomically to one ``.npz`` file and
:func:`load_dataset` reads it back bit for bit.

Nothing here downloads unless asked to: CIFAR files must already be extracted under ``root`` or
``download=True`` must be passed on a machine with network access; otherwise a
:class:`DataUnavailableError` says which files are missing and where to put them.
"""

from __future__ import annotations

import json
import socket
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geomhead.atomic import atomic_path

__all__ = [
    "DATASETS",
    "DataUnavailableError",
    "ImageDataset",
    "load_dataset",
    "prepare_cifar",
    "prepare_dataset",
    "prepare_digits",
    "save_dataset",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100")
"""Names accepted by :func:`prepare_dataset`."""

_CIFAR_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100}
_FORMAT = "geomhead.dataset/1"
_DOWNLOAD_SOCKET_TIMEOUT_S = 60.0


class DataUnavailableError(RuntimeError):
    """Raw data needed to prepare a dataset is missing, corrupted or could not be downloaded."""


@dataclass(frozen=True)
class ImageDataset:
    """An image classification dataset held as arrays.

    Attributes:
        x_train: Training images, shape ``(N, C, H, W)``, float32 in ``[0, 1]``.
        y_train: Training labels, shape ``(N,)``, int64 in ``[0, classes)``.
        x_test: Test images, shape ``(M, C, H, W)``, float32 in ``[0, 1]``.
        y_test: Test labels, shape ``(M,)``, int64 in ``[0, classes)``.
        name: Dataset name, one of :data:`DATASETS` for prepared data.
        classes: Number of classes.
        meta: JSON-serialisable provenance (source, split seed, test fraction, ...).

    Raises:
        ValueError: If shapes, dtypes, value ranges or labels are inconsistent.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if isinstance(self.classes, bool) or not isinstance(self.classes, (int, np.integer)) or self.classes < 1:
            raise ValueError(f"classes must be a positive integer, got {self.classes!r}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        shapes = []
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4:
                raise ValueError(
                    f"x_{split} must be a float32 array of shape (N, C, H, W), got "
                    f"{getattr(x, 'dtype', type(x).__name__)} with shape {getattr(x, 'shape', None)}"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"y_{split} must be an int64 array of shape ({x.shape[0]},), got "
                    f"{getattr(y, 'dtype', type(y).__name__)} with shape {getattr(y, 'shape', None)}"
                )
            if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
                raise ValueError(f"x_{split} values must be finite and in [0, 1]")
            if y.size and (y.min() < 0 or y.max() >= self.classes):
                raise ValueError(f"y_{split} labels must be in [0, {self.classes}), got range [{y.min()}, {y.max()}]")
            shapes.append(x.shape[1:])
        if shapes[0] != shapes[1]:
            raise ValueError(f"train and test image shapes differ: {shapes[0]} vs {shapes[1]}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def prepare_digits(test_fraction: float = 0.2, split_seed: int = 0) -> ImageDataset:
    """Scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes; no download).

    Pixel values ``v ∈ {0, …, 16}`` become ``v / 16 ∈ [0, 1]``; images have shape ``(N, 1, 8, 8)``.
    The train/test split is stratified by class:
    ``sklearn.model_selection.train_test_split(x, y, test_size=test_fraction, stratify=y,
    random_state=split_seed)``, so the same seed always gives the same split.

    Args:
        test_fraction: Fraction of the images in the test split, in ``(0, 1)``.
        split_seed: Seed of the split, a non-negative integer.

    Returns:
        The dataset; ``meta`` records source, split method, ``split_seed`` and ``test_fraction``.

    Raises:
        ValueError: If ``test_fraction`` or ``split_seed`` is out of range.
    """
    from sklearn import __version__ as sklearn_version
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_split_args(test_fraction, split_seed)
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=split_seed)
    meta = {
        "source": "sklearn.datasets.load_digits",
        "sklearn_version": sklearn_version,
        "pixel_scale": "value / 16",
        "split": "stratified train_test_split",
        "split_seed": int(split_seed),
        "test_fraction": float(test_fraction),
    }
    return ImageDataset(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        name="digits",
        classes=10,
        meta=meta,
    )


def prepare_cifar(name: str, root: str | Path, download: bool = False) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 with the official 50 000 / 10 000 train/test split, via torchvision.

    Images are the archive's uint8 pixels ``v`` as ``v / 255`` (float32), shape ``(N, 3, 32, 32)``.
    The extracted python-version archive must sit under ``root`` (``root/cifar-10-batches-py`` or
    ``root/cifar-100-python``). With ``download=True`` torchvision fetches it first; sockets then time
    out after 60 s of silence instead of hanging, and any failure becomes a
    :class:`DataUnavailableError`.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: Directory that holds (or will receive) the extracted archive.
        download: Whether to download the archive when files are missing.

    Returns:
        The dataset; ``meta`` records source, root and class names.

    Raises:
        ValueError: If ``name`` is not a CIFAR dataset.
        DataUnavailableError: If files are missing (and ``download`` is false), fail torchvision's
            md5 check, or the download fails.
    """
    from torchvision import __version__ as tv_version
    from torchvision.datasets import CIFAR10, CIFAR100

    if name not in _CIFAR_CLASSES:
        raise ValueError(f"name must be one of {sorted(_CIFAR_CLASSES)}, got {name!r}")
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    root = Path(root)
    folder = root / cls.base_folder
    expected = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in expected if not (folder / f).is_file()]
    hint = (
        f"Either put the extracted python-version archive ({cls.filename}, from {cls.url}) under {root}, "
        f"so that {folder} holds {', '.join(expected)}, or set data.download: true in params.yaml "
        "on a machine with network access."
    )
    if missing:
        if not download:
            raise DataUnavailableError(f"{name} files are missing in {folder}: {', '.join(missing)}. {hint}")
        _download(cls, root, name, folder, hint)
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as err:
        raise DataUnavailableError(
            f"{name} files in {folder} failed torchvision's integrity (md5) check: they are corrupted "
            f"or not the official archive ({err}). Delete {folder} and {hint[0].lower()}{hint[1:]}"
        ) from err
    meta = {
        "source": f"torchvision.datasets.{cls.__name__}",
        "torchvision_version": tv_version,
        "root": str(root),
        "pixel_scale": "value / 255",
        "split": "official",
        "class_names": [str(c) for c in train.classes],
    }
    return ImageDataset(
        x_train=_cifar_images(train.data),
        y_train=np.asarray(train.targets, dtype=np.int64),
        x_test=_cifar_images(test.data),
        y_test=np.asarray(test.targets, dtype=np.int64),
        name=name,
        classes=_CIFAR_CLASSES[name],
        meta=meta,
    )


def prepare_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    download: bool = False,
) -> ImageDataset:
    """Prepare a dataset by name (dispatch to :func:`prepare_digits` / :func:`prepare_cifar`).

    Args:
        name: One of :data:`DATASETS`.
        root: Raw-data directory (CIFAR only; required there).
        test_fraction: Test fraction of the stratified split (digits only; CIFAR uses the official split).
        split_seed: Seed of the split (digits only).
        download: Allow downloading (CIFAR only).

    Returns:
        The prepared dataset.

    Raises:
        ValueError: If ``name`` is unknown, or ``root`` is missing for CIFAR.
        DataUnavailableError: See :func:`prepare_cifar`.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {list(DATASETS)}, got {name!r}")
    if name == "digits":
        return prepare_digits(test_fraction=test_fraction, split_seed=split_seed)
    if root is None:
        raise ValueError(f"root is required for {name!r} (the directory that holds the raw archive), got None")
    return prepare_cifar(name, root, download=download)


def save_dataset(ds: ImageDataset, path: str | Path) -> None:
    """Write a dataset to one ``.npz`` file, atomically.

    Images that are exactly ``k / 255`` for integers ``k`` (CIFAR) are stored as uint8 ``k`` and
    decoded as ``k.astype(float32) / 255``, which reproduces them bit for bit; other images are stored
    as float32. ``meta`` is stored as a JSON string. The file is written to a temporary file in the
    same directory and moved into place with :func:`os.replace`, so ``path`` is either absent, the old
    file, or the complete new file — never a partial one (:func:`geomhead.atomic.atomic_path`).

    Args:
        ds: The dataset.
        path: Target file (parent directories are created).

    Raises:
        ValueError: If ``ds.meta`` is not JSON-serialisable.
    """
    path = Path(path)
    try:
        meta_json = json.dumps(ds.meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"ds.meta must be JSON-serialisable: {err}") from err
    encoded = {k: _encode_uint8(getattr(ds, k)) for k in ("x_train", "x_test")}
    as_uint8 = all(v is not None for v in encoded.values())
    arrays: dict[str, np.ndarray] = {
        "format": np.array(_FORMAT),
        "x_encoding": np.array("uint8/255" if as_uint8 else "float32"),
        "x_train": encoded["x_train"] if as_uint8 else ds.x_train,  # type: ignore[dict-item]
        "x_test": encoded["x_test"] if as_uint8 else ds.x_test,  # type: ignore[dict-item]
        "y_train": ds.y_train,
        "y_test": ds.y_test,
        "name": np.array(ds.name),
        "classes": np.array(int(ds.classes), dtype=np.int64),
        "meta": np.array(meta_json),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez adds no suffix
        np.savez(fh, **arrays)


def load_dataset(path: str | Path) -> ImageDataset:
    """Read a dataset written by :func:`save_dataset` (``np.load(allow_pickle=False)``).

    Args:
        path: The ``.npz`` file.

    Returns:
        The dataset, bitwise equal to the one saved.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a valid dataset file (corrupt, truncated or wrong content).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist; prepare it first (geomhead's prepare-data pipeline rule)")
    try:
        # open the file ourselves: np.load leaks its own handle when a truncated zip fails to parse
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            files = set(npz.files)
            needed = {"format", "x_encoding", "x_train", "x_test", "y_train", "y_test", "name", "classes", "meta"}
            if not needed <= files:
                raise ValueError(f"missing arrays {sorted(needed - files)}")
            if str(npz["format"]) != _FORMAT:
                raise ValueError(f"format is {str(npz['format'])!r}, expected {_FORMAT!r}")
            encoding = str(npz["x_encoding"])
            x_train, x_test = npz["x_train"], npz["x_test"]
            if encoding == "uint8/255":
                x_train, x_test = _decode_uint8(x_train), _decode_uint8(x_test)
            elif encoding != "float32":
                raise ValueError(f"unknown x_encoding {encoding!r}")
            ds = ImageDataset(
                x_train=x_train,
                y_train=npz["y_train"],
                x_test=x_test,
                y_test=npz["y_test"],
                name=str(npz["name"]),
                classes=int(npz["classes"]),
                meta=json.loads(str(npz["meta"])),
            )
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a valid geomhead dataset file: {err}") from err
    return ds


def _check_split_args(test_fraction: float, split_seed: int) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer, got {split_seed!r}")


def _cifar_images(data: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, C, H, W) float32 ``v / 255`` (the decoding :func:`load_dataset` uses)."""
    return _decode_uint8(np.ascontiguousarray(np.asarray(data, dtype=np.uint8).transpose(0, 3, 1, 2)))


def _decode_uint8(k: np.ndarray) -> np.ndarray:
    if k.dtype != np.uint8:
        raise ValueError(f"uint8-encoded images must have dtype uint8, got {k.dtype}")
    return k.astype(np.float32) / np.float32(255.0)


def _encode_uint8(x: np.ndarray) -> np.ndarray | None:
    """Return uint8 ``k`` with ``k / 255`` bitwise equal to ``x``, or None if no such ``k`` exists."""
    k = np.rint(x.astype(np.float64) * 255.0)
    if k.size and (k.min() < 0 or k.max() > 255):
        return None
    k8 = k.astype(np.uint8)
    if not np.array_equal(_decode_uint8(k8).view(np.uint32), x.view(np.uint32)):
        return None
    return k8


def _download(cls: type, root: Path, name: str, folder: Path, hint: str) -> None:
    """Download and extract a CIFAR archive with a socket timeout; failures → DataUnavailableError."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except Exception as err:  # network errors come as URLError, OSError, socket.timeout, RuntimeError
        raise DataUnavailableError(f"downloading {name} into {folder} failed ({type(err).__name__}: {err}). {hint}") from err
    finally:
        socket.setdefaulttimeout(previous)
