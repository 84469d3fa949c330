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


def test_messages_name_an_upload_as_it_was_uploaded_never_by_its_internal_path(tmp_path, monkeypatch):
    from icbpl_app import state
    from icbpl_core.datasets import load_dataset
    from icbpl_core.errors import DatasetError

    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("notes.txt", "no images here")
    upload = Upload(buffer.getvalue())
    upload.name = "my holiday <photos>.zip"
    path = uploads.save_upload(upload, "session-a")
    assert uploads.uploaded_name(path) == "my holiday <photos>.zip"
    assert uploads.shown(path) == "my holiday <photos>.zip (uploaded)"
    assert uploads.shown(tmp_path / "elsewhere.zip") == str(tmp_path / "elsewhere.zip")   # not an upload
    try:
        load_dataset("zip", str(path), None, 0)
    except DatasetError as exc:
        message = state.message(exc)
    assert str(path) not in message and ".uploads" not in message
    assert "my holiday <photos>.zip" in message and message.endswith("Upload another zip archive on Data & model.")
    quoted = uploads.without_upload_paths(f"cannot read '{path}': bad")
    assert quoted == "cannot read 'my holiday <photos>.zip': bad"
    # an upload the app has no name for (saved before names were kept) is still not shown by its path
    (path.parent / uploads.NAMES).unlink()
    assert uploads.without_upload_paths(f"{path} is broken") == "an uploaded archive is broken"


def test_a_failed_run_on_an_upload_says_why_once_naming_the_upload(tmp_path, monkeypatch):
    from icbpl_app import jobs
    from icbpl_app.progress import summarize
    from icbpl_core import events as ev
    from icbpl_core.store.runs import create_run

    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    upload = Upload(b"PK not really")
    upload.name = "shapes.zip"
    path = uploads.save_upload(upload, "session-b")
    run = create_run(tmp_path, {"dataset": "zip", "data_root": str(path), "train": {"epochs": 3}})
    error = f"the dataset has 1 readable image(s) in {path}; clustering needs at least 2"
    run.set_status("failed", error=error, setting="data_root")
    message = jobs.error_message(run)
    assert message == ("The dataset has 1 readable image(s) in shapes.zip; clustering needs at least 2. "
                       "Upload another zip archive on Data & model.")
    progress = summarize([{"type": ev.START, "time": 1.0}, {"type": ev.ERROR, "time": 2.0, "message": error}],
                         "failed", 3)
    assert progress.phase == "failed" and progress.detail == ""          # the outcome message says why
