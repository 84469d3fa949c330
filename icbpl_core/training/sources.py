"""What the trainer feeds the model: anchors and augmented views of a batch of indices.

* FeatureSource: head-only training on cached backbone features; a view is the cached
  feature of one of a few augmented copies of the image, drawn at random.
* ImageSource: training on images (fine-tuning, or a scratch encoder); a view is a
  fresh augmentation.

Both give `fixed_view(v)`: inputs of the same augmented copy v of every image each time
it is called, for predicting from the mean latent over an image and its views.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..backbones.base import Backbone
from ..method.augment import Augment


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

    def anchors(self, idx: torch.Tensor) -> torch.Tensor:
        return self.features[idx]

    def augmented(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.views is not None:
            which = torch.randint(len(self.views), (len(idx),), generator=g)
            out = torch.empty(len(idx), self.features.shape[1])
            for v, view in enumerate(self.views):
                rows = (which == v).nonzero().squeeze(1)
                out[rows] = view[idx[rows]]
            return out
        x = self.features[idx]
        return x + torch.randn(x.shape, generator=g) * self.noise_scale

    def fixed_view(self, v: int):
        return lambda idx: self.views[v][idx]


def _read_only_tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing memory with `array` (a read-only memory map of the feature
    cache stays on disk, not copied); it is only ever read, so torch's warning about
    non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class ImageSource:
    def __init__(self, images: np.ndarray, backbone: Backbone, augment: Augment, size: int | None = None) -> None:
        """images uint8 (N, H, W, C), kept in memory as uint8 and converted per batch."""
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.backbone = backbone
        self.augment = augment
        self.size = size

    def __len__(self) -> int:
        return self.images.shape[0]

    def _floats(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float().div_(255.0)

    def anchors(self, idx: torch.Tensor) -> torch.Tensor:
        return self.backbone.prepare(self._floats(idx), self.size)

    def augmented(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return self.backbone.prepare(self.augment(self._floats(idx), g), self.size)

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
