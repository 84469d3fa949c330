"""Feature extraction speed: full extraction (uint8 images -> features) against the backbone's
bare forward pass on the same batches prepared beforehand, measured in one run.

    python bench/bench_extract.py [--n 5000] [--size 96] [--backbone mobilenet_v2] [--repeats 3]
                                  [--precision auto|fp32|bf16] [--device cpu|cuda|cuda:N|mps]
                                  [--data-root DIR] [--random-weights]

Images: the first N Fashion-MNIST test+train images (28x28 grey) when the files are
found (--data-root, the Debian package dataset-fashion-mnist, or ./data), else random ones of
that size. --device runs the backbone there (the preparation stays on the CPU, as in training's
extraction); --precision auto means bf16 where the device runs it natively. --random-weights
builds the backbone without its pretrained weights (same speed; for backbones whose weights
are not on the machine).
Rows (median and best over repeats, interleaved so that drift in machine load hits all alike):
  bare forward      backbone(x) over batches prepared beforehand (the ceiling), channels-last
                    and in the same precision as the extract rows; the first --keep of them
                    are reused in turn, so holding them costs no memory traffic
  extract           features.extract(): uint8 -> float, resize, normalise in a background
                    thread overlapping the forward pass (what head-only training runs)
  extract + augment the same with the dataset's augmentation (the cached views)
  extract, serial   prefetch=0: preparation in line with the forward pass, for comparison
  extract_dataset   features.extract_dataset(): images decoded one by one by a thread pool
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from machine import machine_line  # a sibling script

from icbpl_core.backbones import create_backbone
from icbpl_core.datasets.base import ArrayDataset
from icbpl_core.features.extract import (
    PRECISIONS,
    extract,
    extract_dataset,
    resolve_precision,
)
from icbpl_core.method.augment import get_augmentation


def load_images(n: int, root: str | None = None) -> tuple[np.ndarray, str]:
    try:
        from icbpl_core.datasets.mnist import load_fashion_mnist
        data = load_fashion_mnist(root)
        return np.ascontiguousarray(data.images[:n]), "Fashion-MNIST"
    except Exception:  # noqa: BLE001 - no data files: random images of the same shape
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), "random 28x28 grey"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=96, help="backbone input size")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="precision of every row, bare pass included (auto: bf16 where the CPU has it)")
    parser.add_argument("--keep", type=int, default=4,
                        help="prepared batches kept in memory for the bare pass, reused in turn (0: all; "
                             "holding all 5000 prepared images, 550 MB at 96 px, slowed the bare pass here)")
    parser.add_argument("--rows", default="bare,extract,augment,serial,dataset",
                        help="comma-separated subset of: bare, extract, augment, serial, dataset")
    parser.add_argument("--device", default="cpu", help="where the backbone runs: cpu, cuda, cuda:N or mps")
    parser.add_argument("--data-root", default=None, help="folder holding the Fashion-MNIST idx files")
    parser.add_argument("--random-weights", action="store_true",
                        help="the backbone without its pretrained weights (speed only)")
    args = parser.parse_args()
    rows = args.rows.split(",")
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)

    def sync() -> None:   # GPU work is queued: a timing ends when it has run
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    images, source = load_images(args.n, args.data_root)
    n = len(images)
    backbone = create_backbone(args.backbone, pretrained=not args.random_weights)
    backbone.eval().to(device=device, memory_format=torch.channels_last)
    aug_name, augment = get_augmentation("auto", images.shape[-1], images.shape[1])
    print(f"$ python bench/bench_extract.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {machine_line()}")
    print(f"{args.backbone} at {args.size}px, {n} {source} images, batch {args.batch_size}, "
          f"{args.repeats} repeats, {precision}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))

    starts = list(range(0, n, args.batch_size))
    kept = starts[:args.keep] if args.keep else starts
    with torch.inference_mode():
        prepared = {s: backbone.prepare(torch.from_numpy(images[s:s + args.batch_size]).permute(0, 3, 1, 2)
                                        .float().div_(255.0), args.size).contiguous(memory_format=torch.channels_last)
                    .to(device) for s in kept}

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    with torch.inference_mode(), autocast():
        backbone(prepared[0][:8])                            # warm-up (allocator, kernels)
        if device.type != "cpu":                             # and the full batch's kernels
            backbone(prepared[0])
    sync()

    def bare() -> None:
        # Batches of the same sizes as extract's; the first `keep` prepared ones are reused in turn.
        with torch.inference_mode(), autocast():
            for i, s in enumerate(starts):
                x = prepared[kept[i % len(kept)]]
                backbone(x[:min(args.batch_size, n - s)])

    dataset = ArrayDataset("bench", images)
    runs = {
        "bare": ("bare forward (pre-prepared)", bare),
        "extract": ("extract", lambda: extract(backbone, images, size=args.size, batch_size=args.batch_size,
                                        precision=precision)),
        "augment": (f"extract + augment ({aug_name})",
                    lambda: extract(backbone, images, augment, seed=1, size=args.size, batch_size=args.batch_size,
                                    precision=precision)),
        "serial": ("extract, serial (prefetch=0)",
                   lambda: extract(backbone, images, size=args.size, batch_size=args.batch_size, prefetch=0,
                                   precision=precision)),
        "dataset": ("extract_dataset (lazy, decoded per image)",
                    lambda: extract_dataset(backbone, dataset, input_size=args.size, batch_size=args.batch_size,
                                            precision=precision)),
    }
    times: dict[str, list[float]] = {r: [] for r in rows}
    cpu: dict[str, list[float]] = {r: [] for r in rows}
    for _ in range(args.repeats):
        for row in rows:
            started, cpu_started = time.perf_counter(), time.process_time()
            runs[row][1]()
            sync()
            times[row].append(time.perf_counter() - started)
            cpu[row].append(time.process_time() - cpu_started)

    def rate(row: str, pick) -> float:
        return n / pick(times[row])
    print(f"\n| {'measurement':42s} | median s | images/s | vs bare | best: images/s | vs bare | CPU s |")
    print(f"|{'-' * 44}|---------:|---------:|--------:|---------------:|--------:|------:|")
    for row in rows:
        med, best = rate(row, statistics.median), rate(row, min)
        vs = (f"{100 * med / rate('bare', statistics.median):6.1f} %", f"{100 * best / rate('bare', min):6.1f} %") \
            if "bare" in times else ("   -", "   -")
        print(f"| {runs[row][0]:42s} | {statistics.median(times[row]):8.2f} | {med:8.1f} | {vs[0]} | "
              f"{best:14.1f} | {vs[1]} | {statistics.median(cpu[row]):5.1f} |")
    print("\nall runs (wall s): " + "; ".join(f"{r}: {', '.join(f'{t:.2f}' for t in times[r])}" for r in rows))
    print("CPU s is the process's CPU time (all threads). On a machine shared with other work the wall\n"
          "times vary from run to run: compare rows within one run, and prefer the best-of column.")


if __name__ == "__main__":
    main()
