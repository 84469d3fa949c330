"""Guidance from a person's corrections: the images whose cluster a person decided.

targets[i] is the PEDCC point (0..K-1) image i belongs to by a person's decision, or -1 (not
decided). Everything else is ICBPL; the decided images steer it in one or both of two ways:

  anchor     L_guide = mean over the decided images of a batch of (1 - z . c_target): pulls
             each onto its own cluster's PEDCC point (L_cos with the point given, not the nearest)
  must-link  a decided image's neighbours are the other decided images of its cluster, so the
             kNN loss pulls them together (and no longer toward a wrong cluster's images)

Which one, and its weight, were chosen by measurement
(docs/BENCHMARKS.md#retraining-from-corrections).
"""
from __future__ import annotations

import numpy as np
import torch

UNDECIDED = -1


def anchor_loss(z: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L_guide = mean over rows with a target of (1 - z . c_target); 0 when the batch has none."""
    decided = targets >= 0
    if not bool(decided.any()):
        return z.new_zeros(())
    return (1.0 - (z[decided] * centroids[targets[decided]]).sum(dim=1)).mean()


def must_link(neighbours: np.ndarray, targets: np.ndarray, seed: int) -> np.ndarray:
    """`neighbours` (N, k) with each decided image's row drawn (seeded) from the other decided
    images of its cluster; rows of undecided images, and of a cluster's only decided image, stay."""
    out = np.array(neighbours, dtype=np.int64, copy=True)
    rng = np.random.default_rng(seed)
    for target in np.unique(targets[targets >= 0]):
        members = np.flatnonzero(targets == target)
        if len(members) < 2:
            continue
        for i in members:
            others = members[members != i]
            out[i] = rng.choice(others, size=out.shape[1], replace=len(others) < out.shape[1])
    return out
