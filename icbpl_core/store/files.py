"""Where the engine keeps its caches, and the content hash it names files by."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

from ..errors import DiskFull

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


def no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: str | os.PathLike, doing: str = "writing") -> DiskFull:
    return DiskFull(f"disk full while {doing} {path}; free some space and try again")


def remove_stale(parent: Path, pattern: str, older_than_s: float = 3600.0) -> None:
    """Remove what writers killed mid-way left behind (temporary files and folders matching
    `pattern` in `parent`, untouched for `older_than_s`; never read by anyone)."""
    now = time.time()
    for stale in Path(parent).glob(pattern):
        try:
            if now - stale.lstat().st_mtime > older_than_s:
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        except OSError:
            pass


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def evict_oldest(entries, max_bytes: int, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove the least recently used of `entries` (files or folders, oldest mtime first) until
    together they hold at most `max_bytes`; `keep` is never removed. Returns what was removed."""
    entries = [(p.lstat().st_mtime, p, size_of(p)) for p in map(Path, entries) if p.exists()]
    total = sum(size for _, _, size in entries)
    kept = {Path(k).absolute() for k in keep}
    removed = []
    for _, path, size in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if path.absolute() in kept:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed


def touch(path: Path) -> None:
    """Mark an entry as just used (its mtime), for evict_oldest."""
    try:
        os.utime(path)
    except OSError:
        pass
