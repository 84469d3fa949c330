"""The latent space at a million points: projection and latent page of a synthetic 1,000,000-image
run, against a 70,000-image baseline built the same way and measured in the same run.

    python bench/bench_million.py [--n 1000000] [--baseline 70000] [--repeats 2] [--work DIR]
                                  [--max-drawn M ...] [--keep-projection] [--fit-curve N ...] [--no-pages]

Builds two synthetic run folders (bench_million.make_run): what a finished Fashion-MNIST-like
run writes (config.json, status.json, events.jsonl, pedcc.npy, latents.npy N x 128 float32,
assignments.csv, metrics.json), with clustered latents around K = 10 PEDCC points (sub-modes
per class, 8 % of the images drawn from another class's modes, so clusters and labels
disagree as a real run's do) and a data folder of Fashion-MNIST idx files holding one
Fashion-MNIST image of each image's class, so galleries and hover thumbnails show pictures.
Needs Debian's `dataset-fashion-mnist` (or the idx files in ./data/FashionMNIST/raw).

Stages, each in its own process (peak RSS from wait4):
  projection  `python -m icbpl_app.projection RUN --no-thumbnails`: the UMAP of the run
  thumbnails  the hover thumbnail tiles of the points the page draws
  page alone  bench_latent_page.alone: a fresh `streamlit run app.py` asked for the latent page
              only, in Chromium: seconds until drawn, and the server's peak RSS
  page        bench_latent_page.measure: first visit, visits (coming from the Export page, which
              builds the whole CSV), fresh page loads, a box selection until its gallery shows
              (which reopens the run's images) and a hover thumbnail; the server's peak RSS
              before the selection and at the end
--max-drawn measures the big run's page (and thumbnails) at several draw limits
(ICBPL_LATENT_MAX_POINTS); --fit-curve times umap-learn, with the app's settings, fitted on N of
the big run's latents, each N in its own process (--no-pages: only that).
Runs are kept in --work (default bench/results/million) and reused when their size matches.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DIM, K, SUBMODES, WRONG = 128, 10, 4, 0.08
MODE_SPREAD, NOISE = 0.6, 0.9       # cosine of a mode to its PEDCC point ~0.86; confidence median ~0.64
CHUNK = 100_000


def _fashion_images() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 70,000 images and labels (the registry's loader, system copy included)."""
    from icbpl_core.datasets import load_dataset

    data = load_dataset("fashion-mnist", None, None, 0, download=False)
    return data.images[..., 0], data.labels


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (the format the MNIST loaders read): magic, big-endian dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(memoryview(array).cast("B"))
    tmp.replace(path)


