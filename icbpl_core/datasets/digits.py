"""scikit-learn's digits: 1,797 8x8 grey images of 10 classes, shipped with scikit-learn."""
from __future__ import annotations

import numpy as np

from .base import ArrayDataset


def load_digits(root: str | None = None, download: bool = False) -> ArrayDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; scale to the full uint8 range.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return ArrayDataset("digits", images, bunch.target.astype(np.int64), [str(d) for d in range(10)])
