"""Where the engine keeps its caches, and the content hash it names files by."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "ICBPL_CACHE_DIR"
_HASHES: dict[tuple[str, int, int], str] = {}   # (path, size, mtime_ns) -> sha256, per process


def cache_root() -> Path:
    """$ICBPL_CACHE_DIR, else ~/.cache/icbpl: extracted features, unpacked archives."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "icbpl")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in chunks; remembered per (path, size, mtime) for this process."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _HASHES[memo] = digest.hexdigest()
    return _HASHES[memo]
