"""The on-disk feature cache.

Head-only training needs the frozen backbone's features of every image and of V augmented
copies of it. They are computed once and cached under <cache root>/features/<key>/, one
entry per pass (the clean images, each augmented copy), the key hashing everything the
numbers depend on (dataset, subset, backbone, weights, input size, augmentation,
precision, which pass: the parameters params.py marks `cache_key`), so a changed input
never serves stale features and an interrupted extraction keeps the passes it finished.
Reads are memory-mapped.

Entries are written to a temporary folder and renamed into place after a manifest
(`complete`, JSON: key, array names, shapes, dtypes) is written last; an entry without a
valid manifest, or whose files do not match it, is never read: it is recomputed and replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CacheError
from ..store.files import cache_root, disk_full, no_space, remove_stale

FEATURES_VERSION = 1
MANIFEST = "complete"


def cache_key(**parts) -> str:
    blob = json.dumps({"version": FEATURES_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _read_entry(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of a finished cache entry, memory-mapped; None when it is absent or not whole."""
    marker = folder / MANIFEST
    if not marker.is_file():
        return None
    try:
        manifest = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("key") != key or not isinstance(manifest.get("arrays"), dict):
        return None
    arrays = {}
    try:
        for name, meta in manifest["arrays"].items():
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
            if list(array.shape) != list(meta["shape"]) or str(array.dtype) != meta["dtype"]:
                return None
            arrays[name] = array
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arrays


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _writable_folder(folder: Path, root: Path) -> None:
    """Create `folder` (under the cache `root`) or say which path is in the way, before a
    long extraction whose result could then not be kept."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return
        problem = f"{folder} is not writable"
    except (FileExistsError, NotADirectoryError):
        chain = [folder, *folder.parents]
        dangling = [p for p in chain if p.is_symlink() and not p.exists()]
        in_the_way = [p for p in chain if p.exists() and not p.is_dir()]
        if dangling:
            problem = f"{dangling[0]} is a link to {os.readlink(dangling[0])}, which does not exist"
        else:
            problem = f"{in_the_way[0] if in_the_way else folder} is not a folder"
    except PermissionError:
        problem = f"{folder} cannot be created (permission denied)"
    raise CacheError(f"the feature cache cannot be used: {problem} (cache folder {root})")


def read_cached(key: str, cache_dir: Path | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of a finished entry, memory-mapped; None when there is none."""
    return _read_entry(Path(cache_dir or cache_root()) / "features" / key, key)


def cached_features(key: str, compute: Callable[[], dict[str, np.ndarray]],
                    cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Arrays stored under `key`, computed and written atomically on a miss."""
    root = Path(cache_dir or cache_root())
    folder = root / "features" / key
    cached = _read_entry(folder, key)
    if cached is not None:
        return cached
    _writable_folder(folder.parent, root)
    arrays = compute()
    remove_stale(folder.parent, f".{key}.*")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        manifest = {"key": key, "version": FEATURES_VERSION, "arrays": {}}
        for name, array in arrays.items():
            array = np.asarray(array)
            np.save(tmp / f"{name}.npy", array)
            _fsync(tmp / f"{name}.npy")
            manifest["arrays"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        (tmp / MANIFEST).write_text(json.dumps(manifest) + "\n")   # written last: the entry is whole
        _fsync(tmp / MANIFEST)
        if _read_entry(folder, key) is not None:    # a concurrent writer finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            if folder.exists():                     # an entry that is not whole: move it aside first
                trash = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
                try:
                    os.replace(folder, trash / "old")
                except OSError:
                    pass
                shutil.rmtree(trash, ignore_errors=True)
            try:
                os.replace(tmp, folder)
            except OSError:                          # another writer renamed theirs in meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not no_space(exc):
            raise
        # The features are computed: train on them; only the cache entry is given up.
        warnings.warn(f"{disk_full(folder, 'caching features in')}; this run goes on without caching them",
                      stacklevel=2)
    return arrays
