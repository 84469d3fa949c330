"""2-D UMAP (cosine) of a run's latents, fitted together with its PEDCC points, cached in
the run folder.

    proj = get_projection(run)      # loads projection-umap.npz, or fits and saves it
    proj.points     (N, 2) one row per image, in assignments order
    proj.centroids  (K, 2) the PEDCC points in the same map

The cache file records what it was computed from (the latents' and centroids' size and
mtime, the UMAP settings and, for a big run, the sampling settings), so a run that is resumed
and finishes again is re-projected.

Up to SAMPLE_ABOVE points UMAP is fitted on all latents. Above it, it is fitted on a seeded
sample of SAMPLE_SIZE latents (plus the PEDCC points), stratified by cluster so that small
clusters are in it, and the other latents are placed with UMAP's `transform`, CHUNK rows at a
time read from the memory-mapped latents.npy, so memory stays bounded whatever the run's size
(the threshold and sample size: docs/BENCHMARKS.md#a-million-points). There, cuML's UMAP (GPU)
is used when it imports and a GPU is present, umap-learn's otherwise; the procedure, and so the
cache key, is the same.
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
# Above SAMPLE_ABOVE points: fit on SAMPLE_SIZE, transform the rest CHUNK at a time; every cluster
# keeps at least SAMPLE_FLOOR points of its own in the sample (all of them when it has fewer).
SAMPLE_ABOVE = 200_000
SAMPLE_SIZE = 200_000
SAMPLE_FLOOR = 1_000
CHUNK = 50_000
SAMPLING = {"sample_above": SAMPLE_ABOVE, "sample_size": SAMPLE_SIZE, "sample_floor": SAMPLE_FLOOR,
            "chunk": CHUNK}
SAMPLE_METHOD = "cluster-stratified/transform v1"    # change when the sampled procedure changes


@dataclass
class Projection:
    points: np.ndarray       # (N, 2) float32
    centroids: np.ndarray    # (K, 2) float32
    seconds: float = 0.0     # time the fit took
    fitted: int = 0          # latents UMAP was fitted on (0: all of them; else a sample, the rest transformed)
    backend: str = "umap-learn"

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    @property
    def sampled(self) -> bool:
        return 0 < self.fitted < self.n


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def split_params(params: dict) -> tuple[dict, dict]:
    """(UMAP settings, sampling settings) of a projection's keyword arguments."""
    sampling = {**SAMPLING, **{k: v for k, v in params.items() if k in SAMPLING}}
    return {k: v for k, v in params.items() if k not in SAMPLING}, sampling


def sample_settings(n: int, seed: int, sample_above: int = SAMPLE_ABOVE, sample_size: int = SAMPLE_SIZE,
                    sample_floor: int = SAMPLE_FLOOR, chunk: int = CHUNK) -> dict | None:
    """What a sampled projection of n latents depends on, or None when all n are fitted."""
    if n <= sample_above:
        return None
    return {"method": SAMPLE_METHOD, "size": int(min(sample_size, n)), "floor": int(sample_floor),
            "chunk": int(chunk), "seed": int(seed)}


def _seed(run: Run) -> int:
    return int(run.config.get("train", {}).get("seed", 0))


def source_key(run: Run, **params) -> str:
    """What a projection of this run depends on; changes whenever the latents are rewritten, and
    with the sampling settings for a run big enough to be sampled (a smaller run's key is the same
    as before sampling existed, so its cached projection stays valid)."""
    for name in ("latents.npy", "pedcc.npy"):
        if not run.file(name).is_file():
            state = run.state
            if state == "finished":
                raise RunError(f"run {run.id} is missing its {name} (the run folder is incomplete); "
                               "train it again to see its latent space")
            raise RunError(f"run {run.id} has no {name} yet (state: {state}); "
                           "the latent space is available once training has finished")
    umap_params, sampling = split_params(params)
    key = {"version": VERSION, "latents": _stamp(run.file("latents.npy")),
           "pedcc": _stamp(run.file("pedcc.npy")), **DEFAULTS, **umap_params}
    n = int(np.load(run.file("latents.npy"), mmap_mode="r").shape[0])     # the header only
    sample = sample_settings(n, _seed(run), **sampling)
    if sample is not None:
        key["sample"] = sample
    return json.dumps(key, sort_keys=True)


def load_projection(run: Run, **params) -> Projection | None:
    """The cached projection, or None when there is none or it is out of date."""
    path = run.file(CACHE_NAME)
    try:
        key = source_key(run, **params)
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return Projection(np.asarray(data["points"], dtype=np.float32),
                              np.asarray(data["centroids"], dtype=np.float32), float(data["seconds"]),
                              int(data["fitted"]) if "fitted" in data else 0,
                              str(data["backend"]) if "backend" in data else "umap-learn")
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


def gpu_umap():
    """cuML's UMAP class when cuML imports and a GPU is present, else None (cuML is optional:
    `pip install cuml-cu12` on a machine with an NVIDIA GPU)."""
    try:
        import cupy
        from cuml.manifold import UMAP
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # noqa: BLE001 - not installed, no driver, no device: all mean "no GPU UMAP"
        return None
    return UMAP


def _as_numpy(array) -> np.ndarray:
    """A numpy array of a result that may live on the GPU (cupy's .get())."""
    get = getattr(array, "get", None)
    return np.asarray(get() if callable(get) else array, dtype=np.float32)


