"""Dataset registry: every dataset is looked up by name; adding one is one entry in DATASETS
(plus its loader function).

    ds = load_dataset("digits", limit=500, seed=0)

The table is read without importing any loader (the command line's choices and help come
from it); a loader's module is imported when that dataset is loaded.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..errors import DatasetError

DEFAULT_ROOT = "./data"     # where named datasets' files are looked for without --data-root


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: str | Callable      # "module:function" in this package, or a function; (root, download) -> ImageDataset
    description: str
    default_backbone: str
    needs_root: bool = False            # True: there is no default location
    train_defaults: tuple = ()          # (field, value) pairs: the dataset's measured recipe over TrainConfig's
    image_size: int | None = None       # input side for pretrained backbones (None: the backbone's own)
    scratch_neighbours: str = "pixels"  # where a scratch encoder's neighbours are mined: pixels or a backbone
    own_data: str | None = None         # "folder" or "archive": the user's own images, chosen as such in the app

    def load(self, root: str | None, download: bool):
        if callable(self.loader):
            return self.loader(root=root, download=download)
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)(root=root, download=download)


def _entry(name: str, loader: str, description: str, default_backbone: str = "mobilenet_v2",
           train_defaults: dict | None = None, **kwargs) -> DatasetEntry:
    return DatasetEntry(name, loader, description, default_backbone,
                        train_defaults=tuple(sorted((train_defaults or {}).items())), **kwargs)


_IMAGENET = "{n} classes of a local ImageNet train folder ({source}), read lazily"

DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    # The scratch MLP trains on the pixels; its neighbours come from the bundled MobileNetV2's
    # block-13 grid at 96 px, purer than the pixels' (docs/BENCHMARKS.md#digits-details).
    _entry("digits", "digits:load_digits", "scikit-learn digits, 1,797 8x8 grey images, 10 classes (bundled, "
           "no download)", "scratch-mlp", {"hidden_dim": 1024}, scratch_neighbours="mobilenet_v2_mid"),
    _entry("mnist", "mnist:load_mnist", "MNIST handwritten digits, 70,000 28x28 grey images, 10 classes",
           "scratch", image_size=96),
    # Head 1024 wide, 4 heads narrowed to the lowest-loss one after 10 epochs, block 13 of MobileNetV2
    # on a 3x3 grid (docs/BENCHMARKS.md#levers-that-helped).
    _entry("fashion-mnist", "mnist:load_fashion_mnist", "Fashion-MNIST clothing, 70,000 28x28 grey images, "
           "10 classes", "mobilenet_v2_mid", {"hidden_dim": 1024, "n_heads": 4}, image_size=96),
    _entry("cifar10", "cifar:load_cifar10", "CIFAR-10, 60,000 32x32 RGB images, 10 classes"),
    _entry("cifar100-20", "cifar:load_cifar100_20", "CIFAR-100 with its 20 superclasses as labels, 60,000 "
           "32x32 RGB images"),
    _entry("cifar100", "cifar:load_cifar100", "CIFAR-100, 60,000 32x32 RGB images, 100 classes"),
    _entry("stl10", "stl10:load_stl10", "STL-10 labelled train+test, 13,000 96x96 RGB images, 10 classes"),
    _entry("stl10-unlabeled", "stl10:load_stl10_unlabeled", "STL-10 train+test+unlabelled, 113,000 96x96 RGB "
           "images, no labels"),
    *(_entry(f"imagenet{n}", f"imagenet:load_imagenet{n}", f"ImageNet-{n}: " + _IMAGENET.format(n=n, source=src),
             needs_root=True) for n, src in ((10, "DAC"), (50, "SCAN"), (100, "SCAN"), (200, "SCAN"))),
    _entry("folder", "folder:load_folder", "your own image folder: class subfolders give labels, a flat folder "
           "has none", needs_root=True, own_data="folder"),
    _entry("zip", "folder:load_zip", "a zip archive of images (extracted safely to a cache, then read as a "
           "folder)", needs_root=True, own_data="archive"),
)}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add a dataset (a plug-in, a test's fixture); its name must be new."""
    if entry.name in DATASETS:
        raise ValueError(f"dataset {entry.name!r} is registered twice")
    DATASETS[entry.name] = entry
    return entry


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}",
                           setting="dataset")
    return DATASETS[name]


def load_dataset(name: str, root: str | None = None, limit: int | None = None, seed: int = 0,
                 download: bool = False):
    """Load a registered dataset; `limit` takes a seeded, class-balanced subset."""
    from .base import ArrayDataset, IndexedSubset, balanced_subset

    entry = get_entry(name)
    if entry.needs_root and not root:
        raise DatasetError(f"dataset {name!r} needs a data root pointing at its files", setting="data_root")
    dataset = entry.load(root, download)
    if len(dataset) == 0:
        raise DatasetError(f"dataset {name!r} has no images" + (f" under {root}" if root else ""),
                           setting="data_root")
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"the image limit must be a positive number of images, got {limit}",
                               setting="limit")
        if limit < len(dataset):
            indices = balanced_subset(dataset.labels, len(dataset), limit, seed)
            dataset = dataset.subset(indices) if isinstance(dataset, ArrayDataset) else IndexedSubset(dataset, indices)
    return dataset


__all__ = ["DatasetEntry", "DatasetError", "DATASETS", "DEFAULT_ROOT", "register", "load_dataset",
           "dataset_names", "get_entry"]
