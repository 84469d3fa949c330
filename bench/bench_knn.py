"""Nearest neighbours at scale: time, peak memory and recall@20 of the backends of
icbpl_core.method.knn on synthetic clustered vectors, and the crossover behind backend="auto".

    python bench/bench_knn.py [--quick] [--sizes 100000 1000000] [--dim 128] [--k 20]
                              [--crossover 1000 2000 5000 10000 20000 50000] [--repeats 5]
                              [--cases exact,flat,ivf[,hnsw]] [--faiss-threads T]

Data: N float32 vectors around N / 1,000 Gaussian centres (unit variance per coordinate),
each cluster with its own spread (noise standard deviation drawn in 0.5-1.5).
Every case runs in a child process of its own, so the peak RSS (ru_maxrss, read right after
the search) is that case's alone; "data MB" is the child's RSS once the vectors exist
(Python, torch and faiss included).
Rows per N:
  exact            nearest_neighbours(backend="exact") = cosine_topk; above --exact-max points
                   one block of 2,048 query rows is timed and the full time extrapolated (x N / 2,048)
  faiss flat       faiss IndexFlatIP, exact (backend="faiss" below 1,000,000 points); above
                   --exact-max points extrapolated from 2,048 query rows searched by faiss.knn
                   (the same BLAS search, without the index's copy of the vectors)
  faiss IVF        backend="faiss" from 1,000,000 points (forced below): IVF-Flat, its probe
                   count calibrated to recall@20 >= 0.99 (probes: the calibrated nprobe)
  faiss HNSW       with --cases ...,hnsw only: HNSW (M 32, efConstruction 100), efSearch
                   calibrated the same way; the alternative to IVF-Flat, not a knn backend
recall@20: on 1,000 sampled rows, against cosine_topk's neighbours of those rows in the whole set.
Crossover: exact against faiss flat, both whole, interleaved, median of --repeats.
--quick: N = 200,000, the faiss IVF row only (what a run of a million points uses); the last
line is `recall@20=<value> seconds=<value>`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from machine import machine_line  # a sibling script

from icbpl_core.method import knn
from icbpl_core.method.neighbours import cosine_topk

BLOCK = 2048            # cosine_topk's block of query rows: the unit of an extrapolated exact time
RECALL_ROWS = 1000


def clustered(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_clusters = max(10, n // 1000)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    spread = rng.uniform(0.5, 1.5, n_clusters).astype(np.float32)
    label = rng.integers(0, n_clusters, n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):        # in chunks: no temporary as large as x in the peak RSS
        part = label[start:start + 65536]
        x[start:start + len(part)] = centres[part] + spread[part, None] * rng.standard_normal(
            (len(part), dim), dtype=np.float32)
    return x


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exact_rows(x: np.ndarray, rows: np.ndarray, k: int, block_size: int = 128) -> np.ndarray:
    """cosine_topk's neighbours of some rows within the whole set (self dropped)."""
    idx, sim = cosine_topk(x, k + 1, queries=x[rows], block_size=block_size)
    return knn._drop_self(idx, sim, rows)[0]


def hnsw_search(faiss, x: np.ndarray, k: int, calibration: dict) -> np.ndarray:
    """The alternative to IVF-Flat: HNSW (M 32, efConstruction 100), efSearch raised like knn's
    nprobe until recall@k on knn's calibration rows reaches knn.RECALL_TARGET."""
    unit = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))
    index = faiss.IndexHNSWFlat(unit.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    index.add(unit)
    started = time.perf_counter()
    rows = np.sort(np.random.default_rng(1).permutation(len(x))[:knn.CALIBRATION_QUERIES])
    truth, _ = knn._exact_rows(faiss, unit, rows, k)
    for ef in (32, 48, 64, 96, 128, 192, 256, 384, 512):
        index.hnsw.efSearch = ef
        found, _ = knn._drop_self(*index.search(unit[rows], k + 1)[::-1], rows)
        if knn.recall(found, truth) >= knn.RECALL_TARGET:
            break
    calibration.update(nprobe=f"efSearch {ef}", calibration_s=time.perf_counter() - started)
    idx = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), knn.SEARCH_CHUNK):
        part = np.arange(start, min(start + knn.SEARCH_CHUNK, len(x)))
        idx[part] = knn._drop_self(*index.search(unit[part], k + 1)[::-1], part)[0]
    return idx


