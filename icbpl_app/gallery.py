"""Images of a run for galleries: its dataset reopened from config.json, thumbnails,
the most and least confident members of a cluster, nearest neighbours of an image in
latent space and in the backbone's feature space, and the thumbnail atlas that the
latent-space plot shows on hover.
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from icbpl_core.errors import RunError
from icbpl_core.method.metrics import cluster_stats
from icbpl_core.store import atomic
from icbpl_core.store.runs import Run

ATLAS_CELL = 32              # px, one hover thumbnail
ATLAS_COLUMNS = 32           # cells per tile row: a tile is at most 1024 x 1024 px
ATLAS_ROWS = 32
ATLAS_VERSION = 2
ATLAS_FORMAT = ("WEBP", "image/webp", "webp")   # ~5x smaller than PNG for photo-like tiles
ATLAS_MAX_IMAGES = 250_000


class GalleryError(RunError):
    """The run's images cannot be shown; the message says why."""


def open_run_dataset(config: dict, ids: list[str]):
    """The run's images, reopened as training opened them, in the order of the run's ids (the
    images that failed to decode during training are not among them)."""
    from icbpl_core.datasets import load_dataset
    from icbpl_core.datasets.base import IndexedSubset

    train = config.get("train") or {}
    dataset = load_dataset(config.get("dataset", "digits"), config.get("data_root"), config.get("limit"),
                           int(train.get("seed", 0)), download=False)
    if len(dataset) == len(ids):
        check_matches(dataset, ids)
        return dataset
    position = {str(dataset.item_id(i)): i for i in range(len(dataset))}
    missing = [i for i in ids if i not in position]
    if missing:
        raise GalleryError(f"the dataset no longer has {len(missing)} of the run's images (e.g. {missing[0]!r}): "
                           "its files changed since training, so images cannot be shown")
    return IndexedSubset(dataset, [position[i] for i in ids])


