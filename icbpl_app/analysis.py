"""The numbers the app's result pages show, computed from a run's assignments with
icbpl_core.metrics: the matched contingency table, the metrics table, the unlabelled
summary, and the comparison of two runs. Pages only draw these.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icbpl_core.method.metrics import contingency, evaluate, hungarian_match


@dataclass
class Confusion:
    counts: np.ndarray          # (K, C) counts, rows in display order
    row_clusters: list[int]     # cluster id of each row
    row_labels: list[str]       # "cluster 3 → 7" (its matched class) or "cluster 3 (unmatched)"
    col_labels: list[str]       # class names
    matched: dict[int, int]     # cluster -> class (Hungarian)


def class_names(metrics: dict | None, n_classes: int) -> list[str]:
    names = (metrics or {}).get("class_names")
    if names and len(names) >= n_classes:
        return [str(n) for n in names[:n_classes]]
    return [str(c) for c in range(n_classes)]


def confusion(assignments, n_clusters: int, metrics: dict | None = None, cluster_names: dict[int, str] | None = None,
              drop_empty: bool = False) -> Confusion:
    """Contingency table C[cluster, class] with rows ordered by matched class, so the
    Hungarian matching lies on the diagonal; unmatched clusters come last. cluster_names: cluster
    names shown in the row labels ("cluster 3 · loops → 0"); drop_empty: leave out clusters
    with no image (those a curated merge emptied), before matching."""
    labels = assignments["label"].to_numpy(dtype=np.int64)
    clusters = assignments["cluster"].to_numpy(dtype=np.int64)
    names = (metrics or {}).get("class_names") or []
    n_classes = max(int(labels.max()) + 1, len(names))
    table = contingency(labels, clusters, n_classes=n_classes, n_clusters=max(int(n_clusters), int(clusters.max()) + 1))
    kept = [c for c in range(table.shape[0]) if not drop_empty or table[c].sum() > 0]
    matched = {kept[r]: c for r, c in hungarian_match(table[kept]).items()}
    order = sorted(kept, key=lambda c: (matched.get(c, n_classes + c), c))
    cols = class_names(metrics, n_classes)
    cluster_names = cluster_names or {}

    def named(c: int) -> str:
        return f"cluster {c}" + (f" · {cluster_names[c]}" if cluster_names.get(c) else "")

    rows = [f"{named(c)} → {cols[matched[c]]}" if c in matched else f"{named(c)} (unmatched)" for c in order]
    return Confusion(table[order], order, rows, cols, matched)


def metric_summary(assignments, n_clusters: int) -> dict:
    """ACC (Hungarian), many-to-one ACC, NMI, ARI, clusters used, from the assignments."""
    if "label" not in assignments.columns:
        clusters = assignments["cluster"].to_numpy(dtype=np.int64)
        return {"n_clusters_used": int(np.unique(clusters).size), "n_clusters": int(n_clusters),
                "n_samples": int(len(clusters))}
    return evaluate(assignments["label"].to_numpy(), assignments["cluster"].to_numpy(), n_clusters)


def confidence_summary(assignments) -> dict:
    conf = assignments["confidence"].to_numpy(dtype=np.float64)
    margin = assignments["margin"].to_numpy(dtype=np.float64)
    return {"mean_confidence": float(conf.mean()), "median_confidence": float(np.median(conf)),
            "low_confidence_share": float((conf < 0.5).mean()), "mean_margin": float(margin.mean())}


def agreement(a, b) -> dict | None:
    """How similar two runs' clusterings of the same images are (NMI, ARI, and the share of
    images whose clusters match after the best one-to-one matching); None when the runs
    clustered different images."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if len(a) != len(b) or not np.array_equal(a["id"].astype(str).to_numpy(), b["id"].astype(str).to_numpy()):
        return None
    ca, cb = a["cluster"].to_numpy(np.int64), b["cluster"].to_numpy(np.int64)
    table = contingency(cb, ca)
    mapping = hungarian_match(table)
    same = sum(table[r, c] for r, c in mapping.items()) / max(1, len(ca))
    return {"nmi": float(normalized_mutual_info_score(ca, cb)), "ari": float(adjusted_rand_score(ca, cb)),
            "matched_share": float(same)}


def match_clusters(a, b) -> dict[int, int]:
    """Run b's clusters matched one-to-one to run a's (Hungarian, on the images both runs
    clustered, by id): {cluster of b: cluster of a}. Empty when they share no image."""
    both = a[["id", "cluster"]].assign(id=a["id"].astype(str)).merge(
        b[["id", "cluster"]].assign(id=b["id"].astype(str)), on="id", suffixes=("_a", "_b"))
    if not len(both):
        return {}
    table = contingency(both["cluster_a"].to_numpy(np.int64), both["cluster_b"].to_numpy(np.int64))
    return {int(r): int(c) for r, c in hungarian_match(table).items() if table[r, c] > 0}


def matched_colours(mapping: dict[int, int], a_clusters, b_clusters) -> dict[int, int]:
    """Colour numbers for run b's clusters: a matched cluster takes its match's number in run a
    (so both plots draw it alike), an unmatched one a number no cluster of a uses."""
    taken = {int(c) for c in a_clusters} | set(mapping.values())
    spare = (c for c in range(10**6) if c not in taken)
    return {int(c): mapping[int(c)] if int(c) in mapping else next(spare) for c in sorted(b_clusters)}


def same_images(source, target, indices) -> np.ndarray:
    """The images of `target` that are `indices` of `source` (matched by id), as target's
    indices, sorted; images target does not have are left out."""
    ids = source.set_index("index").loc[np.asarray(indices, dtype=np.int64), "id"].astype(str)
    where = dict(zip(target["id"].astype(str), target["index"].to_numpy(np.int64)))
    return np.unique(np.asarray([where[i] for i in ids if i in where], dtype=np.int64))
