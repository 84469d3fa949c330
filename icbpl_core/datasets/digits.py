"""scikit-learn's digits: 1,797 8x8 grey images of 10 classes, shipped with scikit-learn."""
from __future__ import annotations

import numpy as np

from . import register
from .base import ArrayDataset


# The scratch MLP trains on the pixels; its neighbours come from the bundled MobileNetV2's block-13
# grid at 96 px: kNN20 purity 0.956 against 0.932 in the pixels, ACC 0.950 / 0.958 / 0.947 over
# seeds 0-2 against 0.938 / 0.947 / 0.785 (docs/BENCHMARKS.md).
@register("digits", "scikit-learn digits, 1,797 8x8 grey images, 10 classes (bundled, no download)",
          default_backbone="scratch-mlp", train_defaults={"hidden_dim": 1024},
          scratch_neighbours="mobilenet_v2_mid")
def load_digits(root: str | None = None, download: bool = False) -> ArrayDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the full uint8 range.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return ArrayDataset("digits", images, bunch.target.astype(np.int64), [str(d) for d in range(10)])
