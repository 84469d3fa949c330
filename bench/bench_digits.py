"""Digits from scratch with the CLI defaults: ACC/NMI/ARI and wall time over seeds,
next to k-means on the raw pixels measured in the same run.

    python bench/bench_digits.py [--seeds 0 1 2] [--runs-dir bench/results/digits]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from icbpl_core.method.metrics import evaluate
from machine import machine_line   # a sibling script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", default="bench/results/digits")
    parser.add_argument("extra", nargs="*", help="extra CLI options after --, e.g. -- --epochs 60")
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    rows = []
    for seed in args.seeds:
        started = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=seed).fit(x)
        rows.append({"method": "k-means (raw pixels)", "seed": seed, "seconds": time.perf_counter() - started,
                     **evaluate(y, km.labels_)})
    env = dict(os.environ)
    for seed in args.seeds:
        cmd = [sys.executable, "-m", "icbpl_core", "train", "--dataset", "digits", "--seed", str(seed),
               "--runs-dir", args.runs_dir, "--quiet", *args.extra]
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        seconds = time.perf_counter() - started
        metrics = json.loads((Path(out.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
        rows.append({"method": "ICBPL (scratch, defaults)", "seed": seed, "seconds": seconds, **metrics})
    print(f"machine: {machine_line()}; command: python bench/bench_digits.py {' '.join(sys.argv[1:])}")
    print("| method | seed | ACC | NMI | ARI | clusters used | wall s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['seed']} | {r['acc']:.4f} | {r['nmi']:.4f} | {r['ari']:.4f} | "
              f"{r['n_clusters_used']} | {r['seconds']:.1f} |")
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        med = {k: statistics.median(r[k] for r in sel) for k in ("acc", "nmi", "ari", "seconds")}
        print(f"| {method} | median | {med['acc']:.4f} | {med['nmi']:.4f} | {med['ari']:.4f} | | {med['seconds']:.1f} |")


if __name__ == "__main__":
    main()
