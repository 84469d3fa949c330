"""The automatic recipe on folders none of the recipes was tuned on: what `--recipe auto` chooses,
how good that is, and how it compares with every fixed candidate and with k-means.

    python bench/bench_folders.py --out DIR                  # every folder (about an hour here)
    python bench/bench_folders.py --out DIR --folders fashion-3-classes digits-png
    python bench/bench_folders.py --out DIR --named          # also digits and Fashion-MNIST (3,000)
                                                             # with their own recipe and with auto

Folders (folders.py): digits as PNGs, Fashion-MNIST test images, random 3, 5 and 7 of its
classes, the 5-class folder at 64 px, in colour-jittered RGB and flat (unlabelled), and 7
classes at mixed sizes. K is each folder's number of classes.

For each folder: `icbpl train --dataset folder --data-root F --n-clusters K` (the auto recipe,
the default for folders), then the same with each other candidate fixed (`--backbone C` and the
values auto would set with it), each scored against the true classes kept beside the folder
(the tool never sees them for the flat folder); k-means (n_init=10) on each candidate's features.
The choice's own scores of every candidate are recorded, so the table also shows which
unsupervised criterion would have picked the best candidate how often.

Writes OUT/results.json and OUT/table.md (also printed).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

import folders   # a sibling script
from machine import machine_line   # a sibling script
from icbpl_core.method.metrics import evaluate
from icbpl_core.datasets import load_dataset
from icbpl_core.training.choice import CANDIDATES, CRITERION, SCORES, candidate_values

NAMED = (("digits", None), ("fashion-mnist", 3000))


def icbpl(*args: str) -> Path:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "icbpl_core", "train", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"icbpl train {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    print(f"  {time.perf_counter() - started:6.0f} s  {' '.join(args)}", flush=True)
    return Path(done.stdout.strip().splitlines()[-1])


def scored(run: Path, truth: dict[str, int] | None) -> dict:
    """ACC and NMI of a run against the true classes (by file name for folders) and k-means on its features."""
    table = pd.read_csv(run / "assignments.csv")
    labels = table["label"].to_numpy() if truth is None else table["id"].map(truth).to_numpy()
    k = int(json.loads((run / "config.json").read_text())["train"]["n_clusters"])
    icbpl = evaluate(labels, table["cluster"].to_numpy(), k)
    features = np.load(run / "features.npy").astype(np.float32)
    kmeans = evaluate(labels, KMeans(k, n_init=10, random_state=0).fit_predict(features), k)
    status = json.loads((run / "status.json").read_text())
    return {"acc": icbpl["acc"], "nmi": icbpl["nmi"], "kmeans_acc": kmeans["acc"], "kmeans_nmi": kmeans["nmi"],
            "seconds": status.get("seconds"), "run": str(run)}


def fixed_args(choice: dict, name: str, folder: Path) -> list[str]:
    """The options that pin candidate `name`, with everything else as auto would set it."""
    dataset = load_dataset("folder", str(folder))
    values = candidate_values(name, dataset, choice["scores"][name].get("neighbours_from"))
    return [arg for key, value in values.items() if value is not None
            for arg in (f"--{key.replace('_', '-')}", str(value))]


def bench_folder(name: str, data: Path, runs: Path, seed: int) -> dict:
    folder = folders.build(name, data)
    truth, k = folders.true_labels(folder), folders.n_classes(folder)
    print(f"{name}: {len(truth):,} images, {k} classes", flush=True)
    common = ["--dataset", "folder", "--data-root", str(folder), "--n-clusters", str(k), "--seed", str(seed),
              "--runs-dir", str(runs)]
    auto = icbpl(*common)
    choice = json.loads((auto / "choice.json").read_text())
    results = {choice["chosen"]: scored(auto, truth)}
    for candidate in choice["scores"]:
        if candidate not in results:
            results[candidate] = scored(icbpl(*common, *fixed_args(choice, candidate, folder)), truth)
    return {"folder": name, "description": folders.FOLDERS[name][0], "images": len(truth), "k": k,
            "choice": choice, "candidates": results}


def bench_named(dataset: str, limit: int | None, runs: Path, seed: int) -> dict:
    common = ["--dataset", dataset, "--seed", str(seed), "--runs-dir", str(runs)] + (
        ["--limit", str(limit)] if limit else [])
    own = scored(icbpl(*common, "--recipe", "dataset"), None)
    auto_run = icbpl(*common, "--recipe", "auto")
    return {"dataset": dataset, "limit": limit, "own": own, "auto": scored(auto_run, None),
            "choice": json.loads((auto_run / "choice.json").read_text())}


def criterion_table(rows: list[dict]) -> list[str]:
    """How often each criterion's favourite is the candidate with the best ACC, and its mean ACC."""
    lines = ["| criterion | picks the best candidate | mean ACC of its picks |", "|---|---|---|"]
    for criterion in SCORES:
        hits, accs = 0, []
        for row in rows:
            scores, results = row["choice"]["scores"], row["candidates"]
            pick = max(scores, key=lambda c: scores[c][criterion])
            best = max(results, key=lambda c: results[c]["acc"])
            hits += pick == best
            accs.append(results[pick]["acc"])
        mark = " (used)" if criterion == CRITERION else ""
        lines.append(f"| {criterion}{mark} | {hits} of {len(rows)} | {np.mean(accs):.3f} |")
    return lines