def make_run(folder: Path, n: int, seed: int = 0) -> Path:
    """A finished synthetic run of n images in `folder` (its data in folder/data); returns the run folder."""
    from icbpl_core.config import RunSpec
    from icbpl_core.method.metrics import cluster_stats, evaluate, matched_classes
    from icbpl_core.method.pedcc import make_pedcc
    from icbpl_core.store import atomic
    from icbpl_core.store.runs import Run

    run_dir, data_dir = folder / f"synthetic-{n}", folder / "data"
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    pedcc = make_pedcc(K, DIM, seed=seed)
    # sub-modes: each class's points gather around a few directions near its PEDCC point
    modes = pedcc[:, None, :] + MODE_SPREAD * rng.standard_normal((K, SUBMODES, DIM)).astype(np.float32) / np.sqrt(DIM)
    modes /= np.linalg.norm(modes, axis=2, keepdims=True)
    labels = rng.integers(0, K, n)
    source = np.where(rng.random(n) < WRONG, rng.integers(0, K, n), labels)   # whose modes the latent follows
    mode = rng.integers(0, SUBMODES, n)
    spread = rng.uniform(0.6, 1.4, n).astype(np.float32)
    latents = np.lib.format.open_memmap(run_dir / "latents.npy.tmp", mode="w+", dtype=np.float32, shape=(n, DIM))
    clusters = np.empty(n, np.int64)
    confidence = np.empty(n, np.float32)
    margin = np.empty(n, np.float32)
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        noise = rng.standard_normal((e - s, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
        z = modes[source[s:e], mode[s:e]] + noise * spread[s:e, None]
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        latents[s:e] = z
        sims = z @ pedcc.T
        top2 = np.sort(sims, axis=1)[:, -2:]
        clusters[s:e] = sims.argmax(axis=1)
        confidence[s:e], margin[s:e] = top2[:, 1], top2[:, 1] - top2[:, 0]
    latents.flush()
    del latents
    os.replace(run_dir / "latents.npy.tmp", run_dir / "latents.npy")
    atomic.save_npy(run_dir / "pedcc.npy", pedcc)

    # images: one Fashion-MNIST image of each image's class, as the idx files the loader reads
    fm_images, fm_labels = _fashion_images()
    by_class = [np.flatnonzero(fm_labels == c) for c in range(K)]
    pick = np.empty(n, np.int64)
    for c in range(K):
        members = np.flatnonzero(labels == c)
        pick[members] = rng.choice(by_class[c], size=len(members))
    n_test = min(10_000, n // 7)
    images = fm_images[pick]
    _write_idx(data_dir / "train-images-idx3-ubyte", images[: n - n_test])
    _write_idx(data_dir / "t10k-images-idx3-ubyte", images[n - n_test:])
    _write_idx(data_dir / "train-labels-idx1-ubyte", labels[: n - n_test])
    _write_idx(data_dir / "t10k-labels-idx1-ubyte", labels[n - n_test:])
    del images

    import pandas as pd

    spec = RunSpec.from_dict({"dataset": "fashion-mnist", "data_root": str(data_dir), "backbone": "mobilenet_v2_mid",
                              "image_size": 96, "train": {"n_clusters": K, "latent_dim": DIM, "seed": seed}})
    run = Run(run_dir)
    atomic.write_json(run.file("config.json"), spec.to_dict())
    table = pd.DataFrame({"index": np.arange(n), "id": [f"fashion-mnist:{i}" for i in range(n)],
                          "cluster": clusters, "confidence": confidence.round(6), "margin": margin.round(6),
                          "label": labels})
    matched = matched_classes(labels, clusters, K)
    table["matched_class"] = matched[clusters]
    atomic.write_text(run.file("assignments.csv"), table.to_csv(index=False))
    from icbpl_core.datasets.mnist import FASHION_CLASSES
    metrics = {"n_clusters": K, "n_samples": n, "n_clusters_used": int(np.unique(clusters).size),
               "mean_confidence": float(confidence.mean()), "epochs": 60, "views_averaged": 4, "threads": 2,
               **evaluate(labels, clusters, K), "matched_classes": matched.tolist(),
               "class_names": FASHION_CLASSES, "clusters": cluster_stats(clusters, confidence, K, labels)}
    atomic.write_json(run.file("metrics.json"), metrics)
    now = time.time()
    events = ({"type": "start", "resume": False, "device": "cpu"},
              {"type": "data", "n_images": n, "shape": [28, 28, 1], "labels": True, "backbone": "mobilenet_v2_mid",
               "mode": "head", "augment": "grey", "streamed": False},
              {"type": "done", "seconds": 0.0, **{k: metrics[k] for k in ("acc", "nmi", "ari")}})
    run.file("events.jsonl").write_text("".join(json.dumps({"time": now, **e}) + "\n" for e in events))
    run.set_status("finished", epoch=60, epochs=60, started_at=None, finished_at=None, seconds=0.0)
    return run_dir


def _peaks(pid: int, peaks: dict, done: threading.Event) -> None:
    """Poll a process's anonymous and file-backed resident memory (the memory-mapped latents and the
    libraries are file-backed: clean pages the kernel can drop), keeping their peaks in MiB."""
    while not done.wait(0.2):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            for field, name in (("RssAnon:", "anon_mb"), ("RssFile:", "file_mb")):
                if line.startswith(field):
                    peaks[name] = max(peaks.get(name, 0.0), int(line.split()[1]) / 1024)


def stage(name: str, args: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `python ARGS` to its end; its wall time, peak RSS (wait4's ru_maxrss) and the peaks of
    its anonymous and file-backed parts (polled)."""
    started = time.perf_counter()
    peaks: dict = {}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        done = threading.Event()
        poller = threading.Thread(target=_peaks, args=(proc.pid, peaks, done), daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        poller.join()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{log.read_text()[-3000:]}")
    result = {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, **peaks,
              "cpu_seconds": usage.ru_utime + usage.ru_stime, "load_after": os.getloadavg()[0]}
    print(f"  {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def fit_point(latents_path: str, n: int, chunk: int) -> None:
    """One point of the fit curve (run in its own process by `--fit-curve`): UMAP, as the app fits
    it for a big run, on a seeded sample of n latents plus the PEDCC points, then one transform of
    `chunk` other latents (when there are that many left); prints the seconds of each (numba's
    compilation warmed on 2,000 first). n = all latents: the whole fit, as for a small run."""
    import warnings

    from icbpl_app import projection

    warnings.simplefilter("ignore")
    latents = np.load(latents_path, mmap_mode="r")
    centroids = np.load(latents_path.replace("latents.npy", "pedcc.npy"))
    warm, _ = projection._reducer(15, 0.1, 0)
    warm.fit_transform(np.asarray(latents[:2000]))
    chunk = min(chunk, len(latents) - n)
    rows = np.random.default_rng(0).choice(len(latents), n + chunk, replace=False)
    fitted, other = np.sort(rows[:n]), np.sort(rows[n:])
    reducer, _ = projection._reducer(15, 0.1, 0)
    started = time.perf_counter()
    reducer.fit_transform(np.vstack([np.asarray(latents[fitted]), centroids]))
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    if chunk:
        reducer.transform(np.asarray(latents[other]))
    print(json.dumps({"n": n, "fit_s": fit_s, "transform_s": time.perf_counter() - started if chunk else None,
                      "chunk": chunk}))


THUMBNAILS = ("import sys; from icbpl_app.projection import precompute_thumbnails; "
              "from icbpl_core.store.runs import open_run; precompute_thumbnails(open_run(sys.argv[1]))")


def measure_run(run_dir: Path, args, work: Path, max_drawn: int, project: bool) -> dict:
    """Projection (when `project`, else the cached one), thumbnails and page of one run."""
    import bench_latent_page

    from icbpl_app import projection

    env = {"ICBPL_LATENT_MAX_POINTS": str(max_drawn)}
    out: dict = {"run": run_dir.name, "max_drawn": max_drawn}
    if project or not (run_dir / projection.CACHE_NAME).is_file():
        (run_dir / projection.CACHE_NAME).unlink(missing_ok=True)
        out["projection"] = stage("projection", ["-m", "icbpl_app.projection", str(run_dir), "--no-thumbnails"],
                                  work / f"{run_dir.name}-projection.log")
    import shutil
    shutil.rmtree(run_dir / "thumbs", ignore_errors=True)
    out["thumbnails"] = stage("thumbnails", ["-c", THUMBNAILS, str(run_dir)],
                              work / f"{run_dir.name}-thumbnails.log", env)
    os.environ["ICBPL_LATENT_MAX_POINTS"] = str(max_drawn)     # the page's server inherits it
    pages = work / "page"
    pages.mkdir(exist_ok=True)
    import tempfile
    with tempfile.TemporaryDirectory(dir=pages) as tmp:
        out["alone"] = bench_latent_page.alone(run_dir, Path(tmp))
        out["page"] = bench_latent_page.measure(run_dir, args.repeats, Path(tmp), interact=True,
                                                shot=work / f"{run_dir.name}-latent-{max_drawn}.png")
    print(f"  page alone: {json.dumps(out['alone'])}", file=sys.stderr, flush=True)
    print(f"  page: {json.dumps(out['page'])}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--fit-point"]:          # one point of --fit-curve, in its own process
        fit_point(sys.argv[2], int(sys.argv[3]), 50_000)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=70_000, help="0: no baseline")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-drawn", type=int, nargs="+", default=None,
                        help="draw limits to measure the big run's page with (default: the app's)")
    parser.add_argument("--keep-projection", action="store_true", help="reuse a cached projection")
    parser.add_argument("--fit-curve", type=int, nargs="+", default=None, metavar="N",
                        help="also time UMAP fits on N of the big run's latents (and one transform chunk)")
    parser.add_argument("--no-pages", action="store_true", help="build the runs, measure only the fit curve")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "million")
    args = parser.parse_args()
    from bench_latent_page import CHROMIUM
    from machine import machine_line

    from icbpl_app import sampling

    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    loads = [os.getloadavg()[0]]
    for n in filter(None, (args.baseline, args.n)):
        folder = args.work / f"n{n}"
        run_dir = folder / f"synthetic-{n}"
        if not (run_dir / "assignments.csv").is_file():
            started = time.perf_counter()
            make_run(folder, n)
            print(f"built {run_dir} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        limits = args.max_drawn if n == args.n and args.max_drawn else [sampling.MAX_DRAWN]
        for i, limit in enumerate([] if args.no_pages else limits):
            print(f"{run_dir.name}, drawing at most {limit:,}", file=sys.stderr, flush=True)
            results.append(measure_run(run_dir, args, args.work, limit, project=i == 0 and not args.keep_projection))
            loads.append(os.getloadavg()[0])
    curve = []
    for n in args.fit_curve or []:
        log = args.work / f"fit-{n}.log"
        latents = args.work / f"n{args.n}" / f"synthetic-{args.n}" / "latents.npy"
        usage = stage(f"fit {n:,}", [str(Path(__file__).resolve()), "--fit-point", str(latents), str(n)], log)
        curve.append({**json.loads(log.read_text().strip().splitlines()[-1]), **usage})
        loads.append(os.getloadavg()[0])
    name = "results-fit.json" if args.no_pages else "results.json"
    (args.work / name).write_text(json.dumps({"runs": results, "fit_curve": curve}, indent=1))

    print(f"$ python bench/bench_million.py {' '.join(sys.argv[1:])}")
    print(machine_line())
    print(f"Chromium headless ({CHROMIUM}, software WebGL), {args.repeats} repeats; seconds, peak RSS in MiB; "
          f"1-minute load average {min(loads):.1f} to {max(loads):.1f} (sampled between runs)")
    if results:
        print("| run | points drawn | projection s (CPU s) | peak RSS (anon + file) | thumbnails s | peak RSS | "
              "page alone: cold load | server peak RSS | first visit | visit (median) | fresh load (median) | "
              "server peak RSS, with Export | box select -> gallery | hover thumbnail | server peak RSS, with the gallery |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            page, proj = r["page"], r.get("projection")
            drawn = min(page["n"], r["max_drawn"])
            print(f"| {r['run']} | {drawn:,} of {page['n']:,} | "
                  + (f"{proj['seconds']:.0f} ({proj['cpu_seconds']:.0f}) | {proj['peak_rss_mb']:,.0f} ({proj.get('anon_mb', 0):,.0f} + "
                     f"{proj.get('file_mb', 0):,.0f}) | " if proj else "(same) | | ")
                  + f"{r['thumbnails']['seconds']:.0f} | {r['thumbnails']['peak_rss_mb']:,.0f} | "
                  f"{r['alone']['cold_load']:.2f} | {r['alone']['server_peak_rss_mb']:,.0f} | {page['first']:.2f} | "
                  f"{statistics.median(page['visit']):.2f} | {statistics.median(page['load']):.2f} | "
                  f"{page['server_peak_rss_page_mb']:,.0f} | "
                  f"{page['select']:.2f} ({page['selected']:,} images) | {'yes' if page['hover'] else 'no'} | "
                  f"{page['server_peak_rss_mb']:,.0f} |")
    if curve:
        print("\nUMAP fit on a sample of the big run's latents (+ PEDCC), then one transform of up to 50,000 others")
        print("| latents fitted | fit s | transform s (rows) | process peak RSS (anon + file) |\n|---|---|---|---|")
        for c in curve:
            moved = f"{c['transform_s']:.1f} ({c['chunk']:,})" if c["transform_s"] is not None else "(none left)"
            print(f"| {c['n']:,} | {c['fit_s']:.0f} | {moved} | {c['peak_rss_mb']:,.0f} "
                  f"({c.get('anon_mb', 0):,.0f} + {c.get('file_mb', 0):,.0f}) |")


if __name__ == "__main__":
    main()
