"""Clustering metrics: Hungarian ACC, many-to-one ACC, NMI, ARI, contingency, per-cluster stats."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(labels: np.ndarray, clusters: np.ndarray, n_classes: int | None = None,
                n_clusters: int | None = None) -> np.ndarray:
    """Counts table C[cluster, class]."""
    labels, clusters = _check(labels, clusters)
    n_classes = n_classes or int(labels.max()) + 1
    n_clusters = n_clusters or int(clusters.max()) + 1
    table = np.zeros((n_clusters, n_classes), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    return table


def hungarian_match(table: np.ndarray) -> dict[int, int]:
    """Best one-to-one cluster -> class mapping on a contingency table C[cluster, class]."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """ACC: fraction correct under the best one-to-one matching of clusters to classes."""
    table = contingency(labels, clusters)
    mapping = hungarian_match(table)
    return float(sum(table[r, c] for r, c in mapping.items()) / table.sum())


def many_to_one_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Each cluster takes its majority class (several clusters may share one)."""
    table = contingency(labels, clusters)
    return float(table.max(axis=1).sum() / table.sum())


def evaluate(labels: np.ndarray, clusters: np.ndarray, n_clusters: int | None = None) -> dict:
    """ACC, many-to-one ACC, NMI, ARI, and the number of non-empty clusters."""
    labels, clusters = _check(labels, clusters)
    return {
        "acc": cluster_accuracy(labels, clusters),
        "acc_many_to_one": many_to_one_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "n_clusters_used": int(np.unique(clusters).size),
        "n_clusters": int(n_clusters) if n_clusters else int(clusters.max()) + 1,
        "n_samples": int(labels.size),
    }


def matched_classes(labels: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """For each cluster, its Hungarian-matched class (-1 where a cluster got no class)."""
    table = contingency(labels, clusters, n_clusters=n_clusters)
    out = np.full(n_clusters, -1, dtype=np.int64)
    for cluster, cls in hungarian_match(table).items():
        out[cluster] = cls
    return out


def cluster_stats(clusters: np.ndarray, confidence: np.ndarray, n_clusters: int,
                  labels: np.ndarray | None = None) -> list[dict]:
    """Per cluster: size, mean confidence, and (with labels) majority class and purity."""
    clusters = np.asarray(clusters, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    table = contingency(labels, clusters, n_clusters=n_clusters) if labels is not None else None
    stats = []
    for c in range(n_clusters):
        members = clusters == c
        size = int(members.sum())
        row = {"cluster": c, "size": size,
               "mean_confidence": float(confidence[members].mean()) if size else float("nan")}
        if table is not None:
            row["majority_class"] = int(table[c].argmax()) if size else -1
            row["purity"] = float(table[c].max() / size) if size else float("nan")
        stats.append(row)
    return stats


def _check(labels: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    clusters = np.asarray(clusters, dtype=np.int64).ravel()
    if labels.shape != clusters.shape:
        raise ValueError(f"labels and clusters differ in length: {labels.size} vs {clusters.size}")
    if labels.size == 0:
        raise ValueError("no samples to evaluate")
    if labels.min() < 0 or clusters.min() < 0:
        raise ValueError("labels and clusters must be non-negative integers")
    return labels, clusters
