"""Dataset registry: every dataset is looked up by name; adding one is one `register` call.

    ds = load_dataset("digits", limit=500, seed=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import ArrayDataset, ImageDataset, IndexedSubset, balanced_subset


class DatasetError(ValueError):
    """A dataset that cannot be loaded; the message says what is missing and what to do."""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[..., ImageDataset]   # load(root: str | None, download: bool) -> ImageDataset
    description: str
    default_backbone: str
    needs_root: bool = False            # True: there is no default location
    train_defaults: tuple = ()          # (field, value) pairs overriding TrainConfig's defaults
    image_size: int | None = None       # input side for pretrained backbones (None: the backbone's own)
    scratch_neighbours: str = "pixels"  # where a scratch encoder's neighbours are mined: pixels or a backbone


DATASETS: dict[str, DatasetEntry] = {}


def register(name: str, description: str, default_backbone: str, needs_root: bool = False,
             train_defaults: dict | None = None, image_size: int | None = None,
             scratch_neighbours: str = "pixels"):
    """Decorator registering `load(root, download)` under `name`; `train_defaults` is the
    dataset's measured recipe (TrainConfig fields), applied under any explicit option;
    `image_size` is the input side a pretrained backbone gets by default (small images
    upsampled to 224 px cost 5x the compute of 96 px for no better features); `scratch_neighbours`
    is where an encoder trained from scratch finds its neighbours ("pixels", or a pretrained
    backbone whose features are extracted once for that)."""
    def wrap(load: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetEntry(name, load, description, default_backbone, needs_root,
                                      tuple(sorted((train_defaults or {}).items())), image_size,
                                      scratch_neighbours)
        return load
    return wrap


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    return DATASETS[name]


def load_dataset(name: str, root: str | None = None, limit: int | None = None, seed: int = 0,
                 download: bool = False) -> ImageDataset:
    """Load a registered dataset; `limit` takes a seeded, class-balanced subset."""
    entry = get_entry(name)
    if entry.needs_root and not root:
        raise DatasetError(f"dataset {name!r} needs --data-root pointing at its files")
    dataset = entry.load(root=root, download=download)
    if len(dataset) == 0:
        raise DatasetError(f"dataset {name!r} has no images" + (f" under {root}" if root else ""))
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be a positive number of images, got {limit}")
        if limit < len(dataset):
            indices = balanced_subset(dataset.labels, len(dataset), limit, seed)
            dataset = _subset(dataset, indices)
    return dataset


def _subset(dataset: ImageDataset, indices) -> ImageDataset:
    if isinstance(dataset, ArrayDataset):
        return dataset.subset(indices)
    return IndexedSubset(dataset, indices)


# Each module registers its datasets on import.
from . import cifar, digits, folder, imagenet, mnist, stl10  # noqa: E402,F401

__all__ = ["ArrayDataset", "ImageDataset", "DatasetError", "DATASETS", "register", "load_dataset",
           "dataset_names", "get_entry", "balanced_subset"]
