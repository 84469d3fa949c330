"""Uploads are streamed to disk per browser session, and capped with the oldest removed first;
extracted archives are capped the same way."""
import io
import os
import time
import zipfile

from icbpl_app import uploads
from icbpl_core.datasets.folder import extract_zip


class Upload(io.BytesIO):
    """What Streamlit hands the page: a file object (read in chunks, never whole)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)

    def getvalue(self):
        raise AssertionError("the whole upload was read into memory")


def test_uploads_are_streamed_into_the_sessions_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    data = os.urandom(3 * uploads.CHUNK + 17)
    upload = Upload(data)
    path = uploads.save_upload(upload, "session-a")
    assert path.parent == uploads.session_folder("session-a") and path.read_bytes() == data
    assert all(size == uploads.CHUNK for size in upload.reads)           # chunk by chunk
    assert uploads.save_upload(Upload(data), "session-a") == path            # the same content once
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_all_uploads_together_stay_under_the_cap_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("ICBPL_UPLOADS_MAX_BYTES", str(2500))
    first = uploads.save_upload(Upload(os.urandom(1000)), "a")
    os.utime(first, (time.time() - 100, time.time() - 100))
    second = uploads.save_upload(Upload(os.urandom(1000)), "b")
    third = uploads.save_upload(Upload(os.urandom(1000)), "a")
    assert not first.exists() and second.exists() and third.exists()
    try:
        uploads.save_upload(Upload(os.urandom(4000)), "c")
        raise AssertionError("an upload over the cap was kept")
    except uploads.UploadError as exc:
        assert "ICBPL_UPLOADS_MAX_BYTES" in str(exc)


def _zip(path, n: int, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"img{i}.png", os.urandom(size))


def test_extracted_archives_together_stay_under_their_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_ARCHIVES_MAX_BYTES", str(5000))
    cache = tmp_path / "archives"
    old, new = tmp_path / "old.zip", tmp_path / "new.zip"
    _zip(old, 2, 2000)
    _zip(new, 2, 2000)
    first = extract_zip(old, cache)
    os.utime(first, (time.time() - 100, time.time() - 100))
    second = extract_zip(new, cache)
    assert second.is_dir() and not first.exists()                        # 8,000 bytes: the older goes
