"""The benchmark's folders of images, written from what ships offline (bench_folders.py uses them).

Every folder is a user's folder as the tool sees it: class subfolders (labels) or flat (none).
The true class of every image, flat folders included, is kept beside the folder in
<name>.labels.csv (file name relative to the folder, label) so a run can be scored without the
tool ever reading it. Fashion-MNIST subsets come from its 60,000 training images (the test
images make their own folder), drawn with a fixed seed.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from icbpl_core.datasets import load_dataset

FASHION_TRAIN = 60_000
PER_CLASS = 300     # images per class: every folder stays under a few thousand images (minutes a run here)


def _fashion():
    return load_dataset("fashion-mnist")


def _subset(dataset, classes: int, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(10, size=classes, replace=False))
    train = np.arange(FASHION_TRAIN)
    return np.sort(np.concatenate([rng.permutation(train[dataset.labels[train] == c])[:per_class] for c in chosen]))


def _grey(image: Image.Image) -> Image.Image:
    return image.convert("L")


def _resized(side: int) -> Callable:
    return lambda image: image.convert("L").resize((side, side), Image.BICUBIC)


def _colour_jittered(seed: int) -> Callable:
    """Grey -> RGB with a random tint, brightness and background per image (a colour shift the
    classes do not explain)."""
    rng = np.random.default_rng(seed)

    def jitter(image: Image.Image) -> Image.Image:
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        tint = rng.uniform(0.3, 1.0, size=3)
        background = rng.uniform(0.0, 0.5, size=3)
        rgb = background + grey[..., None] * (tint - background) * rng.uniform(0.7, 1.3)
        return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return jitter


def _mixed_sizes(seed: int) -> Callable:
    rng = np.random.default_rng(seed)
    return lambda image: image.convert("L").resize((int(rng.integers(20, 72)),) * 2, Image.BICUBIC)


def _write(folder: Path, dataset, indices, transform: Callable, labelled: bool) -> Path:
    rows = []
    for i in indices:
        name = dataset.class_names[dataset.labels[i]].replace("/", "-")
        relative = f"{name}/{i:05d}.png" if labelled else f"{i:05d}.png"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        transform(dataset.image(int(i))).save(path)
        rows.append((relative, int(dataset.labels[i])))
    with open(folder.parent / f"{folder.name}.labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "label"), *rows])
    return folder


# name -> (description, builder(out folder) -> folder)
FOLDERS: dict[str, tuple[str, Callable[[Path], Path]]] = {}


def folder(name: str, description: str):
    def register(build):
        FOLDERS[name] = (description, build)
        return build
    return register


@folder("digits-png", "scikit-learn digits, 1,797 8 x 8 grey PNGs, 10 classes")
def _digits(folder: Path) -> Path:
    return _write(folder, load_dataset("digits"), range(1797), _grey, True)


@folder("fashion-test-3000", "Fashion-MNIST test set, 300 images of each class (seed 0), 28 x 28 grey PNGs")
def _fashion_test(folder: Path) -> Path:
    dataset = _fashion()
    rng = np.random.default_rng(0)
    test = np.arange(FASHION_TRAIN, len(dataset))
    picked = np.sort(np.concatenate([rng.permutation(test[dataset.labels[test] == c])[:PER_CLASS] for c in range(10)]))
    return _write(folder, dataset, picked, _grey, True)


for _k, _seed in ((3, 3), (5, 5), (7, 7)):
    def _build(folder: Path, k=_k, seed=_seed) -> Path:
        dataset = _fashion()
        return _write(folder, dataset, _subset(dataset, k, PER_CLASS, seed), _grey, True)
    FOLDERS[f"fashion-{_k}-classes"] = (f"{_k} random Fashion-MNIST classes (seed {_seed}), 300 training images "
                                        "each, 28 px grey", _build)


@folder("fashion-5-classes-64px", "the 5-class folder's images at 64 x 64 (bicubic)")
def _bigger(folder: Path) -> Path:
    dataset = _fashion()
    return _write(folder, dataset, _subset(dataset, 5, PER_CLASS, 5), _resized(64), True)


@folder("fashion-5-classes-rgb", "the 5-class folder in colour-jittered RGB (random tint and background)")
def _rgb(folder: Path) -> Path:
    dataset = _fashion()
    return _write(folder, dataset, _subset(dataset, 5, PER_CLASS, 5), _colour_jittered(0), True)


@folder("fashion-5-classes-flat", "the 5-class folder flat: no class subfolders, so no labels for the tool")
def _flat(folder: Path) -> Path:
    dataset = _fashion()
    return _write(folder, dataset, _subset(dataset, 5, PER_CLASS, 5), _grey, False)


@folder("fashion-7-classes-mixed-sizes", "7 classes (seed 17) at random sizes of 20-71 px, 2,100 images")
def _mixed(folder: Path) -> Path:
    dataset = _fashion()
    return _write(folder, dataset, _subset(dataset, 7, PER_CLASS, 17), _mixed_sizes(0), True)


def build(name: str, root: Path) -> Path:
    """The folder `name` under `root`, written once (a finished folder has its labels file)."""
    folder = Path(root) / name
    if (Path(root) / f"{name}.labels.csv").is_file():
        return folder
    return FOLDERS[name][1](folder)


def true_labels(folder: Path) -> dict[str, int]:
    with open(folder.parent / f"{folder.name}.labels.csv", newline="") as handle:
        return {row["file"]: int(row["label"]) for row in csv.DictReader(handle)}


def n_classes(folder: Path) -> int:
    return len(set(true_labels(folder).values()))
