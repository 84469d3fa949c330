"""One process against several (torchrun, gloo on the CPU): digits with the CLI defaults over
seeds, ACC/NMI and wall time, both measured in the same run.

    python bench/bench_processes.py [--processes 2] [--seeds 0 1 2] [--runs-dir bench/results/processes]

Every process gets OMP_NUM_THREADS=1, so the two settings use the same number of cores per
process; the several-process runs split each global batch between the processes.
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

from machine import machine_line   # a sibling script


def train(seed: int, processes: int, runs_dir: str) -> dict:
    cmd = [sys.executable, "-m", "icbpl_core", "train", "--dataset", "digits", "--device", "cpu", "--seed", str(seed),
           "--gpus", str(processes), "--runs-dir", runs_dir, "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        sys.exit(done.stderr)
    metrics = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
    return {"processes": processes, "seed": seed, "acc": metrics["acc"], "nmi": metrics["nmi"],
            "world_size": metrics["world_size"], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", default="bench/results/processes")
    args = parser.parse_args()
    print(machine_line())
    rows = [train(seed, n, args.runs_dir) for seed in args.seeds for n in (1, args.processes)]
    for row in rows:
        print(f"{row['processes']} process(es)  seed {row['seed']}  ACC {row['acc']:.4f}  NMI {row['nmi']:.4f}  "
              f"{row['seconds']:.0f} s")
    for n in (1, args.processes):
        mine = [r for r in rows if r["processes"] == n]
        print(f"median over seeds, {n} process(es): ACC {statistics.median(r['acc'] for r in mine):.4f}  "
              f"NMI {statistics.median(r['nmi'] for r in mine):.4f}  "
              f"time {statistics.median(r['seconds'] for r in mine):.0f} s")


if __name__ == "__main__":
    main()
