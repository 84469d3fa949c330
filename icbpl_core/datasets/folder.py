"""A user's own images: a folder (`folder`) or a zip archive of one (`zip`).

Folder layout: when images sit in subfolders, each top-level subfolder is a class (the
ImageFolder layout; class names = subfolder names, images found at any depth inside it,
images directly in the root skipped; a class folder with no readable image is left out);
otherwise the folder is flat and has no labels.
Extensions: png jpg jpeg bmp gif tif tiff webp, any case. Hidden files are ignored.
Every file is checked when the dataset is opened (PIL's cheap verify): unreadable or
non-image files are listed in `skipped` as (path, reason), never fatal. Images are decoded
on demand; one that passed the check but fails to decode (a truncated JPEG) is left out of
training then. The mode rule is in images.py (L only when every image is grey, else RGB).
item_id is the path relative to the root (bytes that are not UTF-8 shown as \\xNN).

Zip archives are treated as hostile: entries escaping the folder (absolute, `..`) are
refused, symlinks ignored, file count and uncompressed size capped (declared sizes and the
bytes actually written), then the images are extracted all or nothing (a full disk caches
nothing; folders of extractions killed mid-way are removed) to
<cache root>/archives/<sha256>/ (store/files.py) and opened as a folder (a single
top-level folder in the archive is descended into). All extracted archives together are capped
(ICBPL_ARCHIVES_MAX_BYTES, default 8 GiB; the least recently used go first). Archive-level
skips (symlinks, non-images, corrupt entries) are reported with their names in the archive.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..store.files import cache_root, disk_full, evict_oldest, file_sha256, no_space, remove_stale, touch
from . import DatasetError
from .images import FileDataset, describe_error, is_hidden, is_image_name, native_mode, probe_all, shown

ZIP_MAX_BYTES = 2 * 1024 ** 3       # env ICBPL_ZIP_MAX_BYTES
ZIP_MAX_FILES = 200_000             # env ICBPL_ZIP_MAX_FILES
ARCHIVES_MAX_BYTES = 8 * 1024 ** 3  # env ICBPL_ARCHIVES_MAX_BYTES: all extracted archives together
MANIFEST = ".icbpl-archive.json"


def _walk(root: Path) -> list[str]:
    """Relative '/'-paths of all non-hidden files under root, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if not is_hidden(f)]
    return sorted(found)


