"""ImageNet subsets for clustering benchmarks, read lazily from a local ImageNet train folder.

Root is ImageNet's train folder, one subfolder of JPEGs per wnid (n01440764/...). The class
lists live in imagenet_subsets/*.txt ("wnid name, synonyms" per line): ImageNet-10 of DAC
(Chang et al. 2017) and ImageNet-50/100/200 of SCAN (Van Gansbeke et al. 2020). Images are
decoded on demand (RGB); files are listed, not checked, when the dataset is opened.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import DatasetError
from .images import FileDataset, is_hidden, is_image_name

SUBSETS_DIR = Path(__file__).with_name("imagenet_subsets")


def read_subset(n_classes: int) -> list[tuple[str, str]]:
    """(wnid, short class name) for the ImageNet-<n_classes> list."""
    rows = []
    for line in (SUBSETS_DIR / f"imagenet_{n_classes}.txt").read_text().splitlines():
        if line.strip():
            wnid, _, names = line.strip().partition(" ")
            rows.append((wnid, names.split(",")[0].strip() or wnid))
    return rows


def load_subset(n_classes: int, root: str | None) -> FileDataset:
    name = f"imagenet{n_classes}"
    if not root or not Path(root).is_dir():
        raise DatasetError(f"{name} needs the ImageNet train folder (one subfolder per wnid) as its root"
                           + (f"; {root} is not a folder" if root else ""))
    classes = read_subset(n_classes)
    missing = [wnid for wnid, _ in classes if not (Path(root) / wnid).is_dir()]
    if missing:
        raise DatasetError(f"{name}: {len(missing)} of {len(classes)} class folders missing under {root} "
                           f"(first: {', '.join(missing[:5])}); root must be ImageNet's train folder")
    paths, labels = [], []
    for label, (wnid, _) in enumerate(classes):
        files = sorted(e.name for e in os.scandir(Path(root) / wnid)
                       if e.is_file() and is_image_name(e.name) and not is_hidden(e.name))
        paths += [f"{wnid}/{f}" for f in files]
        labels += [label] * len(files)
    return FileDataset(name, root, paths, np.asarray(labels, dtype=np.int64),
                       [short for _, short in classes], mode="RGB")


def load_imagenet10(root: str | None = None, download: bool = False) -> FileDataset:
    """ImageNet cannot be downloaded automatically; `download` is ignored (as by the others)."""
    return load_subset(10, root)


def load_imagenet50(root: str | None = None, download: bool = False) -> FileDataset:
    return load_subset(50, root)


def load_imagenet100(root: str | None = None, download: bool = False) -> FileDataset:
    return load_subset(100, root)


def load_imagenet200(root: str | None = None, download: bool = False) -> FileDataset:
    return load_subset(200, root)
