"""Exact cosine top-k neighbours, computed in row blocks so memory stays bounded.

For N = 70,000 a full N x N similarity matrix would take 19.6 GB in float32; a block
of B rows takes B x N (B = 2,048: 573 MB), and only the running top-k is kept.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch


def cosine_topk(
    x: np.ndarray | torch.Tensor,
    k: int,
    block_size: int = 2048,
    exclude_self: bool = True,
    queries: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosines of the k most similar rows of x for each query row.

    queries defaults to x itself; then each row's own index is excluded when
    exclude_self is set. Returns (indices int64 (Q, k), similarities float32 (Q, k)),
    sorted by decreasing similarity.
    """
    base = _unit_rows(x)
    same = queries is None
    query = base if same else _unit_rows(queries)
    n = base.shape[0]
    drop_self = same and exclude_self
    available = n - 1 if drop_self else n
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available} for {n} points, got {k}")
    out_idx = np.empty((query.shape[0], k), dtype=np.int64)
    out_sim = np.empty((query.shape[0], k), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, query.shape[0], block_size):
            stop = min(start + block_size, query.shape[0])
            sim = query[start:stop] @ base.T
            if drop_self:
                rows = torch.arange(stop - start)
                sim[rows, rows + start] = -float("inf")
            values, indices = sim.topk(k, dim=1)
            out_idx[start:stop] = indices.numpy()
            out_sim[start:stop] = values.numpy()
    return out_idx, out_sim


def _unit_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():     # read-only memory maps of the feature cache: only ever read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D array of feature rows, got shape {tuple(t.shape)}")
    return torch.nn.functional.normalize(t.reshape(t.shape[0], -1), dim=1)
