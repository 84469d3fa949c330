"""Seeded samples that keep every cluster: the latents UMAP is fitted on for a big run
(projection.py), and the points the latent page draws when a run has more than it can draw
smoothly (figures.py).

    positions = stratified_sample(clusters, size=100_000, floor=1_000, seed=0)

Every cluster first gets min(its size, floor) of its items, then the rest of `size` is shared
in proportion to what each cluster has left, so the sample has at most `size` items, the big
clusters keep their proportions and a small cluster is never left out.
"""
from __future__ import annotations

import os

import numpy as np


def stratified_sample(groups: np.ndarray, size: int, floor: int = 0, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded sample of at most `size` items of `groups` (one group id,
    a non-negative int, per item): all positions when there are no more than `size` items."""
    groups = np.asarray(groups, dtype=np.int64)
    n, size = len(groups), int(size)
    if n <= size:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(groups)
    present = np.flatnonzero(counts)
    floor = max(0, min(int(floor), size // max(1, len(present))))    # the floors alone never exceed size
    quota = np.minimum(counts, floor)
    left, room = counts - quota, size - int(quota.sum())
    quota += np.floor(room * left / max(1, int(left.sum()))).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = np.argsort(groups, kind="stable")
    ends = np.cumsum(counts)
    picks = [rng.choice(order[ends[g] - counts[g]:ends[g]], int(quota[g]), replace=False)
             for g in present if quota[g]]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Each row's most similar centroid (its ICBPL cluster), chunk rows at a time (`vectors` may
    be memory-mapped)."""
    centroids = np.asarray(centroids, dtype=np.float32)
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        block = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        out[start:start + len(block)] = (block @ centroids.T).argmax(axis=1)
    return out


# The latent page draws at most MAX_DRAWN points (docs/BENCHMARKS.md#a-million-points; the
# environment variable ICBPL_LATENT_MAX_POINTS sets another limit); a bigger run is drawn as a
# seeded sample, every cluster keeping at least DRAWN_FLOOR of its points.
DRAWN_FLOOR = 2_000
DRAWN_SEED = 0


def _limit(text: str | None, default: int = 100_000) -> int:
    """ICBPL_LATENT_MAX_POINTS as a number of points (at least 1,000; the default when unset or not a number)."""
    try:
        return max(1_000, int(text)) if text else default
    except ValueError:
        return default


MAX_DRAWN = _limit(os.environ.get("ICBPL_LATENT_MAX_POINTS"))


def drawn_rows(clusters: np.ndarray, max_points: int | None = None) -> np.ndarray:
    """Rows (of the run's assignments, sorted) the latent page draws: all of them up to max_points
    (default MAX_DRAWN)."""
    return stratified_sample(clusters, MAX_DRAWN if max_points is None else max_points, DRAWN_FLOOR, DRAWN_SEED)
