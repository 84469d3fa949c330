"""Shared helpers for datasets read from image files: recognised extensions, checking a
file cheaply, opening it safely and converting any PIL mode to 8-bit L or RGB.

Mode rule: grey modes (1, L, LA, I;16*, I, F) are "grey", all others (RGB, RGBA, P,
CMYK, YCbCr, ...) are "colour". A dataset of files comes out as L when every one of
its images is grey, and as RGB otherwise (grey images then repeat their one channel).
Transparency is composited on white; 16-bit images are scaled (v * 255 / 65535,
rounded), never clipped.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .base import ImageDataset

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    """Dot files (.DS_Store, AppleDouble ._x.png) and macOS archive folders are not data."""
    return name.startswith(".") or name == "__MACOSX"


def native_mode(mode: str) -> str:
    """"L" for grey PIL modes, "RGB" for everything else."""
    return "L" if mode in GREY_MODES else "RGB"


def _composite_on_white(img: Image.Image) -> Image.Image:
    base = "LA" if img.mode in ("LA", "La") else "RGBA"
    arr = np.asarray(img.convert(base), dtype=np.uint32)
    colour, alpha = arr[..., :-1], arr[..., -1:]
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    return Image.fromarray(out[..., 0], "L") if base == "LA" else Image.fromarray(out, "RGB")


def _scale_to_uint8(img: Image.Image) -> Image.Image:
    """Single-channel 16-bit, 32-bit int or float images to 8-bit L.

    I;16*: v * 255 / 65535. I: kept when already in 0..255, scaled as 16-bit when in
    0..65535, else stretched min..max. F: values in 0..1 times 255, kept when in 0..255,
    else stretched min..max; NaN becomes 0.
    """
    arr = np.asarray(img).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0
    elif img.mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = (255.0 / (hi - lo) if hi > lo else 0.0), lo
    out = np.clip(np.rint((arr - offset) * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit "L" (grey modes) or "RGB" (all other modes)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _scale_to_uint8(img)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        return to_8bit(img)
    if mode in ALPHA_MODES:
        return _composite_on_white(img)
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def convert(img: Image.Image, mode: str) -> Image.Image:
    """Any PIL image as 8-bit `mode` ("L" or "RGB")."""
    img = to_8bit(img)
    return img if img.mode == mode else img.convert(mode)


def probe_image(path: str | os.PathLike) -> tuple[str, tuple[int, int]]:
    """(mode, size) of an image file, after PIL's cheap integrity check; raises if unreadable."""
    with Image.open(path) as img:
        mode, size = img.mode, img.size
        img.verify()
    return mode, size


def shown(path: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 (the name came
    from another system's encoding) shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def probe_all(paths: list[Path], workers: int = 8) -> list[tuple[str, tuple[int, int]] | str]:
    """probe_image for many files (threads overlap the disk reads); an error string per bad file."""
    def one(path: Path):
        try:
            return probe_image(path)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a usable image"
            return describe_error(exc)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, paths))


def open_image(path: str | os.PathLike, mode: str) -> Image.Image:
    """Decode an image file fully (first frame, EXIF orientation applied) as 8-bit `mode`."""
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return convert(img, mode).copy()


class FileDataset(ImageDataset):
    """Images read lazily from files under `root` (`paths` relative to it, '/'-separated).

    A file that fails to decode when read (a truncated JPEG passes the cheap check) gives a
    grey placeholder of its size, is added to `skipped` and listed by unreadable(), so a long
    run never stops on it and training leaves it out.
    """

    def __init__(self, name: str, root: str | os.PathLike, paths: list[str], labels: np.ndarray | None,
                 class_names: list[str] | None, mode: str = "RGB",
                 sizes: list[tuple[int, int]] | None = None,
                 skipped: list[tuple[str, str]] | None = None) -> None:
        self.name, self.root, self.paths, self.mode, self.sizes = name, Path(root), paths, mode, sizes
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names, self.skipped = class_names, list(skipped or [])
        self._failed: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        try:
            return open_image(self.root / self.paths[index], self.mode)
        except Exception as exc:  # noqa: BLE001 - never fatal, see class docstring
            if index not in self._failed:
                self._failed.add(index)
                self.skipped.append((shown(self.paths[index]), f"unreadable when loaded ({describe_error(exc)})"))
            size = self.sizes[index] if self.sizes is not None else (64, 64)
            return Image.new(self.mode, size, 128 if self.mode == "L" else (128, 128, 128))

    def item_id(self, index: int) -> str:
        return shown(self.paths[index])

    def unreadable(self) -> list[int]:
        return sorted(self._failed)