def _reducer(n_neighbors: int, min_dist: float, seed: int):
    """(UMAP model for a sampled fit, backend name): cuML's on a GPU, else umap-learn's, multi-threaded."""
    gpu = gpu_umap()
    if gpu is not None:
        return gpu(n_components=2, metric=DEFAULTS["metric"], n_neighbors=n_neighbors, min_dist=min_dist,
                   random_state=seed, init="spectral"), "cuml"
    import umap
    return umap.UMAP(n_components=2, metric=DEFAULTS["metric"], n_neighbors=n_neighbors, min_dist=min_dist,
                     random_state=None, n_jobs=-1, init="spectral"), "umap-learn"


def fit_sampled(latents: np.ndarray, centroids: np.ndarray, n_neighbors: int = DEFAULTS["n_neighbors"],
                min_dist: float = DEFAULTS["min_dist"], seed: int = 0, size: int = SAMPLE_SIZE,
                floor: int = SAMPLE_FLOOR, chunk: int = CHUNK,
                log=None) -> tuple[np.ndarray, np.ndarray, int, str]:
    """UMAP fitted on a seeded, cluster-stratified sample of `size` latents plus the centroids; the
    other latents are placed with `transform`, `chunk` rows at a time read from `latents` (which may
    be memory-mapped: nothing holds all of them). Returns (points, centroid points, how many latents
    were fitted, backend)."""
    from .sampling import nearest_centroid, stratified_sample

    say = log or (lambda text: None)
    n, k = len(latents), len(centroids)
    centroids = np.asarray(centroids, dtype=np.float32)
    sample = stratified_sample(nearest_centroid(latents, centroids, chunk), size, floor, seed)
    reducer, backend = _reducer(min(n_neighbors, len(sample) + k - 1), min_dist, seed)
    x = np.vstack([np.asarray(latents[sample], dtype=np.float32), centroids])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xy = _as_numpy(reducer.fit_transform(x))
        del x
        say(f"fitted UMAP ({backend}) on {len(sample):,} of {n:,} latents in {time.perf_counter() - started:.1f}s")
        points = np.empty((n, 2), dtype=np.float32)
        points[sample] = xy[: len(sample)]
        rest = np.ones(n, dtype=bool)
        rest[sample] = False
        rest = np.flatnonzero(rest)
        for start in range(0, len(rest), chunk):
            rows = rest[start:start + chunk]
            points[rows] = _as_numpy(reducer.transform(np.asarray(latents[rows], dtype=np.float32)))
            say(f"placed {min(start + chunk, len(rest)):,} of {len(rest):,} more "
                f"({time.perf_counter() - started:.0f}s)")
    return points, xy[len(sample):len(sample) + k], len(sample), backend


def compute_projection(run: Run, log=None, **params) -> Projection:
    """Fit and cache the projection (once, even when asked for concurrently)."""
    with file_lock(run.file(LOCK_NAME), timeout=None):    # a concurrent fit finishes first; then we read it
        cached = load_projection(run, **params)
        if cached is not None:
            return cached
        key = source_key(run, **params)
        umap_params, sampling = split_params(params)
        latents, seed = run.latents(), _seed(run)         # memory-mapped
        sample = sample_settings(len(latents), seed, **sampling)
        started = time.perf_counter()
        if sample is None:
            points, centroids = fit(latents, run.centroids(), seed=seed, **umap_params)
            fitted, backend = 0, "umap-learn"
        else:
            points, centroids, fitted, backend = fit_sampled(
                latents, run.centroids(), seed=seed, size=sample["size"], floor=sample["floor"],
                chunk=sample["chunk"], log=log, **umap_params)
        seconds = time.perf_counter() - started
        buffer = io.BytesIO()
        np.savez(buffer, points=points, centroids=centroids, key=np.array(key), seconds=np.array(seconds),
                 fitted=np.array(fitted), backend=np.array(backend))
        atomic.write_bytes(run.file(CACHE_NAME), buffer.getvalue())
        return Projection(points, centroids, seconds, fitted, backend)


def get_projection(run: Run, log=None, **params) -> Projection:
    return load_projection(run, **params) or compute_projection(run, log=log, **params)


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


def precompute_thumbnails(run: Run) -> list[bytes]:
    """The hover thumbnails of the points the latent page draws (all of them, or the decimated
    sample of a big run: sampling.drawn_rows), as the page asks for them."""
    from .gallery import hover_atlas
    from .sampling import drawn_rows

    table = run.assignments()
    rows = drawn_rows(table["cluster"].to_numpy())
    return hover_atlas(run, None if len(rows) == len(table) else rows, table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    thumbnails = "--no-thumbnails" not in argv
    argv = [a for a in argv if a != "--no-thumbnails"]
    if len(argv) != 1:
        print("usage: python -m icbpl_app.projection RUN_DIR [--no-thumbnails]", file=sys.stderr)
        return 2
    try:
        run = open_run(argv[0])
        proj = get_projection(run, log=lambda text: print(text, file=sys.stderr, flush=True))
        how = f", UMAP fitted on {proj.fitted:,} of them ({proj.backend})" if proj.sampled else ""
        print(f"projection of {proj.n} points ready ({proj.seconds:.1f}s{how})", file=sys.stderr)
        if thumbnails:
            precompute_thumbnails(run)
    except Exception as exc:  # noqa: BLE001 - a background helper: say what failed, in one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
