"""Head-only training speed: seconds per epoch over N cached feature vectors of D dims
(4 cached augmented views), next to a bare baseline measured in the same run: the same
number of forward+backward passes of the head alone, without the ICBPL losses.

    python bench/bench_head_epoch.py [--n 70000] [--dim 1280] [--epochs 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from icbpl_core.config import TrainConfig
from machine import machine_line   # a sibling script
from icbpl_core.method.model import MultiHead, ProjectionHead
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.training.sources import FeatureSource
from icbpl_core.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # ReLU-like non-negative features, as a CNN's pooled features are.
    features = np.abs(rng.standard_normal((args.n, args.dim), dtype=np.float32))
    views = features[None] + 0.1 * np.abs(rng.standard_normal((4, args.n, args.dim), dtype=np.float32))
    neighbours = rng.integers(0, args.n, (args.n, 20))
    cfg = TrainConfig(epochs=args.epochs, refresh_every=0)
    head = MultiHead(args.dim, cfg.hidden_dim, cfg.latent_dim, n_heads=1)
    head.set_input_stats(torch.from_numpy(features[:5000]))
    trainer = Trainer(head, FeatureSource(features, views), make_pedcc(10, 100), neighbours, cfg)
    trainer.fit()
    icbpl = [h["seconds"] for h in trainer.history]

    bare_head = ProjectionHead(args.dim, cfg.hidden_dim, cfg.latent_dim)
    opt = torch.optim.Adam(bare_head.parameters(), lr=1e-3)
    x = torch.from_numpy(features)
    bare = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for start in range(0, args.n - cfg.batch_size + 1, cfg.batch_size):
            batch = x[start:start + cfg.batch_size]
            loss = bare_head(torch.cat([batch, batch])).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        bare.append(time.perf_counter() - started)
    print(f"machine: {machine_line()}; N={args.n}, D={args.dim}, batch {cfg.batch_size}")
    print("| what | median s/epoch | epochs |\n|---|---|---|")
    print(f"| ICBPL head-only epoch (4 losses, views, bank) | {statistics.median(icbpl):.2f} | {icbpl} |")
    print(f"| bare head forward+backward, same batches | {statistics.median(bare):.2f} | {bare} |")
    print(f"ratio ICBPL / bare: {statistics.median(icbpl) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()
