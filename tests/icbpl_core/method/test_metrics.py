import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from icbpl_core.method.metrics import (cluster_accuracy, cluster_stats, contingency, evaluate, hungarian_match,
                                many_to_one_accuracy, matched_classes)


def test_acc_is_invariant_to_cluster_renaming():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0


def test_acc_uses_the_best_one_to_one_matching():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([1, 1, 0, 0, 0, 0, 2, 2, 2])
    # best: cluster1->0 (2), cluster0->1 (3), cluster2->2 (3) = 8/9
    assert cluster_accuracy(labels, clusters) == pytest.approx(8 / 9)
    assert hungarian_match(contingency(labels, clusters)) == {0: 1, 1: 0, 2: 2}


def test_many_to_one_lets_clusters_share_a_class():
    labels = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(labels, clusters) == pytest.approx(4 / 6)
    assert many_to_one_accuracy(labels, clusters) == 1.0


def test_contingency_counts_and_matched_classes():
    labels = np.array([0, 1, 1, 2])
    clusters = np.array([1, 0, 0, 1])
    table = contingency(labels, clusters, n_clusters=3)
    np.testing.assert_array_equal(table, [[0, 2, 0], [1, 0, 1], [0, 0, 0]])
    matched = matched_classes(labels, clusters, n_clusters=3)
    assert matched[0] == 1 and matched[1] in (0, 2) and matched[2] not in (1, matched[1])


def test_evaluate_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 500)
    clusters = np.where(rng.random(500) < 0.7, (labels + 2) % 5, rng.integers(0, 5, 500))
    result = evaluate(labels, clusters)
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert result["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert 0.7 < result["acc"] < 0.85
    assert result["n_clusters_used"] == 5


def test_cluster_stats_sizes_purity_confidence():
    clusters = np.array([0, 0, 0, 2])
    labels = np.array([1, 1, 0, 0])
    conf = np.array([0.9, 0.7, 0.5, 0.3])
    stats = cluster_stats(clusters, conf, 3, labels)
    assert [s["size"] for s in stats] == [3, 0, 1]
    assert stats[0]["purity"] == pytest.approx(2 / 3) and stats[0]["majority_class"] == 1
    assert stats[0]["mean_confidence"] == pytest.approx(0.7)
    assert np.isnan(stats[1]["mean_confidence"])
    assert "purity" not in cluster_stats(clusters, conf, 3)[0]


def test_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="differ in length"):
        evaluate(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="no samples"):
        evaluate(np.array([]), np.array([]))
