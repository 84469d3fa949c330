import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs

from icbpl_core import ICBPL
from icbpl_core.method.metrics import cluster_accuracy


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=800, centers=5, n_features=30, cluster_std=2.0, random_state=0)


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return ICBPL(n_clusters=5, epochs=10, batch_size=128, random_state=0).fit(X)


def test_three_lines_cluster_a_feature_matrix(blobs, fitted):
    X, y = blobs
    assert fitted.labels_.shape == (800,)
    assert cluster_accuracy(y, fitted.labels_) > 0.95
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)


def test_fitted_attributes(blobs, fitted):
    X, _ = blobs
    z = fitted.transform(X[:7])
    assert z.shape == (7, 100)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert fitted.centroids_.shape == (5, 100)
    assert fitted.neighbours_.shape == (800, 20)
    assert len(fitted.history_) == 10 and fitted.n_features_in_ == 30
    confidence, margin = fitted.predict_confidence(X[:7])
    assert ((confidence <= 1.0001) & (margin >= 0)).all()


def test_fit_returns_self_and_params_round_trip():
    model = ICBPL(n_clusters=3, w_mmd=7.0)
    assert clone(model).get_params()["w_mmd"] == 7.0
    X = np.random.default_rng(0).standard_normal((60, 4))
    assert model.set_params(epochs=1).fit(X) is model


def test_views_and_label_free_history(blobs):
    X, y = blobs
    views = np.stack([X + 0.1, X - 0.1])
    model = ICBPL(n_clusters=5, epochs=2, random_state=1).fit(X, y, views=views)
    assert "metrics" in model.history_[-1]
    with pytest.raises(ValueError, match="views must have shape"):
        ICBPL(n_clusters=5, epochs=1).fit(X, views=views[:, :10])


@pytest.mark.parametrize("bad,match", [
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "NaN or inf"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), "NaN or inf"),
    (lambda X: X[:, 0], "2-D"),
])
def test_bad_features_are_refused(blobs, bad, match):
    X, _ = blobs
    with pytest.raises(ValueError, match=match):
        ICBPL(n_clusters=5, epochs=1).fit(bad(X))


def test_bad_cluster_counts_are_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="n_clusters must be between 2 and 1000, got 1"):
        ICBPL(n_clusters=1).fit(X)
    with pytest.raises(ValueError, match="more than the 10 samples"):
        ICBPL(n_clusters=11).fit(X[:10])


def test_predict_checks_feature_count(fitted):
    with pytest.raises(ValueError, match="30"):
        fitted.predict(np.zeros((2, 3)))


@pytest.fixture(scope="module")
def digits_corrected():
    """Digits pixels, an unguided fit, and a person's decisions on the 9 least confident images of
    each cluster: their true class's cluster (by the Hungarian matching of that fit)."""
    from sklearn.datasets import load_digits

    from icbpl_core.method.metrics import matched_classes

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    plain = ICBPL(n_clusters=10, epochs=30, random_state=0).fit(X)
    confidence = (plain.latents_ @ plain.centroids_.T).max(axis=1)
    cluster_of_class = {int(c): k for k, c in enumerate(matched_classes(y, plain.labels_, 10))}
    guidance = np.full(len(X), -1)
    for k in range(10):
        members = np.flatnonzero(plain.labels_ == k)
        for i in members[np.argsort(confidence[members])[:9]]:
            guidance[i] = cluster_of_class[int(y[i])]
    return X, y, plain, guidance


@pytest.mark.parametrize("guide", ["anchor", "must-link", "both"])
def test_guidance_from_a_persons_decisions(digits_corrected, guide):
    X, y, plain, guidance = digits_corrected
    guided = ICBPL(n_clusters=10, epochs=30, random_state=0, guide=guide).fit(X, guidance=guidance)
    decided = guidance >= 0
    untouched = ~decided
    gain = cluster_accuracy(y[untouched], guided.labels_[untouched]) - cluster_accuracy(y[untouched], plain.labels_[untouched])
    if guide == "must-link":     # decided images of a cluster come together (which point is not given)
        assert _together(guided.labels_, guidance) > _together(plain.labels_, guidance) + 0.03 and gain > -0.02
    else:                        # on their points, and the anchor moves the images nobody decided too
        assert (guided.labels_[decided] == guidance[decided]).mean() > 0.9
        assert gain > 0.1


def _together(labels, guidance) -> float:
    """Mean over the decided clusters of the share of their decided images in one cluster."""
    return float(np.mean([np.bincount(labels[guidance == t]).max() / (guidance == t).sum()
                          for t in np.unique(guidance[guidance >= 0])]))


def test_bad_guidance_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="shape"):
        ICBPL(n_clusters=3, epochs=1).fit(X, guidance=np.zeros(len(X) - 1, int))
    with pytest.raises(ValueError, match="clusters 0..2"):
        ICBPL(n_clusters=3, epochs=1).fit(X, guidance=np.full(len(X), 3))
