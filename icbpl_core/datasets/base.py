"""The interface every dataset implements, and the in-memory array dataset most use."""
from __future__ import annotations

import numpy as np
from PIL import Image


class ImageDataset:
    """A sized collection of images with optional labels.

    Subclasses provide `__len__`, `image(i)` (a PIL image, RGB or L) and `item_id(i)`
    (a stable id or path, used in exports), and set `labels` (int64 array or None)
    and `class_names` (list or None). `name` identifies the dataset in run configs.
    `skipped` lists files that could not be read, as (path, reason).
    """

    name: str = "dataset"
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def item_id(self, index: int) -> str:
        return f"{self.name}:{index}"

    def unreadable(self) -> list[int]:
        """Indices of images that failed to decode so far (given a placeholder); none here."""
        return []

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def n_classes(self) -> int | None:
        if self.class_names is not None:
            return len(self.class_names)
        return None if self.labels is None else int(self.labels.max()) + 1

    def thumbnail(self, index: int, size: int = 64) -> Image.Image:
        """A small RGB copy for galleries (nearest-neighbour upscaling keeps tiny images crisp)."""
        img = self.image(index).convert("RGB")
        scale = size / max(img.size)
        resample = Image.NEAREST if scale > 1 else Image.BILINEAR
        return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)

    def to_array(self, size: int | None = None) -> np.ndarray:
        """All images as uint8 (N, H, W, C); `size` resizes to size x size (needed when sizes vary)."""
        channels = channels_of(self.image(0))
        out = None
        for i in range(len(self)):
            arr = decode(self.image(i), channels, size)
            if out is None:
                out = np.empty((len(self),) + arr.shape, dtype=np.uint8)
            elif arr.shape != out.shape[1:]:
                raise size_mismatch(self.item_id(i), arr.shape, out.shape[1:])
            out[i] = arr
        return out


def channels_of(image: Image.Image) -> int:
    """1 for an L image, else 3: a dataset's channels are its first image's."""
    return 1 if image.mode == "L" else 3


def decode(image: Image.Image, channels: int, size: int | None = None) -> np.ndarray:
    """A PIL image as uint8 (H, W, channels), resized to size x size (bilinear) when `size` is given."""
    img = image.convert("L" if channels == 1 else "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels)


def size_mismatch(item_id: str, shape: tuple, expected: tuple) -> ValueError:
    return ValueError(f"image {item_id} is {shape[1]}x{shape[0]}, others are {expected[1]}x{expected[0]}: "
                      "give an image size to resize them all")


class ArrayDataset(ImageDataset):
    """Images held in memory as uint8 (N, H, W, C) with C in {1, 3}."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray | None = None,
                 class_names: list[str] | None = None, ids: list[str] | None = None,
                 skipped: list[tuple[str, str]] | None = None) -> None:
        self.name, self.images, self.labels = name, images, labels
        self.class_names, self.ids, self.skipped = class_names, ids, list(skipped or [])
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if self.images.ndim != 4 or self.images.shape[-1] not in (1, 3) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 1|3), got {self.images.dtype} {self.images.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.images):
                raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> Image.Image:
        arr = self.images[index]
        return Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")

    def item_id(self, index: int) -> str:
        return self.ids[index] if self.ids is not None else f"{self.name}:{index}"

    def to_array(self, size: int | None = None) -> np.ndarray:
        if size is None or self.images.shape[1:3] == (size, size):
            return self.images
        return super().to_array(size)

    def subset(self, indices: np.ndarray) -> "ArrayDataset":
        indices = np.asarray(indices, dtype=np.int64)
        ids = [self.item_id(int(i)) for i in indices]
        return ArrayDataset(self.name, self.images[indices],
                            None if self.labels is None else self.labels[indices],
                            self.class_names, ids, list(self.skipped))


def balanced_subset(labels: np.ndarray | None, n_items: int, limit: int, seed: int) -> np.ndarray:
    """Seeded subset of `limit` indices, as class-balanced as the classes allow, in index order."""
    rng = np.random.default_rng(seed)
    if limit >= n_items:
        return np.arange(n_items)
    if labels is None:
        return np.sort(rng.choice(n_items, size=limit, replace=False))
    # Shuffle within each class, then deal round-robin across classes.
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = [idx[r] for r in range(max(map(len, per_class))) for idx in per_class if r < len(idx)]
    return np.sort(np.asarray(order[:limit], dtype=np.int64))


class IndexedSubset(ImageDataset):
    """A view on some items of another dataset (for datasets read lazily from disk)."""

    def __init__(self, parent: ImageDataset, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.name = parent.name
        self.labels = None if parent.labels is None else parent.labels[self.indices]
        self.class_names = parent.class_names
        self.skipped = list(getattr(parent, "skipped", []))

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> Image.Image:
        return self.parent.image(int(self.indices[index]))

    def item_id(self, index: int) -> str:
        return self.parent.item_id(int(self.indices[index]))

    def unreadable(self) -> list[int]:
        failed = set(self.parent.unreadable())
        return [i for i, parent in enumerate(self.indices) if int(parent) in failed] if failed else []


class Unlabelled(ImageDataset):
    """A dataset's images without its labels, for what must never read them (the auto recipe)."""

    labels = None
    class_names: list[str] = []

    def __init__(self, parent: ImageDataset) -> None:
        self.parent = parent
        self.name = parent.name
        self.skipped = list(getattr(parent, "skipped", []))

    def __len__(self) -> int:
        return len(self.parent)

    def image(self, index: int) -> Image.Image:
        return self.parent.image(index)

    def item_id(self, index: int) -> str:
        return self.parent.item_id(index)

    def unreadable(self) -> list[int]:
        return self.parent.unreadable()

    def to_array(self, size: int | None = None) -> np.ndarray:
        return self.parent.to_array(size)
