"""Cosine k nearest neighbours at any scale: exact matrix products, or a faiss index.

nearest_neighbours() has cosine_topk's semantics (neighbours.py: rows L2-normalised, each
row's own index excluded, sorted by decreasing similarity, int64 indices, float32 cosines)
and picks how to compute them:

- "exact": cosine_topk, N x N dot products in row blocks; on a torch device other than the
  CPU the same blocked search runs there.
- "faiss": faiss's exact IndexFlatIP (its BLAS search with a running top-k) below APPROX_FROM
  points; from there an inverted-file index (IVF-Flat), since an exact search of a million
  points is 10^12 dot products (hours on 2 cores). IVF-Flat (4 sqrt(N) lists) rather than
  HNSW: for the whole k-NN graph of a million clustered vectors at recall@20 0.99, HNSW took
  3.4 times as long in the same memory (docs/BENCHMARKS.md#nearest-neighbours-at-scale).
  The IVF probe count is calibrated at run time, raised until recall@k against an exact
  search of CALIBRATION_QUERIES sampled rows reaches RECALL_TARGET, so the recall holds for
  whatever features come in, not only for the data it was tuned on.
- "auto": faiss when it is installed and N >= AUTO_FAISS_FROM (the measured crossover of
  torch exact and faiss flat), else exact.

With faiss each row is searched for k + 1 neighbours and its own index dropped (or the last
one, when k + 1 duplicates of it crowd it out). faiss is imported only when used.
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch

from .neighbours import _unit_rows, cosine_topk

BACKENDS = ("auto", "exact", "faiss")
AUTO_FAISS_FROM = 20_000        # faiss flat as fast as torch exact or faster from here, in less memory
APPROX_FROM = 1_000_000         # from here faiss searches an IVF-Flat index, not exhaustively
RECALL_TARGET = 0.99            # recall@k the IVF probe count is calibrated to
CALIBRATION_QUERIES = 1_000     # rows whose exact neighbours calibrate it
LISTS_PER_SQRT_N = 4            # IVF lists: 4 sqrt(N), 4,000 for a million points
TRAIN_PER_LIST = 64             # k-means training rows per list (faiss asks for at least 39)
SEARCH_CHUNK = 65_536           # queries per faiss search call (bounds its temporary buffers)
DEVICE_BLOCK_ELEMENTS = 2**28   # similarity entries per block on a torch device (1 GiB float32)


class FaissMissingError(ImportError):
    """The faiss backend was asked for and faiss is not installed."""


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def choose_backend(n: int, backend: str = "auto") -> str:
    """What backend computes the neighbours of n points: "exact" or "faiss"."""
    if backend not in BACKENDS:
        raise ValueError(f"knn backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return "faiss" if n >= AUTO_FAISS_FROM and faiss_available() else "exact"


def nearest_neighbours(
    x: np.ndarray | torch.Tensor,
    k: int,
    backend: str = "auto",
    device: str | torch.device | None = None,
    *,
    approx_from: int = APPROX_FROM,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (int64 (N, k)) and cosines (float32 (N, k)) of each row's k nearest other rows.

    device: where the search runs (default: x's own device, the CPU for numpy arrays).
    approx_from: the number of points from which faiss searches approximately.
    """
    resolved = choose_backend(len(x), backend)
    if device is None:
        device = x.device if isinstance(x, torch.Tensor) else "cpu"
    device = torch.device(device)
    if resolved == "exact" and device.type == "cpu":
        return cosine_topk(x.detach().cpu() if isinstance(x, torch.Tensor) else x, k)
    unit = _unit_rows(x)
    n = unit.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and {n - 1} for {n} points, got {k}")
    if resolved == "exact":
        return _exact_blocked(unit, k, device)
    return _faiss_search(unit, k, device, approx_from)


