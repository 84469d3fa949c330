"""MNIST and Fashion-MNIST: train + test (70,000 28x28 grey images, 10 classes).

Reads the raw idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), gzipped (.gz) or not, parsed with numpy.
They are looked up in `<root>/` (when a root is given), `<root>/<MNIST|FashionMNIST>/raw/`
(torchvision's layout; root defaults to ./data) and, for Fashion-MNIST, in
/usr/share/datasets/fashion-mnist (Debian package `dataset-fashion-mnist`).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from . import DEFAULT_ROOT, DatasetError
from .base import ArrayDataset

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# idx type codes -> big-endian numpy dtypes
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzipped or not, told by its first bytes) as a numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path} is not an idx file (bad magic number)")
    ndim, dtype = raw[3], np.dtype(IDX_DTYPES[raw[2]])
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)) * dtype.itemsize:
        raise DatasetError(f"{path} is truncated or corrupt: header says {shape}, "
                           f"data has {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _find(folders: list[Path], base: str) -> Path | None:
    for folder in folders:
        for name in (base, base + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _folders(root: str | None, tv_name: str, system_dir: Path | None) -> list[Path]:
    folders = [Path(root)] if root else []
    folders.append(Path(root or DEFAULT_ROOT) / tv_name / "raw")
    if system_dir is not None:
        folders.append(system_dir)
    return folders


def _download(tv_name: str, root: str) -> None:
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, tv_name)(root, train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - network and archive errors alike
        raise DatasetError(f"could not download {tv_name} into {root}: {exc}") from exc


def _load(name: str, tv_name: str, class_names: list[str], root: str | None, download: bool,
          system_dir: Path | None = None, hint: str = "") -> ArrayDataset:
    folders = _folders(root, tv_name, system_dir)
    missing = [base for base in FILES if _find(folders, base) is None]
    if missing and download:
        _download(tv_name, root or DEFAULT_ROOT)
        missing = [base for base in FILES if _find(folders, base) is None]
    if missing:
        where = " or ".join(str(f) for f in folders)
        raise DatasetError(
            f"{name}: missing {missing[0]}(.gz) ({len(missing)} of 4 files missing); put the idx files "
            f"in {where}, or allow downloading{hint}")
    arrays = [read_idx(_find(folders, base)) for base in FILES]
    train_x, train_y, test_x, test_y = arrays
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise DatasetError(f"{name}: image and label files disagree on the number of items")
    images = np.concatenate([train_x, test_x]).astype(np.uint8, copy=False)
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    return ArrayDataset(name, images, labels, class_names)


def load_mnist(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load("mnist", "MNIST", [str(d) for d in range(10)], root, download)


def load_fashion_mnist(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load("fashion-mnist", "FashionMNIST", FASHION_CLASSES, root, download,
                 system_dir=DEBIAN_FASHION_DIR, hint=" (or: apt-get install dataset-fashion-mnist)")
