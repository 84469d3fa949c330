"""Backbone feature extraction, with an on-disk cache.

Head-only training needs the frozen backbone's features of every image and of V
augmented copies of it. They are computed once and cached under
<cache_dir>/features/<key>/, the key hashing everything the numbers depend on
(dataset, subset, backbone, weights, input size, augmentation, views, seed), so a
changed input never serves stale features. Reads are memory-mapped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .augment import Augment
from .backbones import Backbone

FEATURES_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("ICBPL_CACHE_DIR", Path.home() / ".cache" / "icbpl"))


def cache_key(**parts) -> str:
    blob = json.dumps({"version": FEATURES_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@torch.inference_mode()
def extract(backbone: Backbone, images: np.ndarray, augment: Augment | None = None,
            seed: int = 0, size: int | None = None, batch_size: int = 256,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Features (N, D) float32 of uint8 images (N, H, W, C), optionally of augmented copies."""
    backbone.eval()
    n = len(images)
    out = np.empty((n, backbone.feature_dim), dtype=np.float32)
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        if augment is not None:
            x = augment(x, g)
        out[start:start + len(batch)] = backbone(backbone.prepare(x, size)).numpy()
        if progress is not None:
            progress(start + len(batch), n)
    return out


def cached_features(key: str, compute: Callable[[], dict[str, np.ndarray]],
                    cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Arrays stored under `key`, computed and written atomically on a miss."""
    folder = Path(cache_dir or default_cache_dir()) / "features" / key
    if (folder / "complete").is_file():
        return {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}
    arrays = compute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "complete").write_text("ok\n")
        if folder.exists():            # a concurrent writer finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return arrays
