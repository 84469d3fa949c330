"""Retraining from corrections, with a simulated person: does a run guided by a few corrected
images beat the run it came from, and beat simply applying those corrections to its labels?

For each data set and seed: train a run (unassisted); then for each budget (a fraction of the
images), a person looks at the least confident images of every cluster (budget x N / K each)
and, knowing the true labels, verifies those whose class is the one their cluster stands for
(Hungarian matching) and moves the others to the cluster that stands for their class. Those
edits go into a copy of the run's curation log, and `icbpl retrain` trains a new run from it
with each guide compared. Reported ACC:

  all images         a run's own clusters (for "edits applied": the curated labelling)
  not looked at      the same on the images the person did not look at

    python bench/bench_corrections.py --out DIR
    python bench/bench_corrections.py --out DIR --cases digits --seeds 0 1 2 --budgets 0.01 0.05
    python bench/bench_corrections.py --out DIR --cases fashion-mnist --guides anchor

Writes OUT/results.json and OUT/table.md (also printed).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from machine import machine_line   # a sibling script
from icbpl_core.method.metrics import evaluate
from icbpl_core.store.curation import Curation
from icbpl_core.store.runs import open_run

CASES = {
    "digits": ["--dataset", "digits"],
    "fashion-mnist-10000": ["--dataset", "fashion-mnist", "--limit", "10000"],
    "fashion-mnist": ["--dataset", "fashion-mnist"],
}
# name -> retrain options
GUIDES = {
    "anchor": ["--guide", "anchor", "--w-guide", "1"],
    "anchor w5": ["--guide", "anchor", "--w-guide", "5"],
    "must-link": ["--guide", "must-link"],
    "both": ["--guide", "both", "--w-guide", "1"],
    "anchor, warm start": ["--guide", "anchor", "--w-guide", "1", "--warm-start"],
}
RUN_FILES_SKIPPED = ("checkpoint.prev.pt", "curation.jsonl", ".curation.lock", ".training.lock")


def icbpl(*args: str) -> Path:
    """Run the command line; the run folder it prints last."""
    command = [sys.executable, "-m", "icbpl_core", *args, "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def simulate_person(run_dir: Path, budget: float) -> np.ndarray:
    """Write the person's edits into run_dir's curation log; returns the indices they looked at."""
    run = open_run(run_dir)
    table = run.assignments()
    clusters, labels = table["cluster"].to_numpy(), table["label"].to_numpy()
    matched = np.asarray(run.metrics["matched_classes"])           # cluster -> the class it stands for
    cluster_of_class = {int(c): k for k, c in enumerate(matched) if c >= 0}
    k = len(matched)
    per_cluster = max(1, round(budget * len(table) / k))
    looked = []
    for cluster in range(k):
        members = np.flatnonzero(clusters == cluster)
        looked += members[np.argsort(table["confidence"].to_numpy()[members])[:per_cluster]].tolist()
    looked = np.asarray(looked)
    curation = Curation(run)
    right = looked[matched[clusters[looked]] == labels[looked]]
    if len(right):
        curation.flag(right, "verified")
    for label in np.unique(labels[looked]):
        wrong = looked[(labels[looked] == label) & (matched[clusters[looked]] != label)]
        if len(wrong) and int(label) in cluster_of_class:
            curation.move(wrong, cluster_of_class[int(label)])
    return looked


def scores(run_dir: Path, looked: np.ndarray, curated: np.ndarray | None = None) -> dict:
    table = open_run(run_dir).assignments()
    labels, clusters = table["label"].to_numpy(), table["cluster"].to_numpy()
    rest = np.setdiff1d(np.arange(len(table)), looked)
    out = {"model": evaluate(labels, clusters)["acc"], "untouched": evaluate(labels[rest], clusters[rest])["acc"]}
    if curated is not None:
        out["+ edits"] = evaluate(labels, curated)["acc"]
    return {k: round(float(v), 4) for k, v in out.items()}


def with_edits(run_dir: Path, source: Path) -> np.ndarray:
    """run_dir's clusters with the person's decisions from `source`'s log applied (same ids)."""
    clusters = open_run(run_dir).assignments()["cluster"].to_numpy().copy()
    state = Curation(open_run(source)).state()
    decided = (state.flag == "verified") | (state.cluster != state.raw)
    clusters[decided] = state.cluster[decided]
    return clusters