def check_matches(dataset, ids: list[str]) -> None:
    """Raise GalleryError unless the reopened dataset still has the run's images in the run's order."""
    step = max(1, len(ids) // 2000)
    for i in range(0, len(ids), step):
        if str(dataset.item_id(i)) != str(ids[i]):
            raise GalleryError(f"image {i} is now {dataset.item_id(i)!r}, the run had {ids[i]!r}: "
                               "the dataset changed since training, so images cannot be shown")


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def data_uri(img: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


# -- browsing: sort, filter, pages ----------------------------------------------------------------

AS_LISTED = "as listed"
SORTS = (AS_LISTED, "confidence", "margin", "label", "index", "file name")
PAGE_SIZES = (24, 60, 120, 240, 480)


def file_name(image_id) -> str:
    """An image's file name from its id in the run (a path relative to the data root, or a
    dataset id such as 'digits:12', which is kept whole)."""
    text = str(image_id)
    return text.replace("\\", "/").rsplit("/", 1)[-1] or text


@dataclass
class GalleryPage:
    indices: np.ndarray             # image indices on this page, in order
    total: int                      # images after the filters
    page: int                       # 0-based, clamped to the pages there are
    pages: int
    first: int                      # position of the page's first image among the `total` (0-based)


def browse(table, indices=None, sort: str = AS_LISTED, descending: bool = False, labels=None, clusters=None,
           page: int = 0, per_page: int = 60) -> GalleryPage:
    """One page of a gallery of `indices` (image indices; all of the run's when None): filtered
    to the `labels` and `clusters` given (None or empty: all), sorted by one of SORTS (as listed:
    the order of `indices`; ties keep it), then cut into pages of `per_page`."""
    rows = table.set_index("index", drop=False)
    order = rows.index.to_numpy(np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    chosen = rows.loc[order]
    keep = np.ones(len(order), dtype=bool)
    if labels and "label" in chosen.columns:
        keep &= chosen["label"].isin([int(v) for v in labels]).to_numpy()
    if clusters:
        keep &= chosen["cluster"].isin([int(v) for v in clusters]).to_numpy()
    order, chosen = order[keep], chosen[keep]
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    if sort != AS_LISTED and len(order):
        if sort == "file name":
            values = chosen["id"].map(file_name).str.lower().to_numpy() if "id" in chosen.columns else order
        elif sort == "index":
            values = order
        elif sort in chosen.columns:
            values = chosen[sort].to_numpy()
        else:
            values = np.zeros(len(order))
        import pandas as pd
        ranked = pd.Series(values).sort_values(ascending=not descending, kind="mergesort").index.to_numpy()
        order = order[ranked]
    elif descending:
        order = order[::-1]
    per_page = max(1, int(per_page))
    pages = max(1, -(-len(order) // per_page))
    page = min(max(0, int(page)), pages - 1)
    first = page * per_page
    return GalleryPage(order[first:first + per_page], int(len(order)), page, pages, first)


# -- clusters ------------------------------------------------------------------------------------

@dataclass
class ClusterView:
    cluster: int
    size: int
    mean_confidence: float
    purity: float | None            # None without labels
    majority_class: int | None
    most_confident: np.ndarray      # image indices, best first
    least_confident: np.ndarray     # image indices, worst first


def cluster_view(assignments, cluster: int, n: int = 12) -> ClusterView:
    """One cluster's size, purity and its n most and n least confident images."""
    members = assignments[assignments["cluster"] == cluster]
    order = members.sort_values("confidence", ascending=False, kind="mergesort")
    stats = _stats(assignments, int(cluster) + 1)[int(cluster)]   # a cluster without members: size 0
    has_labels = "purity" in stats and len(members) > 0
    return ClusterView(
        cluster=int(cluster), size=stats["size"], mean_confidence=stats["mean_confidence"],
        purity=stats["purity"] if has_labels else None,
        majority_class=stats["majority_class"] if has_labels else None,
        most_confident=order["index"].to_numpy()[:n],
        least_confident=order["index"].to_numpy()[::-1][:n])


def cluster_table(assignments, n_clusters: int):
    """Per cluster: size, share of images, mean/min confidence, mean margin, and with labels its
    majority class and purity (metrics.cluster_stats, as metrics.json has them)."""
    import pandas as pd

    total = max(1, len(assignments))
    grouped = assignments.groupby("cluster")
    rows = []
    for stats in _stats(assignments, int(n_clusters)):
        c = stats["cluster"]
        members = grouped.get_group(c) if stats["size"] else None
        row = {"cluster": c, "size": stats["size"], "share": stats["size"] / total,
               "mean confidence": stats["mean_confidence"],
               "min confidence": float(members["confidence"].min()) if members is not None else np.nan,
               "mean margin": float(members["margin"].mean()) if members is not None else np.nan}
        if "purity" in stats:
            row["majority class"], row["purity"] = stats["majority_class"], stats["purity"]
        rows.append(row)
    return pd.DataFrame(rows)


def _stats(assignments, n_clusters: int) -> list[dict]:
    """metrics.cluster_stats of the first n_clusters clusters (at least all that have members)."""
    clusters = assignments["cluster"].to_numpy(np.int64)
    labels = assignments["label"].to_numpy(np.int64) if "label" in assignments.columns else None
    n = max(int(n_clusters), int(clusters.max()) + 1 if len(clusters) else 0)
    return cluster_stats(clusters, assignments["confidence"].to_numpy(), n, labels)[:n_clusters]


# -- neighbours ----------------------------------------------------------------------------------

def nearest(vectors: np.ndarray, index: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest images (cosine) of image `index` among `vectors`, itself excluded:
    (indices, cosines), most similar first."""
    from icbpl_core.method.neighbours import cosine_topk

    n = len(vectors)
    if not 0 <= index < n:
        raise IndexError(f"image {index} is out of range (the run has {n} images)")
    k = max(1, min(int(k), n - 1))
    query = np.asarray(vectors[index:index + 1], dtype=np.float32)
    idx, sim = cosine_topk(vectors, min(k + 1, n), queries=query)
    keep = idx[0] != index
    return idx[0][keep][:k], sim[0][keep][:k]


# -- hover atlas ---------------------------------------------------------------------------------

def _atlas_dir(run: Run):
    return run.file("thumbs")


def atlas_layout() -> dict:
    return {"cell": ATLAS_CELL, "columns": ATLAS_COLUMNS, "per_tile": ATLAS_COLUMNS * ATLAS_ROWS,
            "mime": ATLAS_FORMAT[1]}


def hover_atlas(run: Run, rows: np.ndarray | None = None, table=None) -> list[bytes]:
    """WebP tiles of ATLAS_CELL-px thumbnails of the run's images, 1,024 a tile, in index order;
    with `rows` (the rows of the assignments a decimated plot draws), of those images only, in that
    order. Cached in RUN/thumbs/ (rebuilt when the assignments or the rows change). `table`: the
    run's assignments when the caller has them already."""
    folder = _atlas_dir(run)
    manifest_path = folder / "manifest.json"
    key = _atlas_key(run, rows)
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key:
            return [(folder / name).read_bytes() for name in manifest["tiles"]]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, OSError):
        pass
    table = run.assignments() if table is None else table
    images = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(images)
    if n > ATLAS_MAX_IMAGES:
        raise GalleryError(f"{n} images is too many for hover thumbnails")
    dataset = open_run_dataset(run.config, table["id"].astype(str).tolist())
    layout = atlas_layout()
    per_tile, cell, cols = layout["per_tile"], layout["cell"], layout["columns"]
    tiles, names = [], []
    array = _as_array(dataset)
    for t, start in enumerate(range(0, n, per_tile)):
        count = min(per_tile, n - start)
        rows_here = (count + cols - 1) // cols
        canvas = Image.new("RGB", (cols * cell, rows_here * cell), (255, 255, 255))
        for j in range(count):
            thumb = _cell_image(dataset, array, int(images[start + j]), cell)
            x, y = (j % cols) * cell, (j // cols) * cell
            canvas.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        if _is_grey(dataset, array):
            canvas = canvas.convert("L")
        buffer = io.BytesIO()
        canvas.save(buffer, format=ATLAS_FORMAT[0], quality=80, method=4)
        data = buffer.getvalue()
        name = f"tile-{t:04d}.{ATLAS_FORMAT[2]}"
        atomic.write_bytes(folder / name, data)
        tiles.append(data)
        names.append(name)
    atomic.write_json(manifest_path, {"key": key, "tiles": names, **layout})
    for stale in folder.glob("tile-*"):
        if stale.name not in names:
            stale.unlink(missing_ok=True)
    return tiles


def _atlas_key(run: Run, rows: np.ndarray | None = None) -> str:
    st = run.file("assignments.csv").stat()
    key = f"v{ATLAS_VERSION}-{ATLAS_CELL}-{st.st_size}-{st.st_mtime_ns}"
    if rows is None:
        return key
    import hashlib
    digest = hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]
    return f"{key}-rows-{len(rows)}-{digest}"


def _is_grey(dataset, array) -> bool:
    if array is not None:
        return array.shape[-1] == 1
    return getattr(dataset, "mode", "RGB") == "L"


def _as_array(dataset):
    """uint8 (N, H, W, C) when the dataset holds its images in memory (fast path), else None."""
    images = getattr(dataset, "images", None)
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[0] == len(dataset):
        return images
    return None


def _cell_image(dataset, array, index: int, cell: int) -> Image.Image:
    if array is not None:
        arr = array[index]
        img = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")
        img = img.convert("RGB")
        scale = cell / max(img.size)
        resample = Image.NEAREST if scale > 1 and max(img.size) <= 16 else Image.BILINEAR
        return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)
    return dataset.thumbnail(index, cell)