def _exact_blocked(unit: torch.Tensor, k: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """cosine_topk on a torch device, with blocks sized to keep the B x N similarities at 1 GiB."""
    with torch.no_grad():
        base = unit.to(device)
        n = base.shape[0]
        block = max(1, min(n, DEVICE_BLOCK_ELEMENTS // n))
        out_idx = np.empty((n, k), dtype=np.int64)
        out_sim = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, block):
            stop = min(start + block, n)
            sim = base[start:stop] @ base.T
            rows = torch.arange(stop - start, device=device)
            sim[rows, rows + start] = -float("inf")
            values, indices = sim.topk(k, dim=1)
            out_idx[start:stop] = indices.cpu().numpy()
            out_sim[start:stop] = values.cpu().numpy()
    return out_idx, out_sim


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise FaissMissingError("the faiss knn backend needs faiss: pip install faiss-cpu") from err
    return faiss


def _faiss_search(unit: torch.Tensor, k: int, device: torch.device, approx_from: int):
    faiss = _import_faiss()
    xb = np.ascontiguousarray(unit.detach().cpu().numpy(), dtype=np.float32)
    n, d = xb.shape
    gpu = device.type == "cuda" and hasattr(faiss, "StandardGpuResources")
    approx = n >= approx_from
    if approx:
        nlist = max(1, min(n // TRAIN_PER_LIST, round(LISTS_PER_SQRT_N * math.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexFlatIP(d)
    if gpu:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, device.index or 0, index)
    if approx:
        sample = np.random.default_rng(0).permutation(n)[:TRAIN_PER_LIST * nlist]
        index.train(xb[np.sort(sample)])
    index.add(xb)
    if approx:
        _calibrate_nprobe(faiss, index, xb, k, nlist, gpu)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, SEARCH_CHUNK):
        stop = min(start + SEARCH_CHUNK, n)
        s, i = index.search(xb[start:stop], k + 1)
        idx[start:stop], sim[start:stop] = _drop_self(i, s, np.arange(start, stop))
    short = np.flatnonzero((idx < 0).any(axis=1))   # IVF lists probed held fewer than k + 1 rows
    if len(short):
        idx[short], sim[short] = _exact_rows(faiss, xb, short, k)
    return idx, sim


def _drop_self(idx: np.ndarray, sim: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From k + 1 results per row, drop the row's own index, or the last result if it is absent."""
    is_self = idx == rows[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), idx.shape[1] - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(rows)), drop] = False
    shape = (len(rows), idx.shape[1] - 1)
    return idx[keep].reshape(shape).astype(np.int64), sim[keep].reshape(shape).astype(np.float32)


def _exact_rows(faiss, xb: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours of some rows against all of xb (faiss brute force, no index copy)."""
    sim, idx = faiss.knn(xb[rows], xb, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    return _drop_self(idx, sim, rows)


def _calibrate_nprobe(faiss, index, xb: np.ndarray, k: int, nlist: int, gpu: bool) -> None:
    """Raise the IVF probe count (1, 2, 3, 4, 6, 8, 12, ...) until recall@k on sampled rows
    reaches RECALL_TARGET."""
    n = xb.shape[0]
    rows = np.sort(np.random.default_rng(1).permutation(n)[:CALIBRATION_QUERIES])
    truth, _ = _exact_rows(faiss, xb, rows, k)
    space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    for nprobe in _probe_counts(min(nlist, 2048) if gpu else nlist):   # faiss GPU probes at most 2,048 lists
        space.set_index_parameter(index, "nprobe", nprobe)
        s, i = index.search(xb[rows], k + 1)
        found, _ = _drop_self(i, s, rows)
        if recall(found, truth) >= RECALL_TARGET:
            return


def _probe_counts(nlist: int) -> list[int]:
    steps = {c for e in range(nlist.bit_length()) for c in (2**e, 3 * 2**e // 2) if c < nlist}
    return sorted(steps) + [nlist]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row's true neighbours that were found (recall@k)."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth))
    return hits / truth.size