def open_folder(root: str | os.PathLike, name: str = "folder",
                skipped: list[tuple[str, str]] | None = None) -> FileDataset:
    """A FileDataset of the images under root (see the module docstring for the layout rules)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    skipped = list(skipped or [])
    candidates = []
    for rel in _walk(root):
        if is_image_name(rel):
            candidates.append(rel)
        else:
            skipped.append((shown(rel), "not an image file (unrecognised extension)"))
    has_classes = any("/" in rel for rel in candidates)
    if has_classes:
        skipped += [(shown(rel), "outside any class folder") for rel in candidates if "/" not in rel]
        candidates = [rel for rel in candidates if "/" in rel]
    paths, modes, sizes = [], [], []
    for rel, result in zip(candidates, probe_all([root / rel for rel in candidates])):
        if isinstance(result, str):
            skipped.append((shown(rel), f"unreadable image ({result})"))
        else:
            paths.append(rel)
            modes.append(result[0])
            sizes.append(result[1])
    labels = class_names = None
    if has_classes:
        class_names = sorted({shown(rel.split("/", 1)[0]) for rel in paths})
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.asarray([index[shown(rel.split("/", 1)[0])] for rel in paths], dtype=np.int64)
    mode = "L" if modes and all(native_mode(m) == "L" for m in modes) else "RGB"
    return FileDataset(name, root, paths, labels, class_names, mode, sizes, skipped)


def load_folder(root: str | None = None, download: bool = False) -> FileDataset:
    if root and Path(root).is_file() and zipfile.is_zipfile(root):
        return load_zip(root)
    if not root or not Path(root).is_dir():
        raise DatasetError(f"folder dataset: {root!r} is not a folder of images")
    return open_folder(root)


# --- zip archives -------------------------------------------------------------------------

def _limit(value: int | None, env: str, default: int) -> int:
    if value is not None:
        return int(value)
    try:
        return int(os.environ.get(env, default))
    except ValueError:
        raise DatasetError(f"{env} must be a whole number, got {os.environ[env]!r}") from None


def entry_parts(name: str) -> list[str]:
    """The path components of a zip entry; DatasetError if it would land outside the folder."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"[A-Za-z]:", norm):
        raise DatasetError(f"unsafe zip: entry {name!r} has an absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"unsafe zip: entry {name!r} escapes the extraction folder ('..')")
    return parts


def copy_capped(src, dst, declared: int, budget: int, name: str, max_bytes: int) -> int:
    """Copy an entry counting the bytes really produced: more than declared, or more than
    the remaining budget, is a zip bomb. Returns the bytes written."""
    written = 0
    while chunk := src.read(1 << 20):
        written += len(chunk)
        if written > declared:
            raise DatasetError(f"unsafe zip: entry {name!r} inflates beyond its declared {declared} bytes")
        if written > budget:
            raise DatasetError(f"zip archive inflates beyond the limit of {max_bytes} bytes "
                               "(set ICBPL_ZIP_MAX_BYTES to allow more)")
        dst.write(chunk)
    return written


def _plan(zf: zipfile.ZipFile, max_files: int, max_bytes: int):
    """The entries to extract and the ones skipped, after the checks that need no extraction."""
    files = [info for info in zf.infolist() if not info.is_dir()]
    if len(files) > max_files:
        raise DatasetError(f"zip archive holds {len(files)} files, more than the limit of {max_files} "
                           "(set ICBPL_ZIP_MAX_FILES to allow more)")
    plan, skipped = [], []
    for info in files:
        parts = entry_parts(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if not parts or any(is_hidden(p) for p in parts):
            continue
        if kind == stat.S_IFLNK:
            skipped.append((info.filename, "symbolic link in archive, ignored"))
        elif kind not in (0, stat.S_IFREG):
            skipped.append((info.filename, "not a regular file, ignored"))
        elif not is_image_name(parts[-1]):
            skipped.append((info.filename, "not an image file (unrecognised extension)"))
        else:
            plan.append((info, parts))
    declared = sum(info.file_size for info, _ in plan)
    if declared > max_bytes:
        raise DatasetError(f"zip archive declares {declared} bytes of images uncompressed, more than the "
                           f"limit of {max_bytes} (set ICBPL_ZIP_MAX_BYTES to allow more)")
    return plan, skipped


def extract_zip(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                max_bytes: int | None = None, max_files: int | None = None) -> Path:
    """Extract the images of a zip (once, cached by its sha256); returns the extraction folder."""
    max_bytes = _limit(max_bytes, "ICBPL_ZIP_MAX_BYTES", ZIP_MAX_BYTES)
    max_files = _limit(max_files, "ICBPL_ZIP_MAX_FILES", ZIP_MAX_FILES)
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "archives"
    final = cache / file_sha256(path)
    if final.is_dir():
        touch(final)
        return final
    cache.mkdir(parents=True, exist_ok=True)
    remove_stale(cache, ".tmp-*")        # extractions killed mid-way (never read)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path} is not a readable zip archive: {exc}") from exc
    with zf:
        plan, skipped = _plan(zf, max_files, max_bytes)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
        try:
            budget = max_bytes
            for info, parts in plan:
                target = tmp.joinpath(*parts)
                if not target.resolve().is_relative_to(tmp.resolve()):
                    raise DatasetError(f"unsafe zip: entry {info.filename!r} escapes the extraction folder")
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "xb") as dst:
                        budget -= copy_capped(src, dst, info.file_size, budget, info.filename, max_bytes)
                except DatasetError:
                    raise
                except OSError as exc:
                    if no_space(exc):    # all or nothing: a partial archive is never cached
                        raise disk_full(cache, f"extracting {Path(path).name} into") from None
                    if target.is_file() and not target.is_symlink():
                        target.unlink()
                    skipped.append((info.filename, f"could not extract ({describe_error(exc)})"))
                except Exception as exc:  # noqa: BLE001 - corrupt, encrypted, duplicate entries
                    if target.is_file() and not target.is_symlink():
                        target.unlink()
                    skipped.append((info.filename, f"could not extract ({describe_error(exc)})"))
            try:
                (tmp / MANIFEST).write_text(json.dumps({"archive": str(path), "skipped": skipped}))
            except OSError as exc:
                if no_space(exc):
                    raise disk_full(cache, f"extracting {Path(path).name} into") from None
                raise
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():  # someone else finished first, else a real error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    evict_oldest([p for p in cache.iterdir() if not p.name.startswith(".")],
                 _limit(None, "ICBPL_ARCHIVES_MAX_BYTES", ARCHIVES_MAX_BYTES), keep=(final,))
    return final


def load_zip(root: str | None = None, download: bool = False, *, cache_dir: str | None = None,
             max_bytes: int | None = None, max_files: int | None = None) -> FileDataset:
    if not root or not Path(root).is_file():
        raise DatasetError(f"zip dataset: {root!r} is not a zip file")
    folder = extract_zip(root, cache_dir, max_bytes, max_files)
    manifest = folder / MANIFEST
    skipped = [tuple(s) for s in json.loads(manifest.read_text())["skipped"]] if manifest.is_file() else []
    children = [c for c in folder.iterdir() if not is_hidden(c.name)]
    if len(children) == 1 and children[0].is_dir():
        folder = children[0]
    return open_folder(folder, "zip", skipped)