def run_case(name: str, seed: int, budgets: list[float], guides: list[str], out: Path) -> dict:
    runs = out / "runs" / name
    started = time.perf_counter()
    source = icbpl("train", *CASES[name], "--seed", str(seed), "--runs-dir", str(runs))
    result = {"seed": seed, "unassisted": scores(source, np.array([], int)),
              "train_seconds": round(time.perf_counter() - started, 1), "budgets": {}}
    print(f"{name} seed {seed}: unassisted {result['unassisted']['model']:.4f}", flush=True)
    for budget in budgets:
        curated = runs / f"{source.name}-person-{budget:g}"
        shutil.copytree(source, curated, ignore=shutil.ignore_patterns(*RUN_FILES_SKIPPED))
        looked = simulate_person(curated, budget)
        state = Curation(open_run(curated)).state()
        row = {"looked": len(looked), "moved": int((state.cluster != state.raw).sum()),
               "no retraining": scores(curated, looked, state.cluster), "guides": {}}
        for guide in guides:
            started = time.perf_counter()
            retrained = icbpl("retrain", str(curated), *GUIDES[guide], "--seed", str(seed))
            row["guides"][guide] = {**scores(retrained, looked, with_edits(retrained, curated)),
                                    "seconds": round(time.perf_counter() - started, 1)}
            print(f"  {budget:.0%} {guide}: {row['guides'][guide]}", flush=True)
        result["budgets"][f"{budget:g}"] = row
    return result


def table(results: dict) -> str:
    """One row per data set, budget and variant: median ACC over the seeds (each seed in brackets)."""
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({' / '.join(f'{v:.3f}' for v in values)})"
    lines = ["| data | budget: images looked at (moved) | variant | ACC, all images | ACC, images not looked at |",
             "|---|---|---|---|---|"]
    for name, seeds in results.items():
        lines.append(f"| {name} | - | unassisted | {cell([s['unassisted']['model'] for s in seeds])} | |")
        for budget in seeds[0]["budgets"]:
            rows = [s["budgets"][budget] for s in seeds]
            where = f"{float(budget):.0%}: {rows[0]['looked']:,} ({', '.join(str(r['moved']) for r in rows)})"
            lines.append(f"| {name} | {where} | edits applied, no retraining | "
                         f"{cell([r['no retraining']['+ edits'] for r in rows])} | "
                         f"{cell([r['no retraining']['untouched'] for r in rows])} |")
            for guide in dict.fromkeys(g for r in rows for g in r["guides"]):    # a guide some seeds ran
                ran = [(s["seed"], r["guides"][guide]) for s, r in zip(seeds, rows) if guide in r["guides"]]
                label = guide + ("" if len(ran) == len(rows) else f", seed{'s' if len(ran) > 1 else ''} "
                                 + " and ".join(str(seed) for seed, _ in ran))
                lines.append(f"| {name} | {where} | retrained: {label} | {cell([g['model'] for _, g in ran])} | "
                             f"{cell([g['untouched'] for _, g in ran])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cases", nargs="+", default=["digits", "fashion-mnist-10000"], choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.01, 0.05])
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=list(GUIDES))
    parser.add_argument("--table-from", type=Path, metavar="RESULTS.json", help="only print the table of earlier results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_from:
        results = json.loads(args.table_from.read_text())
    else:
        results = {name: [run_case(name, seed, args.budgets, args.guides, args.out) for seed in args.seeds]
                   for name in args.cases}
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
    seeds = [s["seed"] for s in next(iter(results.values()))]
    text = (f"{date.today()}, {machine_line()}\n\nmedian ACC over seeds {seeds} (per seed in brackets)\n\n"
            + table(results))
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
