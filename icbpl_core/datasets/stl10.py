"""STL-10 (96x96 RGB, 10 classes) from the binary release in `<root>/stl10_binary/`.

`train_X.bin`, `test_X.bin`, `unlabeled_X.bin`: uint8 N x 3 x 96 x 96, each plane stored
column-major (so: reshape (-1, 3, 96, 96), transpose (0, 3, 2, 1)). `train_y.bin`,
`test_y.bin`: one uint8 label 1..10 per image. `class_names.txt`: one name per line.
`stl10` is the 13,000 labelled images; `stl10-unlabeled` adds the 100,000 unlabelled
ones (labels None). Root defaults to ./data; a root that is stl10_binary/ itself works too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import DEFAULT_ROOT, DatasetError
from .base import ArrayDataset

SIDE, PIXELS = 96, 3 * 96 * 96
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _folder(root: str | None, needed: list[str], download: bool) -> Path:
    base = Path(root or DEFAULT_ROOT)
    folder = base if (base / "train_X.bin").is_file() else base / "stl10_binary"
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing and download:
        import torchvision.datasets

        try:
            torchvision.datasets.STL10(str(base), split="train", download=True)
        except Exception as exc:  # noqa: BLE001 - network and archive errors alike
            raise DatasetError(f"could not download STL10 into {base}: {exc}") from exc
        folder = base / "stl10_binary"
        missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"missing {folder / missing[0]} ({len(missing)} files missing); put the "
                           f"STL-10 binary files (folder stl10_binary/) under {base}, or allow downloading")
    return folder


def _read_images(paths: list[Path], chunk: int = 4096) -> np.ndarray:
    """Images of several X files into one (N, 96, 96, 3) array, converted chunk by chunk."""
    sizes = [p.stat().st_size for p in paths]
    for path, size in zip(paths, sizes):
        if size % PIXELS:
            raise DatasetError(f"{path} is not a whole number of 3x96x96 images ({size} bytes)")
    out = np.empty((sum(sizes) // PIXELS, SIDE, SIDE, 3), dtype=np.uint8)
    start = 0
    for path, size in zip(paths, sizes):
        if size == 0:
            continue
        raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, SIDE, SIDE)
        for i in range(0, len(raw), chunk):
            block = raw[i:i + chunk]
            out[start + i:start + i + len(block)] = block.transpose(0, 3, 2, 1)
        start += len(raw)
        del raw
    return out


def _read_labels(path: Path, n_images: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n_images or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"{path}: expected {n_images} labels in 1..10")
    return labels


def _class_names(folder: Path) -> list[str]:
    path = folder / "class_names.txt"
    if not path.is_file():
        return list(STL10_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names if len(names) == 10 else list(STL10_CLASSES)


def _load(name: str, root: str | None, download: bool, unlabeled: bool) -> ArrayDataset:
    needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    folder = _folder(root, needed + (["unlabeled_X.bin"] if unlabeled else []), download)
    x_files = [folder / "train_X.bin", folder / "test_X.bin"]
    images = _read_images(x_files + ([folder / "unlabeled_X.bin"] if unlabeled else []))
    n_train = (folder / "train_X.bin").stat().st_size // PIXELS
    n_test = (folder / "test_X.bin").stat().st_size // PIXELS
    labels = np.concatenate([_read_labels(folder / "train_y.bin", n_train),
                             _read_labels(folder / "test_y.bin", n_test)])
    return ArrayDataset(name, images, None if unlabeled else labels, _class_names(folder))


def load_stl10(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load("stl10", root, download, unlabeled=False)


def load_stl10_unlabeled(root: str | None = None, download: bool = False) -> ArrayDataset:
    return _load("stl10-unlabeled", root, download, unlabeled=True)
