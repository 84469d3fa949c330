"""CIFAR-10 and CIFAR-100: train + test (60,000 32x32 RGB images), from the python pickles.

Files: `<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}` and
`<root>/cifar-100-python/{train, test, meta}` (root defaults to ./data; a root that is
itself the batches folder works too). Each pickle holds `data` (N x 3072 uint8, planes
R, G, B of 32x32 rows) and `labels` (CIFAR-10) or `fine_labels`/`coarse_labels`
(CIFAR-100). cifar100-20 uses the 20 coarse superclasses, the usual clustering benchmark.
The pickles are read with an unpickler that only builds plain containers and numpy arrays.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from . import DEFAULT_ROOT, DatasetError
from .base import ArrayDataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
            ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """A CIFAR batch as a dict with str keys (python 2 pickles are decoded as latin-1)."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path} is not a readable CIFAR pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} is not a CIFAR pickle (holds a {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path):
    if key not in batch:
        raise DatasetError(f"{path} has no {key!r} entry: not a CIFAR file of this kind")
    return batch[key]


def _texts(values) -> list[str]:
    """Class names as text: a copy re-pickled from Python 2 holds them as bytes."""
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values]


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(_field(batch, "data", path), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' should be N x 3072, got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _folder(root: str | None, sub: str, first_file: str, tv_name: str, download: bool) -> Path:
    base = Path(root or DEFAULT_ROOT)
    folder = base if (base / first_file).is_file() else base / sub
    missing = [f for f in _needed(sub) if not (folder / f).is_file()]
    if missing and download:
        import torchvision.datasets

        try:
            getattr(torchvision.datasets, tv_name)(str(base), train=True, download=True)
        except Exception as exc:  # noqa: BLE001 - network and archive errors alike
            raise DatasetError(f"could not download {tv_name} into {base}: {exc}") from exc
        folder = base / sub
        missing = [f for f in _needed(sub) if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"missing {folder / missing[0]} ({len(missing)} files missing); put the "
                           f"python-version {tv_name} files (folder {sub}/) under {base}, or allow downloading")
    return folder


def _needed(sub: str) -> list[str]:
    if sub == "cifar-10-batches-py":
        return [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return ["train", "test", "meta"]


def load_cifar10(root: str | None = None, download: bool = False) -> ArrayDataset:
    folder = _folder(root, "cifar-10-batches-py", "data_batch_1", "CIFAR10", download)
    images, labels = [], []
    for name in _needed("cifar-10-batches-py"):
        batch = read_pickle(folder / name)
        images.append(_images(batch, folder / name))
        labels.append(np.asarray(_field(batch, "labels", folder / name), dtype=np.int64))
    names = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        names = _texts(read_pickle(folder / "batches.meta").get("label_names", names))
    return ArrayDataset("cifar10", np.concatenate(images), np.concatenate(labels), names)


def _load_cifar100(name: str, kind: str, root: str | None, download: bool) -> ArrayDataset:
    folder = _folder(root, "cifar-100-python", "train", "CIFAR100", download)
    images, labels = [], []
    for split in ("train", "test"):
        batch = read_pickle(folder / split)
        images.append(_images(batch, folder / split))
        labels.append(np.asarray(_field(batch, f"{kind}_labels", folder / split), dtype=np.int64))
    names = _texts(_field(read_pickle(folder / "meta"), f"{kind}_label_names", folder / "meta"))
    return ArrayDataset(name, np.concatenate(images), np.concatenate(labels), names)


def load_cifar100_20(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load_cifar100("cifar100-20", "coarse", root, download)


def load_cifar100(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load_cifar100("cifar100", "fine", root, download)
