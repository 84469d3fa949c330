"""Which MobileNetV2 features cluster Fashion-MNIST best? (the study behind the 96 px
default and the mobilenet_v2_mid feature tap)

    python bench/study_fashion_features.py [--sizes 64,96,128] [--n 10000] [--taps 13,16,17,18] [--grids 3]

On the last N Fashion-MNIST images (the test set), for each input size: global-average-
pooled outputs of MobileNetV2 blocks (--taps; block 18 gives the final 1280-d features),
their concatenations, and each block's map average-pooled to a G x G grid for each G of
--grids (where in the image each part sits; "gridG"), each L2-normalised, scored by
  knn20    share of the 20 cosine nearest neighbours with the same label (the quality of the
           neighbours the kNN loss pulls toward)
  kmeans   Hungarian ACC of k-means (n_init=3, seed 0)
  probe    logistic regression trained on the first half, accuracy on the second
and the neighbours of the final features fused with the centred pixels (equal weight).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from icbpl_core.backbones import create_backbone
from icbpl_core.datasets.mnist import load_fashion_mnist
from icbpl_core.method.metrics import cluster_accuracy
from icbpl_core.method.neighbours import cosine_topk


def l2(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)


def pooled_blocks(images: np.ndarray, size: int, taps: list[int], grids: list[int]) -> dict[str, np.ndarray]:
    """{"<i>": global average of block i's map, "<i>grid<g>": the map pooled to g x g, flattened}."""
    backbone = create_backbone("mobilenet_v2")
    backbone.eval()
    maps: dict[int, torch.Tensor] = {}
    for i in taps:
        backbone.trunk.features[i].register_forward_hook(lambda m, a, o, i=i: maps.__setitem__(i, o))
    store: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for s in range(0, len(images), 250):
            x = torch.from_numpy(images[s:s + 250]).permute(0, 3, 1, 2).float() / 255
            backbone(backbone.prepare(x, size))
            for i in taps:
                store.setdefault(str(i), []).append(maps[i].mean((2, 3)).numpy())
                for g in grids:
                    store.setdefault(f"{i}grid{g}", []).append(
                        torch.nn.functional.adaptive_avg_pool2d(maps[i], g).flatten(1).numpy())
    return {key: np.concatenate(v) for key, v in store.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--taps", default="13,16,17,18", help="MobileNetV2 blocks (0-18) to read")
    parser.add_argument("--grids", default="3", help="grid sides each block's map is pooled to")
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
    taps, grids = [int(t) for t in args.taps.split(",")], [int(g) for g in args.grids.split(",")]
    for size in map(int, args.sizes.split(",")):
        started = time.time()
        F = pooled_blocks(images, size, taps, grids)
        print(f"--- size {size}: {time.time() - started:.0f}s", flush=True)
        for i in taps:
            score(f"{size}px block{i}", F[str(i)])
            for g in grids:
                score(f"{size}px block{i} grid{g}", F[f"{i}grid{g}"])
        if len(taps) > 1:
            score(f"{size}px cat{'+'.join(map(str, taps))}", np.concatenate([l2(F[str(i)]) for i in taps], 1))
        if 18 in taps:
            score(f"{size}px block18 pca128w", PCA(128, whiten=True, random_state=0).fit_transform(l2(F["18"])))
            print(f"{size}px block18 + pixels       knn20 {purity(np.concatenate([l2(F['18']), pixels], 1)):.3f}")


if __name__ == "__main__":
    main()
