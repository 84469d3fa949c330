"""2-D UMAP (cosine) of a run's latents, fitted together with its PEDCC points, cached in
the run folder.

    proj = get_projection(run)      # loads projection-umap.npz, or fits and saves it
    proj.points     (N, 2) one row per image, in assignments order
    proj.centroids  (K, 2) the PEDCC points in the same map

The cache file records what it was computed from (the latents' and centroids' size and
mtime, the UMAP settings), so a run that is resumed and finishes again is re-projected.
It is written atomically, and a lock file makes concurrent requests (two tabs, the
background precompute) fit it once: the second waits and reads the first one's result.

`python -m icbpl_core.projection RUN_DIR` computes it (the app starts this in the
background when a run finishes, so the latent page is ready when the user opens it).
"""
from __future__ import annotations

import fcntl
import io
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .runs import Run, RunError, open_run

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
    lock = run.file(LOCK_NAME)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)       # a concurrent fit finishes first; then we read it
        try:
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
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_projection(run: Run, **params) -> Projection:
    return load_projection(run, **params) or compute_projection(run, **params)


def is_computing(run: Run) -> bool:
    """Whether some process is fitting this run's projection right now."""
    lock = run.file(LOCK_NAME)
    if not lock.is_file():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def precompute_in_background(run: Run) -> bool:
    """Start `python -m icbpl_core.projection RUN_DIR` (and the hover thumbnails) unless the
    projection is cached or being computed. Returns whether a process was started."""
    import os
    import subprocess

    from .jobs import PROJECT_ROOT, _CHILDREN

    if load_projection(run) is not None or is_computing(run):
        return False
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(run.file(LOG_NAME), "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "icbpl_core.projection", str(run.path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m icbpl_core.projection RUN_DIR", file=sys.stderr)
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
