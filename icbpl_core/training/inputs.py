"""What a run feeds its model: the images (held in memory, or streamed when they would not fit),
the backbone's input side, the augmentation, and the backbone's cached features of the images
and of their augmented views, plus the rows its neighbours are mined in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import params
from ..backbones import create_backbone
from ..datasets import get_entry
from ..datasets.base import ArrayDataset, ImageDataset, IndexedSubset, channels_of
from ..errors import ConfigError
from ..errors import CacheError
from ..features.cache import cache_key, cached_features, ids_digest, read_cached
from ..features.extract import extract, extract_dataset
from ..method.augment import Augment, get_augmentation
from . import distributed
from .distributed import SINGLE, World

SMALL_GREY_SIDE = 32     # grey images this small (MNIST-like) ...
SMALL_GREY_INPUT = 96    # ... go into a pretrained backbone at 96 px: as good as 128 px, 5.4x cheaper than 224
IN_MEMORY_BYTES = 2 << 30   # lazily read datasets above this (as uint8 arrays) stream in head mode
MIXED_SIZE_SIDE = 64     # images of mixed sizes for a backbone without an input size (scratch)


@dataclass
class Inputs:
    """The images as training sees them."""

    dataset: ImageDataset
    channels: int
    side: int | None            # the backbone's input side (None: the images' own)
    images: np.ndarray | None   # uint8 (N, H, W, C), or None when streamed from the dataset
    shape: list[int]            # (H, W, C) of one image as fed
    augment_name: str
    augment: Augment

    @property
    def streamed(self) -> bool:
        return self.images is None

    def without(self, unreadable: list[int]) -> "Inputs":
        """These inputs less the images that failed to decode (their placeholders would be
        clustered like any image)."""
        keep = kept(len(self.dataset), unreadable)
        images = None if self.images is None else self.images[keep]
        return Inputs(IndexedSubset(self.dataset, keep), self.channels, self.side, images, self.shape,
                      self.augment_name, self.augment)

    @classmethod
    def prepare(cls, dataset: ImageDataset, backbone, image_size: int | None, mode: str,
                augment: str) -> "Inputs":
        first = dataset.image(0)
        channels = channels_of(first)
        side = image_size or input_side(backbone, first, channels)
        # Head-only training needs the images only to extract features: a lazily read dataset that
        # would not fit comfortably in memory (ImageNet subsets at 224 px) is streamed instead.
        streamed = (mode == "head" and not isinstance(dataset, ArrayDataset)
                    and len(dataset) * (side or max(first.size)) ** 2 * channels > IN_MEMORY_BYTES)
        images = None if streamed else image_array(dataset, side, first.size)
        shape = list(images.shape[1:]) if images is not None else [side, side, channels]
        name, policy = get_augmentation(augment, channels, shape[0])
        return cls(dataset, channels, side, images, shape, name, policy)


def kept(n: int, dropped: list[int]) -> np.ndarray:
    """Indices 0..n-1 without `dropped`."""
    keep = np.ones(n, dtype=bool)
    keep[list(dropped)] = False
    return np.flatnonzero(keep)


def input_side(backbone, first_image, channels: int) -> int | None:
    """The backbone input side when neither the user nor the dataset's registry entry chose one.

    Small grey images (a folder of MNIST-like PNGs) get the Fashion-MNIST recipe's 96 px rather
    than the backbone's 224 (docs/BENCHMARKS.md#feature-study); everything else the backbone's own.
    """
    native = backbone.input_size
    if (backbone.pretrained and native is not None and channels == 1
            and max(first_image.size) <= SMALL_GREY_SIDE):
        return min(native, SMALL_GREY_INPUT)
    return native


def image_array(dataset: ImageDataset, side: int | None, first_size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, C): at the images' own size when they share one and it is no larger than
    `side` (the backbone resizes each batch: 28 px Fashion-MNIST stays 55 MB, not 645 MB at
    96 px), else every image resized to side x side (mixed sizes, big photos)."""
    if side is None or max(first_size) <= side:
        try:
            return dataset.to_array()
        except ValueError:      # mixed sizes
            pass
    return dataset.to_array(side or MIXED_SIZE_SIDE)


