"""A trained run's results, written into its folder: latents, PEDCC points, backbone features,
assignments (cluster, confidence, margin per image) and metrics."""
from __future__ import annotations

import numpy as np
import torch

from ..method.metrics import cluster_stats, evaluate, matched_classes
from ..store import atomic
from ..store.runs import Run
from .inputs import check_finite
from .sources import FeatureSource
from .trainer import Trainer


def write_results(run: Run, trainer: Trainer, dataset, centroids: np.ndarray, model, source, spec) -> dict:
    """Write the result files atomically; returns metrics.json's content."""
    import pandas as pd

    cfg = spec.train
    views = [source.fixed_view(v) for v in range(spec.n_views)] if spec.average_views else []
    z = trainer.latents(views).cpu()
    sims = (z @ torch.from_numpy(centroids).T).numpy()
    top2 = np.sort(sims, axis=1)[:, -2:]
    clusters = sims.argmax(axis=1)
    confidence, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
    z = z.numpy()
    check_finite(z)
    atomic.save_npy(run.file("latents.npy"), z.astype(np.float32))
    atomic.save_npy(run.file("pedcc.npy"), centroids)
    atomic.save_npy(run.file("features.npy"), backbone_features(model, source).astype(np.float16))
    table = pd.DataFrame({"index": np.arange(len(dataset)),
                          "id": [dataset.item_id(i) for i in range(len(dataset))],
                          "cluster": clusters, "confidence": confidence.round(6), "margin": margin.round(6)})
    metrics: dict = {"n_clusters": cfg.n_clusters, "n_samples": len(dataset),
                     "n_clusters_used": int(np.unique(clusters).size),
                     "mean_confidence": float(confidence.mean()), "epochs": trainer.epoch,
                     "views_averaged": len(views),
                     "threads": torch.get_num_threads()}   # float sums, so the last digits, depend on it
    labels = dataset.labels
    if labels is not None:
        metrics.update(evaluate(labels, clusters, cfg.n_clusters))
        matched = matched_classes(labels, clusters, cfg.n_clusters)
        table["label"] = labels
        table["matched_class"] = matched[clusters]
        metrics["matched_classes"] = matched.tolist()
    metrics["class_names"] = dataset.class_names
    metrics["clusters"] = cluster_stats(clusters, confidence, cfg.n_clusters, labels)
    atomic.write_text(run.file("assignments.csv"), table.to_csv(index=False))
    atomic.write_json(run.file("metrics.json"), metrics)
    return metrics


@torch.no_grad()
def backbone_features(model, source) -> np.ndarray:
    """Features in the backbone's space: cached ones, or the trained backbone's on the images."""
    if isinstance(source, FeatureSource):
        return source.features.cpu().numpy()
    model.eval()
    n = len(source)
    device = next(model.parameters()).device
    return torch.cat([model.backbone(source.anchors(torch.arange(s, min(s + 1024, n))).to(device)).float().cpu()
                      for s in range(0, n, 1024)]).numpy()
