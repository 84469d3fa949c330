"""ICBPL as a scikit-learn estimator over a feature matrix.

    from icbpl_core import ICBPL
    model = ICBPL(n_clusters=10).fit(X)        # X: (n_samples, n_features)
    model.labels_, model.predict(X_new), model.transform(X_new)
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .config import TrainConfig
from .model import MultiHead
from .neighbours import cosine_topk
from .pedcc import make_pedcc
from .sources import FeatureSource
from .trainer import Trainer


class ICBPL(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster feature vectors by training a projection head onto PEDCC centroids.

    Parameters mirror TrainConfig; `view_noise` sets the Gaussian noise (in units of
    each feature's standard deviation) that makes the augmented view when fit() is
    given no `views`. After fit: labels_, latents_, centroids_ (PEDCC), neighbors_,
    history_ (per-epoch losses and metrics), best_head_ (the lowest-loss of the
    n_heads heads, the one that predicts; after select_head_after epochs only it trains on),
    n_features_in_. labels_ and predict() use each row's own latent: views are a training
    input here (the CLI and app's head mode also predict from the mean over the views).
    """

    def __init__(self, n_clusters: int = 10, latent_dim: int = 100, hidden_dim: int = 512,
                 epochs: int = 60, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0,
                 w_mmd: float = 20.0, w_aug: float = 1.0, w_knn: float = 5.0, w_cos: float = 1.0,
                 n_neighbors: int = 20, refresh_every: int = 0, n_heads: int = 1, select_head_after: int = 10,
                 view_noise: float = 0.1, random_state: int = 0, verbose: bool = False) -> None:
        self.n_clusters = n_clusters
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.w_mmd = w_mmd
        self.w_aug = w_aug
        self.w_knn = w_knn
        self.w_cos = w_cos
        self.n_neighbors = n_neighbors
        self.refresh_every = refresh_every
        self.n_heads = n_heads
        self.select_head_after = select_head_after
        self.view_noise = view_noise
        self.random_state = random_state
        self.verbose = verbose

    def _config(self) -> TrainConfig:
        return TrainConfig(n_clusters=self.n_clusters, latent_dim=self.latent_dim, hidden_dim=self.hidden_dim,
                           epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, w_mmd=self.w_mmd, w_aug=self.w_aug,
                           w_knn=self.w_knn, w_cos=self.w_cos, n_neighbors=self.n_neighbors,
                           refresh_every=self.refresh_every, n_heads=self.n_heads,
                           select_head_after=self.select_head_after, seed=self.random_state)

    def fit(self, X, y=None, views=None) -> "ICBPL":
        """Train on X (n_samples, n_features). `views` (n_views, n_samples, n_features)
        optionally gives features of augmented copies; `y` is only used to report
        metrics in history_ (training never sees it)."""
        X = _check_features(X)
        config = self._config()
        config.validate()
        if config.n_clusters > X.shape[0]:
            raise ValueError(f"n_clusters={config.n_clusters} is more than the {X.shape[0]} samples")
        if views is not None:
            views = np.asarray(views, dtype=np.float32)
            if views.ndim != 3 or views.shape[1:] != X.shape:
                raise ValueError(f"views must have shape (n_views, {X.shape[0]}, {X.shape[1]}), got {views.shape}")
            _check_features(views.reshape(-1, X.shape[1]))
        torch.manual_seed(self.random_state)
        self.centroids_ = make_pedcc(config.n_clusters, config.latent_dim, self.random_state)
        self.neighbors_ = cosine_topk(X, min(config.n_neighbors, X.shape[0] - 1))[0]
        heads = MultiHead(X.shape[1], config.hidden_dim, config.latent_dim, config.n_heads)
        heads.set_input_stats(torch.from_numpy(X))
        source = FeatureSource(X, views, noise=self.view_noise)
        labels = None if y is None else np.asarray(y)
        report = (lambda e: e["type"] == "epoch" and print(_format_epoch(e))) if self.verbose else None
        trainer = Trainer(heads, source, self.centroids_, self.neighbors_, config, labels=labels, on_event=report)
        trainer.fit()
        self.best_head_ = trainer.best_head
        self.head_ = heads.heads[trainer.best_head].eval()
        self.history_ = trainer.history
        self.n_features_in_ = X.shape[1]
        self.latents_ = self.transform(X)
        self.labels_ = self._assign(self.latents_)
        return self

    def transform(self, X) -> np.ndarray:
        """L2-normalised latents (n_samples, latent_dim)."""
        check_is_fitted(self, "head_")
        X = _check_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}")
        with torch.no_grad():
            return self.head_(torch.from_numpy(X)).numpy()

    def predict(self, X) -> np.ndarray:
        """Cluster of each row: the PEDCC point with the largest cosine to its latent."""
        return self._assign(self.transform(X))

    def predict_confidence(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(cosine to the assigned centroid, margin to the second-closest centroid)."""
        sims = self.transform(X) @ self.centroids_.T
        top2 = np.sort(sims, axis=1)[:, -2:]
        return top2[:, 1], top2[:, 1] - top2[:, 0]

    def _assign(self, latents: np.ndarray) -> np.ndarray:
        return (latents @ self.centroids_.T).argmax(axis=1)


def _check_features(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {X.shape[0]}")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{len(rows)} rows contain NaN or inf (first: {rows[:5].tolist()}); "
                         "remove or impute them before clustering")
    return np.ascontiguousarray(X)


def _format_epoch(event: dict) -> str:
    losses = " ".join(f"{k}={v:.3f}" for k, v in event["losses"].items())
    metrics = " ".join(f"{k}={v:.3f}" for k, v in event.get("metrics", {}).items())
    return f"epoch {event['epoch']}/{event['epochs']} {losses} {metrics} ({event['seconds']:.1f}s)"
