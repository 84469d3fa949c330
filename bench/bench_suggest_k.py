"""Suggest K against the true number of classes: `icbpl suggest-k` on digits, 10,000 Fashion-MNIST
images, a folder of 3 classes and a flat (unlabelled) folder of 5, and which K each unsupervised
criterion it records would have suggested.

    python bench/bench_suggest_k.py --out DIR                 # features from a fresh cache (cold)
    python bench/bench_suggest_k.py --out DIR --warm          # the default feature cache
    python bench/bench_suggest_k.py --out DIR --cases digits fashion-3-classes

Folders are written by folders.py under --data (default OUT/data) unless already there. The
true K is known to this script only; the tool sees the images alone.

Writes OUT/results.json and OUT/table.md (also printed).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import folders   # a sibling script
from machine import machine_line   # a sibling script
from icbpl_core.training.suggest_k import CRITERION, K_MAX, K_MIN

# name -> (icbpl options, or a folders.py folder to write; true K)
CASES = {
    "digits": (["--dataset", "digits"], 10),
    "fashion-mnist-10000": (["--dataset", "fashion-mnist", "--limit", "10000"], 10),
    "fashion-3-classes": ("fashion-3-classes", 3),
    "fashion-5-classes-flat": ("fashion-5-classes-flat", 5),
}
COMPARED = ("stability", "view_consistency", "silhouette", "balance", "loss")


def by_criterion(scores: dict, name: str) -> int:
    """The K a criterion alone would suggest (its highest value; ties to the larger K)."""
    best = max(s[name] for s in scores.values())
    return max(int(k) for k, s in scores.items() if s[name] >= best - 0.005)


def largest_all_used(scores: dict) -> int:
    return max((int(k) for k, s in scores.items() if s["used"] >= 1.0), default=K_MIN)


def run_case(name: str, args: list[str], out: Path, cache: Path | None) -> dict:
    result = out / f"{name}.json"
    command = [sys.executable, "-m", "icbpl_core", "suggest-k", *args, "--k-min", str(K_MIN), "--k-max", str(K_MAX),
               "--out", str(result), "--quiet", *(["--cache-dir", str(cache)] if cache else [])]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    suggestion = json.loads(result.read_text())
    assert int(done.stdout.strip().splitlines()[-1]) == suggestion["k"]
    print(f"  {seconds:6.0f} s  {name}: K = {suggestion['k']}", flush=True)
    return {**suggestion, "wall_seconds": round(seconds, 1)}


def table(results: dict) -> list[str]:
    head = ("| images | true K | suggested K | seconds | backbone | "
            + " | ".join(f"by {c.replace('_', ' ')}" for c in COMPARED) + " | largest K all used |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        by = [by_criterion(r["scores"], c) for c in COMPARED]
        lines.append(f"| {name} ({r['images']:,}) | {r['true_k']} | **{r['k']}** | {r['wall_seconds']:.0f} | "
                     f"{r['backbone']} | " + " | ".join(map(str, by)) + f" | {largest_all_used(r['scores'])} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", type=Path, help="where the folders are (written if missing; default OUT/data)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--warm", action="store_true", help="use the default feature cache (else a fresh one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or args.out / "data"
    cache = None if args.warm else args.out / "cache"
    print(f"Machine: {machine_line()}", flush=True)
    results = {}
    for name in args.cases:
        what, true_k = CASES[name]
        options = what if isinstance(what, list) else ["--dataset", "folder", "--data-root",
                                                        str(folders.build(what, data))]
        results[name] = {**run_case(name, options, args.out, cache), "true_k": true_k}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [f"Machine: {machine_line()}; {date.today()}; K from {K_MIN} to {K_MAX}; criterion {CRITERION}; "
             f"{'warm' if args.warm else 'cold'} feature cache", "", *table(results)]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