def run_case(case: str, n: int, dim: int, k: int, exact_max: int, threads: int) -> dict:
    """One row, in this (child) process."""
    import faiss
    if threads:
        faiss.omp_set_num_threads(threads)
    x = clustered(n, dim)
    data_mb = peak_mb()
    rows = np.sort(np.random.default_rng(7).permutation(n)[:RECALL_ROWS])
    out = {"case": case, "n": n, "data_mb": data_mb, "extrapolated": False}
    if case in ("exact", "flat") and n > exact_max:     # one block of query rows, then x N / BLOCK
        sample = np.sort(np.random.default_rng(8).permutation(n)[:BLOCK])
        started = time.perf_counter()
        if case == "exact":
            cosine_topk(x, k + 1, queries=x[sample], block_size=BLOCK)
        else:
            unit = x / np.linalg.norm(x, axis=1, keepdims=True)
            faiss.knn(unit[sample], unit, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        out.update(seconds=(time.perf_counter() - started) * n / BLOCK, peak_mb=peak_mb(), extrapolated=True,
                   recall=1.0)
        return out
    calibration = {}
    if case == "ivf":
        real = knn._calibrate_nprobe

        def timed(faiss_, index, *args):
            started = time.perf_counter()
            real(faiss_, index, *args)
            calibration.update(nprobe=faiss_.extract_index_ivf(index).nprobe,
                               calibration_s=time.perf_counter() - started)
        knn._calibrate_nprobe = timed
    backend = "exact" if case == "exact" else "faiss"
    started = time.perf_counter()
    if case == "hnsw":
        idx = hnsw_search(faiss, x, k, calibration)
    else:
        idx, _ = knn.nearest_neighbours(x, k, backend=backend, approx_from=0 if case == "ivf" else knn.APPROX_FROM)
    out.update(seconds=time.perf_counter() - started, peak_mb=peak_mb(), **calibration)
    out["recall"] = knn.recall(idx[rows], exact_rows(x, rows, k))
    return out


def child(case: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--case", case, str(n), "--dim", str(args.dim), "--k", str(args.k),
           "--exact-max", str(args.exact_max), "--faiss-threads", str(args.faiss_threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def crossover(sizes: list[int], dim: int, k: int, repeats: int) -> None:
    print(f"\ncrossover, exact (torch) against faiss flat, median of {repeats} interleaved repeats "
          "(CPU s: this process's user + system time, all threads):")
    print("| N | exact s | faiss flat s | exact / faiss | exact CPU s | faiss flat CPU s |\n|---|---|---|---|---|---|")
    for n in sizes:
        x = clustered(n, dim)
        wall, cpu = {"exact": [], "faiss": []}, {"exact": [], "faiss": []}
        knn.nearest_neighbours(x, k, backend="faiss")          # faiss loaded and warm
        for _ in range(repeats):
            for backend in ("exact", "faiss"):
                started, cpu_started = time.perf_counter(), time.process_time()
                knn.nearest_neighbours(x, k, backend=backend)
                wall[backend].append(time.perf_counter() - started)
                cpu[backend].append(time.process_time() - cpu_started)
        exact, flat = statistics.median(wall["exact"]), statistics.median(wall["faiss"])
        print(f"| {n:,} | {exact:.3f} | {flat:.3f} | {exact / flat:.1f} | {statistics.median(cpu['exact']):.3f} | "
              f"{statistics.median(cpu['faiss']):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 200,000, the faiss IVF row only")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--crossover", type=int, nargs="*", default=[1000, 2000, 5000, 10000, 20000, 50000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exact-max", type=int, default=200_000,
                        help="above this many points exact and faiss flat are extrapolated from 2,048 query rows")
    parser.add_argument("--cases", default="exact,flat,ivf",
                        help="comma-separated rows per N: exact, flat, ivf, hnsw (HNSW: not a knn backend, "
                             "the alternative IVF-Flat was chosen over)")
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="faiss's OpenMP threads (0: faiss's default, one per core, what the engine uses)")
    parser.add_argument("--case", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.dim, args.k, args.exact_max, args.faiss_threads)))
        return

    import faiss
    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)
    print(f"$ python bench/bench_knn.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {machine_line()}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    print(f"data: clustered float32, {args.dim} dims, k = {args.k}; auto = faiss from "
          f"{knn.AUTO_FAISS_FROM:,} points, IVF from {knn.APPROX_FROM:,}")
    sizes, cases = ([200_000], ["ivf"]) if args.quick else (args.sizes, args.cases.split(","))
    print("| N | backend | seconds | peak RSS MB | data MB | recall@20 | probes (calibration s) |")
    print("|---|---|---|---|---|---|---|")
    names = {"exact": "exact (torch)", "flat": "faiss flat", "ivf": "faiss IVF", "hnsw": "faiss HNSW"}
    last = None
    for n in sizes:
        for case in cases:
            row = child(case, n, args)
            seconds = f"{row['seconds']:.1f}" + (" (extrapolated)" if row["extrapolated"] else "")
            probe = f"{row['nprobe']} ({row['calibration_s']:.1f})" if "nprobe" in row else ""
            print(f"| {n:,} | {names[case]} | {seconds} | {row['peak_mb']:,.0f} | {row['data_mb']:,.0f} | "
                  f"{row['recall']:.4f} | {probe} |", flush=True)
            last = row
    if not args.quick and args.crossover:
        crossover(args.crossover, args.dim, args.k, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.quick:
        print(f"recall@20={last['recall']:.4f} seconds={last['seconds']:.1f}")


if __name__ == "__main__":
    main()
