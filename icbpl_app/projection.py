"""2-D UMAP (cosine) of a run's latents, fitted together with its PEDCC points, cached in
the run folder.

    proj = get_projection(run)      # loads projection-umap.npz, or fits and saves it
    proj.points     (N, 2) one row per image, in assignments order
    proj.centroids  (K, 2) the PEDCC points in the same map

The cache file records what it was computed from (the latents' and centroids' size and
mtime, the UMAP settings), so a run that is resumed and finishes again is re-projected.
It is written atomically, and a lock file makes concurrent requests (two tabs, the
background precompute) fit it once: the second waits and reads the first one's result.

`python -m icbpl_app.projection RUN_DIR` computes it (the app starts this in the
background when a run finishes, so the latent page is ready when the user opens it).
"""
from __future__ import annotations

import io
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icbpl_core.errors import RunError
from icbpl_core.store import atomic
from icbpl_core.store.locks import file_lock, is_locked
from icbpl_core.store.runs import Run, open_run

from .processes import spawn

CACHE_NAME = "projection-umap.npz"
LOCK_NAME = ".projection.lock"
LOG_NAME = "projection.log"
VERSION = 1
DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine"}
# Above this many points UMAP runs multi-threaded (not bit-reproducible, much faster).
SEEDED_MAX_POINTS = 20_000


@dataclass
class Projection:
    points: np.ndarray       # (N, 2) float32
    centroids: np.ndarray    # (K, 2) float32
    seconds: float = 0.0     # time the fit took

    @property
    def n(self) -> int:
        return int(self.points.shape[0])


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def source_key(run: Run, **params) -> str:
    """What a projection of this run depends on; changes whenever the latents are rewritten."""
    for name in ("latents.npy", "pedcc.npy"):
        if not run.file(name).is_file():
            state = run.state
            if state == "finished":
                raise RunError(f"run {run.id} is missing its {name} (the run folder is incomplete); "
                               "train it again to see its latent space")
            raise RunError(f"run {run.id} has no {name} yet (state: {state}); "
                           "the latent space is available once training has finished")
    return json.dumps({"version": VERSION, "latents": _stamp(run.file("latents.npy")),
                       "pedcc": _stamp(run.file("pedcc.npy")), **DEFAULTS, **params}, sort_keys=True)


def load_projection(run: Run, **params) -> Projection | None:
    """The cached projection, or None when there is none or it is out of date."""
    path = run.file(CACHE_NAME)
    try:
        key = source_key(run, **params)
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return Projection(np.asarray(data["points"], dtype=np.float32),
                              np.asarray(data["centroids"], dtype=np.float32), float(data["seconds"]))
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None


def fit(latents: np.ndarray, centroids: np.ndarray, n_neighbors: int = DEFAULTS["n_neighbors"],
        min_dist: float = DEFAULTS["min_dist"], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """UMAP (cosine) of latents and centroids stacked together; returns their 2-D points."""
    import umap

    x = np.vstack([np.asarray(latents, dtype=np.float32), np.asarray(centroids, dtype=np.float32)])
    n = x.shape[0]
    if n < 4:   # UMAP needs a few points; a tiny set is laid out on a circle
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        xy = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
    else:
        seeded = n <= SEEDED_MAX_POINTS
        reducer = umap.UMAP(n_components=2, metric=DEFAULTS["metric"], n_neighbors=min(n_neighbors, n - 1),
                            min_dist=min_dist, random_state=seed if seeded else None,
                            n_jobs=1 if seeded else -1, init="spectral" if n > 20 else "random")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy = reducer.fit_transform(x).astype(np.float32)
    k = len(centroids)
    return xy[: n - k], xy[n - k:]


def compute_projection(run: Run, **params) -> Projection:
    """Fit and cache the projection (once, even when asked for concurrently)."""
    with file_lock(run.file(LOCK_NAME), timeout=None):    # a concurrent fit finishes first; then we read it
        cached = load_projection(run, **params)
        if cached is not None:
            return cached
        key = source_key(run, **params)
        started = time.perf_counter()
        points, centroids = fit(run.latents(), run.centroids(),
                                seed=int(run.config.get("train", {}).get("seed", 0)), **params)
        seconds = time.perf_counter() - started
        buffer = io.BytesIO()
        np.savez(buffer, points=points, centroids=centroids, key=np.array(key), seconds=np.array(seconds))
        atomic.write_bytes(run.file(CACHE_NAME), buffer.getvalue())
        return Projection(points, centroids, seconds)


def get_projection(run: Run, **params) -> Projection:
    return load_projection(run, **params) or compute_projection(run, **params)


def is_computing(run: Run) -> bool:
    """Whether some process is fitting this run's projection right now."""
    return is_locked(run.file(LOCK_NAME))


def precompute_in_background(run: Run) -> bool:
    """Start `python -m icbpl_app.projection RUN_DIR` (and the hover thumbnails) unless the
    projection is cached or being computed. Returns whether a process was started."""
    if load_projection(run) is not None or is_computing(run):
        return False
    spawn("icbpl_app.projection", [str(run.path)], run.file(LOG_NAME))
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m icbpl_app.projection RUN_DIR", file=sys.stderr)
        return 2
    try:
        run = open_run(argv[0])
        proj = get_projection(run)
        print(f"projection of {proj.n} points ready ({proj.seconds:.1f}s)", file=sys.stderr)
        from .gallery import hover_atlas
        hover_atlas(run)
    except Exception as exc:  # noqa: BLE001 - a background helper: say what failed, in one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
