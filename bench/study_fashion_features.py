"""Which MobileNetV2 features cluster Fashion-MNIST best? (the study behind the 96 px
default, and the leads for issue 5)

    python bench/study_fashion_features.py [--sizes 64,96,128] [--n 10000]

On the last N Fashion-MNIST images (the test set), for each input size: global-average-
pooled outputs of blocks 13, 16, 17 and 18 (the final 1280-d features) and their
concatenations, each L2-normalised, scored by
  knn20    share of the 20 cosine nearest neighbours with the same label (the quality of the
           neighbours the kNN loss pulls toward)
  kmeans   Hungarian ACC of k-means (n_init=3, seed 0)
  probe    logistic regression trained on the first half, accuracy on the second
and the neighbours of the final features fused with the centred pixels (equal weight).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from icbpl_core.backbones import create_backbone  # noqa: E402
from icbpl_core.datasets.mnist import load_fashion_mnist  # noqa: E402
from icbpl_core.metrics import cluster_accuracy  # noqa: E402
from icbpl_core.neighbours import cosine_topk  # noqa: E402

TAPS = (13, 16, 17, 18)


def l2(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)


def pooled_blocks(images: np.ndarray, size: int) -> dict[int, np.ndarray]:
    backbone = create_backbone("mobilenet_v2")
    backbone.eval()
    out: dict[int, torch.Tensor] = {}
    for i in TAPS:
        backbone.trunk.features[i].register_forward_hook(lambda m, a, o, i=i: out.__setitem__(i, o.mean((2, 3))))
    store: dict[int, list[np.ndarray]] = {i: [] for i in TAPS}
    with torch.inference_mode():
        for s in range(0, len(images), 250):
            x = torch.from_numpy(images[s:s + 250]).permute(0, 3, 1, 2).float() / 255
            backbone(backbone.prepare(x, size))
            for i in TAPS:
                store[i].append(out[i].numpy())
    return {i: np.concatenate(v) for i, v in store.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--n", type=int, default=10000)
    args = parser.parse_args()
    data = load_fashion_mnist()
    images, y = data.images[-args.n:], data.labels[-args.n:]
    half = args.n // 2

    def purity(F: np.ndarray) -> float:
        return float((y[cosine_topk(F, 20)[0]] == y[:, None]).mean())

    def score(name: str, F: np.ndarray) -> None:
        F = l2(F.astype(np.float32))
        km = cluster_accuracy(y, KMeans(10, n_init=3, random_state=0).fit_predict(F))
        probe = LogisticRegression(max_iter=300).fit(F[:half], y[:half]).score(F[half:], y[half:])
        print(f"{name:28s} dim {F.shape[1]:5d}  knn20 {purity(F):.3f}  kmeans {km:.3f}  probe {probe:.3f}", flush=True)

    pixels = images.reshape(len(y), -1).astype(np.float32)
    pixels = l2(pixels - pixels.mean(axis=0))
    print(f"pixels (centred)             knn20 {purity(pixels):.3f}")
    for size in map(int, args.sizes.split(",")):
        started = time.time()
        F = pooled_blocks(images, size)
        print(f"--- size {size}: {time.time() - started:.0f}s", flush=True)
        for i in TAPS:
            score(f"{size}px block{i}", F[i])
        score(f"{size}px cat16+17+18", np.concatenate([l2(F[i]) for i in (16, 17, 18)], 1))
        score(f"{size}px cat13..18", np.concatenate([l2(F[i]) for i in TAPS], 1))
        score(f"{size}px block18 pca128w", PCA(128, whiten=True, random_state=0).fit_transform(l2(F[18])))
        for name, feats in (("block18", l2(F[18])), ("cat13..18", l2(np.concatenate([l2(F[i]) for i in TAPS], 1)))):
            print(f"{size}px {name} + pixels       knn20 {purity(np.concatenate([feats, pixels], 1)):.3f}")


if __name__ == "__main__":
    main()