class Features:
    """The backbone's features of the images (pass 0) and of their augmented copies (pass v),
    each pass cached on its own, so an interrupted extraction keeps the passes it finished.

    Copies are data, not training randomness: copy v is drawn with seed v whatever the run's
    seed, so runs over seeds share one extraction (the cache key has no seed). Streamed images
    are first decoded by pass 0: those that failed then (`dropped`) are left out of every pass.

    In W processes each extracts its contiguous share of the images on its own device; rank 0
    merges the shares into the cache entry the others then read. An augmented pass drawn in
    shares differs from one drawn whole (each share starts its own generator), so its key
    records the number of shares.
    """

    def __init__(self, spec, inputs: Inputs, backbone, progress: Callable[[str], Callable], cache_dir=None,
                 device=None, world: World = SINGLE) -> None:
        self.spec, self.inputs, self.backbone = spec, inputs, backbone
        self.progress, self.cache_dir = progress, cache_dir
        self.device, self.world = device or torch.device("cpu"), world
        dataset = inputs.dataset
        # The resolved value of every parameter that params.py marks as part of the cache key.
        self.values = {"dataset": spec.dataset, "data_root": spec.data_root, "backbone": spec.backbone,
                       "weights": backbone.weights_id, "image_size": inputs.side,
                       "augment": inputs.augment_name, "precision": spec.precision}
        self.ids = ids_digest([dataset.item_id(i) for i in range(len(dataset))])
        self.dropped: list[int] = []

    def key_parts(self, **resolved) -> dict:
        values = {**self.values, **resolved}
        return {**{p.cache_key: values[p.name] for p in params.PARAMS if p.cache_key}, "ids": self.ids}

    def of(self, net, side: int | None, parts: dict, view: int, what: str) -> np.ndarray:
        """`net`'s features of the clean images (view 0) or of augmented copy `view`."""
        world = self.world
        shares = {"shares": world.size} if view and world.distributed else {}
        key = cache_key(**parts, view=view, streamed=self.inputs.streamed, **shares)
        if not world.distributed:
            return cached_features(key, lambda: {"features": self._extract(net, side, view, what)},
                                   self.cache_dir)["features"]
        if not distributed.broadcast(read_cached(key, self.cache_dir) is not None if world.main else None, world):
            n = len(self.inputs.dataset)
            whole = distributed.gather_rows(self._extract(net, side, view, what, distributed.shard(n, world)),
                                            n, world, self.device)
            if world.main:
                cached_features(key, lambda: {"features": whole}, self.cache_dir)
        distributed.barrier(world)
        cached = read_cached(key, self.cache_dir)
        if cached is None:
            raise CacheError("the processes could not share the extracted features through the feature cache "
                             "(full or not shared between them); choose a cache folder every process can read "
                             "with --cache-dir", setting="cache_dir")
        return cached["features"]

    def _extract(self, net, side: int | None, view: int, what: str, share: tuple[int, int] | None = None):
        inputs, world = self.inputs, self.world
        copy = inputs.augment if view else None
        report = self.progress(what) if world.main else None
        if share is not None and report is not None:     # rank 0's share stands for the whole
            report = _scaled(report, world.size, len(inputs.dataset))
        if report is not None:      # the pass starts (its first batch, or a backbone warming up, can take a while)
            report(0, len(inputs.dataset))
        net = net.to(self.device)
        if inputs.streamed:
            dataset = inputs.dataset if share is None else IndexedSubset(inputs.dataset, np.arange(*share))
            rows = extract_dataset(net, dataset, side, copy, seed=view, progress=report,
                                   precision=self.spec.precision)
            if view == 0:
                self._unreadable = [i + (share[0] if share else 0) for i in dataset.unreadable()]
            return rows
        images = inputs.images if share is None else inputs.images[share[0]:share[1]]
        return extract(net, images, copy, seed=view, size=side, progress=report, precision=self.spec.precision)

    def backbone_pass(self, view: int) -> np.ndarray:
        what = "features" if view == 0 else f"view {view}/{self.spec.n_views}"
        self._unreadable = None
        rows = self.of(self.backbone, self.inputs.side, self.key_parts(), view, what)
        if view == 0 and self.inputs.streamed:
            # Decoded by this pass: the images that failed (every process's share of them).
            self.dropped = sorted(distributed.gather_objects(self._unreadable, self.world)) \
                if self.world.distributed else self.inputs.dataset.unreadable()
        return self._kept(rows)

    def _kept(self, rows: np.ndarray) -> np.ndarray:
        return rows[kept(len(rows), self.dropped)] if self.dropped else rows

    def neighbour_rows(self) -> np.ndarray:
        """The rows the neighbours are mined in (cosine), by spec.neighbours_from."""
        source = self.spec.neighbours_from
        if source == "backbone":
            return np.asarray(self.backbone_pass(0))
        return self._kept(self._neighbour_rows(source))

    def _neighbour_rows(self, source: str) -> np.ndarray:
        inputs = self.inputs
        if source == "pixels":
            if inputs.streamed:
                raise ConfigError("these images are streamed, not held in memory, so neighbours cannot be "
                                  "mined in their pixels; mine them in the backbone's features instead",
                                  setting="neighbours_from")
            pixels = inputs.images.reshape(len(inputs.images), -1).astype(np.float32)
            return pixels - pixels.mean(axis=0)
        other = create_backbone(source, True, in_channels=inputs.channels)
        first = inputs.dataset.image(0)
        side = get_entry(self.spec.dataset).image_size or input_side(other, first, inputs.channels)
        parts = self.key_parts(backbone=source, weights=other.weights_id, image_size=side)
        return np.asarray(self.of(other, side, parts, 0, "neighbour features"))


def _scaled(report: Callable[[int, int], None], shares: int, n: int) -> Callable[[int, int], None]:
    return lambda done, total: report(min(n, done * shares), n)


def check_finite(array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{len(rows)} feature rows contain NaN or inf (first: {rows[:5].tolist()}); "
                         "check the input images or the backbone weights")
