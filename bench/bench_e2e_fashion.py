"""End to end through the CLI on real data: Fashion-MNIST from the Debian package with
`--limit N`, and the same N images written as a folder of PNG files (the path users with
their own images take). Next to each ICBPL run, k-means (n_init=10) on the same features
the run started from (the frozen backbone's features, or the centred pixels for a scratch encoder).

    python bench/bench_e2e_fashion.py [--limit 5000] [--seeds 0 1 2] [--backbones mobilenet_v2 scratch]
                                      [--image-size 96]

The folder holds the `--limit N --seed 0` subset, so the seed-0 runs of both sources
cluster exactly the same images; other seeds draw another balanced subset from the
dataset (the folder stays the same). Wall time is the run's own (status.json: loading,
feature extraction with an empty cache for each call, training). Finished runs already
under --out are reused, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.cluster import KMeans

ROOT = Path(__file__).resolve().parents[1]
from icbpl_core.datasets import load_dataset
from icbpl_core.method.metrics import evaluate
from bench_suite import input_features   # sibling scripts (bench/ is this script's folder)
from machine import machine_line


def write_png_folder(limit: int, out: Path) -> Path:
    """The `--limit N --seed 0` subset as <class name>/<id>.png, 8-bit grey."""
    dataset = load_dataset("fashion-mnist", limit=limit, seed=0)
    for i in range(len(dataset)):
        cls = dataset.class_names[dataset.labels[i]].replace("/", "-")
        path = out / cls / f"{dataset.item_id(i)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.image(i).save(path)
    return out


def train(source: list[str], backbone: str, seed: int, runs_dir: Path, extra: list[str]) -> Path:
    """One CLI run with an empty feature cache of its own (deleted afterwards)."""
    cmd = [sys.executable, "-m", "icbpl_core", "train", *source, "--backbone", backbone, "--seed", str(seed),
           "--runs-dir", str(runs_dir), "--quiet", *extra]
    with tempfile.TemporaryDirectory(prefix="icbpl-cache-") as cache:
        env = {**os.environ, "ICBPL_CACHE_DIR": cache}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1])


def kmeans_on_run_features(run_dir: Path, seed: int) -> tuple[dict, float]:
    features, _ = input_features(run_dir)
    labels = pd.read_csv(run_dir / "assignments.csv")["label"].to_numpy()
    started = time.perf_counter()
    predicted = KMeans(10, n_init=10, random_state=seed).fit_predict(features)
    return evaluate(labels, predicted), time.perf_counter() - started


def finished_runs(runs_dir: Path) -> dict[tuple[str, str, int], Path]:
    """(dataset, backbone, seed) -> run folder, for the finished runs already in `runs_dir`."""
    found = {}
    for run_dir in sorted(runs_dir.glob("*/")):
        try:
            config = json.loads((run_dir / "config.json").read_text())
            if json.loads((run_dir / "status.json").read_text()).get("state") == "finished":
                found[(config["dataset"], config["backbone"], config["train"]["seed"])] = run_dir
        except (OSError, ValueError, KeyError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "scratch"])
    parser.add_argument("--sources", nargs="+", default=["fashion-mnist", "folder"], choices=["fashion-mnist", "folder"])
    parser.add_argument("--image-size", type=int, default=96,
                        help="input side for pretrained backbones (28 px images upsampled; 0: the backbone's own)")
    parser.add_argument("--out", default="bench/results/e2e-fashion",
                        help="PNG folder and run folders; finished runs found there are reused, not retrained")
    args = parser.parse_args()
    out = Path(args.out)
    folder = out / f"fashion-mnist-{args.limit}-png"
    if not folder.is_dir():
        write_png_folder(args.limit, folder)
    sources = {"fashion-mnist": ["--dataset", "fashion-mnist", "--limit", str(args.limit)],
               "folder": ["--dataset", "folder", "--data-root", str(folder)]}
    rows = []
    for backbone in args.backbones:
        for source_name in args.sources:
            for seed in args.seeds:
                run_dir = finished_runs(out / "runs").get((source_name, backbone, seed))
                if run_dir is None:
                    extra = ["--image-size", str(args.image_size)] if args.image_size and backbone != "scratch" else []
                    run_dir = train(sources[source_name], backbone, seed, out / "runs", extra)
                metrics = json.loads((run_dir / "metrics.json").read_text())
                seconds = json.loads((run_dir / "status.json").read_text())["seconds"]
                km, km_seconds = kmeans_on_run_features(run_dir, seed)
                config = json.loads((run_dir / "config.json").read_text())
                size = f" {config['image_size']}px" if config["image_size"] else ""
                common = {"source": "folder of PNGs" if source_name == "folder" else source_name,
                          "backbone": backbone + size, "mode": config["mode"], "seed": seed}
                rows.append({**common, "method": "k-means", "seconds": km_seconds, **km})
                rows.append({**common, "method": "ICBPL", "seconds": seconds, **metrics})
                print(f"{source_name} {backbone} seed {seed}: ICBPL {metrics['acc']:.3f} k-means {km['acc']:.3f} "
                      f"({seconds:.0f} s) {run_dir}", file=sys.stderr, flush=True)
    print(f"machine: {machine_line()}; command: python bench/bench_e2e_fashion.py {' '.join(sys.argv[1:])}".rstrip())
    print("| source | backbone (mode) | method | seed | ACC | NMI | ARI | wall s |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['backbone']} ({r['mode']}) | {r['method']} | {r['seed']} | {r['acc']:.4f} | "
              f"{r['nmi']:.4f} | {r['ari']:.4f} | {r['seconds']:.1f} |")
    print("\nmedians over seeds:\n| source | backbone (mode) | method | ACC | NMI | ARI | wall s |\n"
          "|---|---|---|---|---|---|---|")
    for key in dict.fromkeys((r["source"], r["backbone"], r["mode"], r["method"]) for r in rows):
        sel = [r for r in rows if (r["source"], r["backbone"], r["mode"], r["method"]) == key]
        med = {k: statistics.median(r[k] for r in sel) for k in ("acc", "nmi", "ari", "seconds")}
        print(f"| {key[0]} | {key[1]} ({key[2]}) | {key[3]} | {med['acc']:.4f} | {med['nmi']:.4f} | "
              f"{med['ari']:.4f} | {med['seconds']:.1f} |")


if __name__ == "__main__":
    main()