def render(rows: list[dict], named: list[dict]) -> str:
    names = list(CANDIDATES)
    head = ("| folder | images | K | auto chose | auto ACC / NMI | "
            + " | ".join(f"{n} ACC / NMI" for n in names)
            + " | k-means ACC (auto's features) | choosing s | run s | best fixed |")
    lines = [head, "|" + "---|" * (9 + len(names))]
    for row in rows:
        res, chosen = row["candidates"], row["choice"]["chosen"]
        best = max(res, key=lambda c: res[c]["acc"])
        cells = [f"{res[n]['acc']:.3f} / {res[n]['nmi']:.3f}" + (" *" if n == chosen else "") if n in res else ""
                 for n in names]
        lines.append(f"| {row['folder']} | {row['images']:,} | {row['k']} | {chosen} | "
                     f"**{res[chosen]['acc']:.3f}** / {res[chosen]['nmi']:.3f} | " + " | ".join(cells)
                     + f" | {res[chosen]['kmeans_acc']:.3f} | {row['choice']['seconds']:.0f} | "
                     f"{res[chosen]['seconds']:.0f} | {best}{' (auto)' if best == chosen else ''} |")
    matched = sum(max(r["candidates"], key=lambda c: r["candidates"][c]["acc"]) == r["choice"]["chosen"]
                  for r in rows)
    out = [f"Machine: {machine_line()}", "", *lines, "",
           f"Auto matched the best fixed candidate on {matched} of {len(rows)} folders.", "",
           *criterion_table(rows)]
    if named:
        out += ["", "| data set | own recipe ACC / NMI | auto chose | auto ACC / NMI |", "|---|---|---|---|"]
        for row in named:
            label = row["dataset"] + (f" ({row['limit']:,} images)" if row["limit"] else "")
            out.append(f"| {label} | {row['own']['acc']:.3f} / {row['own']['nmi']:.3f} | {row['choice']['chosen']} | "
                       f"{row['auto']['acc']:.3f} / {row['auto']['nmi']:.3f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", type=Path, help="where the folders are written (default OUT/data)")
    parser.add_argument("--folders", nargs="*", default=list(folders.FOLDERS), choices=list(folders.FOLDERS))
    parser.add_argument("--named", action="store_true", help="also digits and Fashion-MNIST: own recipe vs auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data, runs = args.data or args.out / "data", args.out / "runs"
    path = args.out / "results.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"folders": [], "named": []}
    done = {row["folder"] for row in saved["folders"]}
    for name in args.folders:
        if name not in done:      # a rerun continues where an interrupted one stopped
            saved["folders"].append(bench_folder(name, data, runs, args.seed))
            path.write_text(json.dumps(saved, indent=1))
    if args.named:
        for dataset, limit in NAMED:
            if dataset not in {row["dataset"] for row in saved["named"]}:
                saved["named"].append(bench_named(dataset, limit, runs, args.seed))
                path.write_text(json.dumps(saved, indent=1))
    rows = [r for r in saved["folders"] if r["folder"] in args.folders]
    text = render(rows, saved["named"])
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
