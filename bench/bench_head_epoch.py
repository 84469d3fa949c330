"""Head-only training speed: seconds per epoch over N cached feature vectors of D dims
(4 cached augmented views), next to a bare baseline measured in the same run: the same
number of forward+backward passes of the head alone, without the ICBPL losses.

    python bench/bench_head_epoch.py [--n 70000] [--dim 1280] [--epochs 3] [--device cpu|cuda|cuda:N|mps]

--device trains there, as `icbpl train --device` does (features moved onto the GPU when they fit,
the forward pass under bf16 autocast); the bare baseline runs on the same device and precision.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from machine import machine_line  # a sibling script

from icbpl_core.config import TrainConfig
from icbpl_core.method.model import MultiHead, ProjectionHead
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.training.sources import FeatureSource
from icbpl_core.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # ReLU-like non-negative features, as a CNN's pooled features are.
    features = np.abs(rng.standard_normal((args.n, args.dim), dtype=np.float32))
    views = features[None] + 0.1 * np.abs(rng.standard_normal((4, args.n, args.dim), dtype=np.float32))
    neighbours = rng.integers(0, args.n, (args.n, 20))
    cfg = TrainConfig(epochs=args.epochs, refresh_every=0)
    head = MultiHead(args.dim, cfg.hidden_dim, cfg.latent_dim, n_heads=1)
    head.set_input_stats(torch.from_numpy(features[:5000]))
    on = {}
    if args.device != "cpu":
        from icbpl_core.training.device import placement
        on = {"place": placement(args.device)}
    trainer = Trainer(head, FeatureSource(features, views), make_pedcc(10, 100), neighbours, cfg, **on)
    trainer.fit()
    icbpl = [h["seconds"] for h in trainer.history]

    device = on["place"].device if on else torch.device("cpu")
    amp = on["place"].amp_dtype if on else None
    bare_head = ProjectionHead(args.dim, cfg.hidden_dim, cfg.latent_dim).to(device)
    opt = torch.optim.Adam(bare_head.parameters(), lr=1e-3)
    x = torch.from_numpy(features).to(device)
    bare = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for start in range(0, args.n - cfg.batch_size + 1, cfg.batch_size):
            batch = x[start:start + cfg.batch_size]
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = bare_head(torch.cat([batch, batch])).float().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        bare.append(time.perf_counter() - started)
    where = f"; device {on['place'].describe()}" if on else ""
    print(f"machine: {machine_line()}; N={args.n}, D={args.dim}, batch {cfg.batch_size}{where}")
    print("| what | median s/epoch | epochs |\n|---|---|---|")
    print(f"| ICBPL head-only epoch (4 losses, views, bank) | {statistics.median(icbpl):.2f} | {icbpl} |")
    print(f"| bare head forward+backward, same batches | {statistics.median(bare):.2f} | {bare} |")
    print(f"ratio ICBPL / bare: {statistics.median(icbpl) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()
