"""Uploaded archives and the folders a browser may open.

An app started on a shared server serves untrusted browsers, so:
* a browser opens folders only under the data roots the person who started the server allowed
  ($ICBPL_DATA_ROOTS, paths separated by ':'; default: the working folder's data/), and its own
  uploads; paths are compared after following links;
* each browser session's uploads go to a folder of its own, streamed to disk in chunks (hashed as
  they are written, so a duplicate is stored once), and all uploads together are capped
  ($ICBPL_UPLOADS_MAX_BYTES, default 4 GiB): the least recently used are removed first.

An upload is stored under its content's hash; the name it was uploaded under is kept beside it
(names.json in the session's folder), and every message the app shows names the upload by it
(`shown`, `without_upload_paths`), never by its internal path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from icbpl_core.store import atomic
from icbpl_core.store.files import disk_full, evict_oldest, no_space, touch

from .state import uploads_dir

DATA_ROOTS_ENV = "ICBPL_DATA_ROOTS"
UPLOADS_MAX_ENV = "ICBPL_UPLOADS_MAX_BYTES"
UPLOADS_MAX_BYTES = 4 << 30
CHUNK = 1 << 20
NAMES = "names.json"          # in a session's folder: {stored file name: the name it was uploaded under}


class UploadError(ValueError):
    """An upload that cannot be kept; the message says why."""


def session_folder(session: str) -> Path:
    """The uploads of one browser session (`session`: an id the app gives each session)."""
    return uploads_dir() / re.sub(r"[^A-Za-z0-9_-]", "_", session)[:64]


def data_roots(session: str) -> list[Path]:
    """Where this session may open folders: the allowed roots and its own uploads, links followed."""
    given = [p for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = [Path(p).expanduser() for p in given] or [Path.cwd() / "data"]
    return [Path(os.path.realpath(p)) for p in [*roots, session_folder(session)]]


def refusal(path: str, session: str) -> str | None:
    """Why this session may not open `path` (None: it may)."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    roots = data_roots(session)
    if any(real == root or real.is_relative_to(root) for root in roots):
        return None
    allowed = ", ".join(str(r) for r in roots[:-1])
    return (f"{path} is outside the folders this app may open ({allowed}). The person who started the app "
            f"can allow more with {DATA_ROOTS_ENV} (folders separated by ':').")


def save_upload(upload, session: str) -> Path:
    """Stream an uploaded file (a binary file object; its `name`, when it has one, is remembered)
    into the session's folder as <sha256>.zip; returns its path. The total of all uploads stays
    under the cap, oldest removed first."""
    folder = session_folder(session)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            upload.seek(0)
            while chunk := upload.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        target = folder / f"{digest.hexdigest()[:24]}.zip"
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if no_space(exc):
            raise UploadError(str(disk_full(folder, "saving an upload in"))) from None
        raise
    touch(target)
    name = getattr(upload, "name", None)
    if isinstance(name, str) and name.strip():
        _remember(folder, target.name, name.strip())
    limit = _limit()
    if target.stat().st_size > limit:
        target.unlink()
        raise UploadError(f"the upload is larger than all uploads together may be ({limit:,} bytes, "
                          f"{UPLOADS_MAX_ENV})")
    everyone = [p for d in uploads_dir().iterdir() if d.is_dir() for p in d.glob("*.zip")]
    evict_oldest(everyone, limit, keep=(target,))
    return target


def _remember(folder: Path, stored: str, name: str) -> None:
    names = _names(folder)
    if names.get(stored) != name:
        try:
            atomic.write_json(folder / NAMES, {**names, stored: Path(name).name[:200]})
        except OSError:     # a full disk: messages show the internal name, nothing else is lost
            pass


def _names(folder: Path) -> dict:
    try:
        names = json.loads((folder / NAMES).read_text(encoding="utf-8"))
        return names if isinstance(names, dict) else {}
    except (OSError, ValueError):
        return {}


def uploaded_name(path) -> str | None:
    """The name an upload was uploaded under, when `path` is an upload (else None)."""
    if not path:
        return None
    try:
        path = Path(path)
        if not Path(os.path.realpath(path.parent.parent)) == Path(os.path.realpath(uploads_dir())):
            return None
    except (OSError, ValueError):
        return None
    return _names(path.parent).get(path.name) or "an uploaded archive"


def shown(path) -> str:
    """A data path as the app shows it: an upload by the name it was uploaded under."""
    name = uploaded_name(path)
    return f"{name} (uploaded)" if name else str(path)


_UPLOAD_PATH = re.compile(r"(?:[^\s'\"(]*/)?\.uploads/[A-Za-z0-9_-]+/[0-9a-f]{8,64}\.zip")


def without_upload_paths(text: str) -> str:
    """`text` with every upload's internal path (RUNS/.uploads/SESSION/HASH.zip, quoted or not)
    replaced by the name it was uploaded under."""
    def name_of(match: re.Match) -> str:
        found = match.group(0)
        stored = uploads_dir() / Path(found).parent.name / Path(found).name
        return uploaded_name(stored) or "an uploaded archive"
    return _UPLOAD_PATH.sub(name_of, text)


def _limit() -> int:
    try:
        return int(os.environ.get(UPLOADS_MAX_ENV) or UPLOADS_MAX_BYTES)
    except ValueError:
        return UPLOADS_MAX_BYTES
