"""Atomic file writes: write a temporary file beside the target, fsync, then rename.

A reader (the app, a resumed run) sees either the old file or the new one, never half.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .files import disk_full, no_space


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write: Callable[[object], None], mode: str = "wb", keep_previous: Path | None = None) -> None:
    """Write `path` through a temporary file; with `keep_previous`, the file it replaces is kept
    under that name (so a reader always finds the new file, or at least the one before)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None and path.is_file():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if no_space(exc):
            raise disk_full(path) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text), mode="w")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def save_npy(path: Path, array) -> None:
    import numpy as np
    _atomic(path, lambda f: np.save(f, array))


def torch_save(path: Path, obj, keep_previous: Path | None = None) -> None:
    """torch.save through memory: written to a file directly, a full disk shows up as torch's
    zip-writer error ("unexpected pos ..."), not as the OSError that names it."""
    import io

    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic(path, lambda f: f.write(buffer.getbuffer()), keep_previous=keep_previous)
