"""Archives are extracted all or nothing: a full disk leaves nothing in the cache and says so;
what a killed extraction left behind is removed."""
import errno
import io
import os
import time
import zipfile

import pytest

from icbpl_core.datasets import folder as folder_mod
from icbpl_core.errors import DiskFull


def _archive(path, n: int = 21) -> None:
    from PIL import Image
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            buffer = io.BytesIO()
            Image.new("L", (8, 8), i).save(buffer, "PNG")
            zf.writestr(f"imgs/{i}.png", buffer.getvalue())


def test_a_full_disk_caches_no_partial_archive(tmp_path, monkeypatch):
    archive, cache = tmp_path / "a.zip", tmp_path / "cache"
    _archive(archive)
    real = folder_mod.copy_capped
    calls = []

    def copy_until_full(src, dst, *args):
        calls.append(1)
        if len(calls) == 21:                   # the disk fills up on the last image
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args)
    monkeypatch.setattr(folder_mod, "copy_capped", copy_until_full)
    with pytest.raises(DiskFull, match=f"disk full while extracting a.zip into {cache}"):
        folder_mod.extract_zip(archive, cache)
    assert [p.name for p in cache.iterdir()] == []               # nothing cached, no temporary left
    monkeypatch.setattr(folder_mod, "copy_capped", real)         # space freed: all 21 images
    extracted = folder_mod.extract_zip(archive, cache)
    assert len(list(extracted.rglob("*.png"))) == 21


def test_what_a_killed_extraction_left_is_removed(tmp_path):
    archive, cache = tmp_path / "a.zip", tmp_path / "cache"
    _archive(archive, 3)
    stale = cache / ".tmp-killed"
    (stale / "imgs").mkdir(parents=True)
    (stale / "imgs" / "0.png").write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    folder_mod.extract_zip(archive, cache)
    assert not stale.exists()


def test_a_full_disk_is_named_wherever_a_run_writes(tmp_path, monkeypatch):
    """Checkpoints go through memory first: torch's own writer would report a full disk as
    "unexpected pos ..."; here every atomic write says "disk full" and names its file."""
    from icbpl_core.store import atomic

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    for write, name in ((lambda p: atomic.torch_save(p, {"w": 1}), "checkpoint.pt"),
                        (lambda p: atomic.write_json(p, {"a": 1}), "status.json")):
        with pytest.raises(DiskFull, match=f"disk full while writing {tmp_path / name}"):
            write(tmp_path / name)
        assert not list(tmp_path.iterdir())                     # no temporary left behind
