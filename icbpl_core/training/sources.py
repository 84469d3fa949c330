"""What the trainer feeds the model: anchors and augmented views of a batch of indices.

* FeatureSource: head-only training on cached backbone features; a view is the cached
  feature of one of a few augmented copies of the image, drawn at random.
* ImageSource: training on images (fine-tuning, or a scratch encoder); a view is a
  fresh augmentation.

Both give `fixed_view(v)`: inputs of the same augmented copy v of every image each time
it is called, for predicting from the mean latent over an image and its views.

`to(device)` moves what fits (DEVICE_SHARE of a GPU's memory) onto the training device once;
otherwise rows are gathered on the host and moved per batch. For images left on the host,
`feed(batches)` gathers each batch's rows in DataLoader worker processes into pinned memory,
ahead of the GPU; the augmentation then runs batched on the device. The random draws come
from CPU generators either way, so a run's numbers do not depend on where its data sits.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.utils.data

from ..backbones.base import Backbone
from ..method.augment import Augment

DEVICE_SHARE = 0.25      # data moved onto a GPU when it takes at most this share of its memory


def fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type == "cuda":
        return nbytes <= DEVICE_SHARE * torch.cuda.get_device_properties(device).total_memory
    return device.type == "mps" and nbytes <= 2 << 30


class FeatureSource:
    def __init__(self, features: np.ndarray, views=None, noise: float = 0.0) -> None:
        """features (N, D); views: V arrays (N, D), features of V augmented copies (a (V, N, D)
        array or a list of memory-mapped cache entries), or None.

        Without views, a view is the feature plus Gaussian noise of `noise` times each
        dimension's standard deviation (for plain feature matrices with no images).
        """
        self.features = _read_only_tensor(features)
        self.views = None if views is None else [_read_only_tensor(v) for v in views]
        self.noise_scale = noise * self.features.std(dim=0) if views is None else None

    def __len__(self) -> int:
        return self.features.shape[0]

    def to(self, device: torch.device) -> "FeatureSource":
        arrays = [self.features, *(self.views or [])]
        if device.type != "cpu" and fits_on(device, sum(a.numel() * 4 for a in arrays)):
            self.features = self.features.to(device)
            self.views = None if self.views is None else [v.to(device) for v in self.views]
            self.noise_scale = None if self.noise_scale is None else self.noise_scale.to(device)
        return self

    def feed(self, batches: Iterable[torch.Tensor]) -> Iterator[None]:
        return (None for _ in batches)

    def anchors(self, idx: torch.Tensor, rows=None) -> torch.Tensor:
        return self.features[idx.to(self.features.device)]

    def augmented(self, idx: torch.Tensor, g: torch.Generator, rows=None) -> torch.Tensor:
        idx = idx.to(self.features.device)
        if self.views is not None:      # a random view per row, chosen by masks (no data-dependent shapes:
            which = torch.randint(len(self.views), (len(idx),), generator=g).to(idx.device)   # no GPU sync)
            out = self.views[0][idx]
            for v in range(1, len(self.views)):
                out = torch.where((which == v)[:, None], self.views[v][idx], out)
            return out
        x = self.features[idx]
        return x + torch.randn(x.shape, generator=g).to(x.device) * self.noise_scale

    def fixed_view(self, v: int):
        return lambda idx: self.views[v][idx.to(self.views[v].device)]


def _read_only_tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing memory with `array` (a read-only memory map of the feature
    cache stays on disk, not copied); it is only ever read, so torch's warning about
    non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class ImageSource:
    def __init__(self, images: np.ndarray, backbone: Backbone, augment: Augment, size: int | None = None,
                 num_workers: int = 0) -> None:
        """images uint8 (N, H, W, C), kept in memory as uint8 and converted per batch;
        num_workers: DataLoader processes gathering batches when the images stay on the host."""
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.backbone = backbone
        self.augment = augment
        self.size = size
        self.num_workers = num_workers
        self.device = torch.device("cpu")
        self._loader = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> "ImageSource":
        self.device = device
        if device.type != "cpu" and fits_on(device, self.images.numel()):
            self.images = self.images.to(device)
        return self

    def feed(self, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor | None]:
        """The uint8 rows of each batch of indices, gathered ahead by DataLoader workers (None:
        the rows are gathered in line, from images already on the device or with no workers)."""
        batches = list(batches)
        if self.num_workers == 0 or self.images.device.type != "cpu":
            return (None for _ in batches)
        if self._loader is None:     # workers persist across epochs; each epoch sets its own order
            from torch.utils.data import DataLoader
            self._order = _Batches()
            self._loader = DataLoader(_Rows(self.images), batch_sampler=self._order, num_workers=self.num_workers,
                                      pin_memory=self.device.type == "cuda", persistent_workers=True,
                                      collate_fn=_as_is, prefetch_factor=4,
                                      multiprocessing_context="fork" if os.name == "posix" else None)
        self._order.batches = [b.tolist() for b in batches]
        return iter(self._loader)

    def _floats(self, idx: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if rows is None:
            rows = self.images[idx.to(self.images.device)]
        return rows.to(self.device, non_blocking=True).float().div_(255.0)

    def anchors(self, idx: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.prepare(self._floats(idx, rows), self.size)

    def augmented(self, idx: torch.Tensor, g: torch.Generator, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.prepare(self.augment(self._floats(idx, rows), g), self.size)

    def fixed_view(self, v: int):
        """Copy v of each image, drawn image by image from a generator seeded by (v, index): the
        same whatever the batches, so the prediction does not depend on the batch size."""
        def inputs(idx: torch.Tensor) -> torch.Tensor:
            floats = self._floats(idx)
            copies = [self.augment(floats[j:j + 1], torch.Generator().manual_seed(VIEW_SEED * (v + 1) + int(i)))
                      for j, i in enumerate(idx)]
            return self.backbone.prepare(torch.cat(copies), self.size)
        return inputs


VIEW_SEED = 1_000_003    # fixed views draw from their own seeds, apart from training's (seed, epoch)


class _Rows(torch.utils.data.Dataset):
    """Rows of a uint8 tensor by index (for DataLoader workers, which share it after fork)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:   # a whole batch in one indexing
        return self.images[indices]


def _as_is(batch: torch.Tensor) -> torch.Tensor:
    return batch


class _Batches:
    """The current epoch's batches of indices: a batch sampler whose order each epoch replaces."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
