"""ICBPL as a scikit-learn estimator over a feature matrix.

    from icbpl_core import ICBPL
    model = ICBPL(n_clusters=10).fit(X)        # X: (n_samples, n_features)
    model.labels_, model.predict(X_new), model.transform(X_new)

Its parameters are params.py's "train" and "estimator" entries (same names, defaults and
ranges as the command line and the app; the seed is `random_state`, as scikit-learn names it).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import events, params
from .config import TrainConfig
from .method.model import MultiHead
from .method.knn import nearest_neighbours
from .method.pedcc import make_pedcc
from .training.device import placement
from .training.sources import FeatureSource
from .training.trainer import Trainer

PARAMS = params.on("estimator")


def _init(self, **given) -> None:
    unknown = set(given) - {_name(p) for p in PARAMS}
    if unknown:
        raise TypeError(f"ICBPL got unknown parameters: {', '.join(sorted(unknown))}")
    for p in PARAMS:
        setattr(self, _name(p), given.get(_name(p), p.default))


def _name(p: params.Param) -> str:
    return p.estimator_name or p.name


# scikit-learn reads an estimator's parameters from its __init__ signature: give it the table's.
_init.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(_name(p), inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.type)
       for p in PARAMS])


class ICBPL(ClusterMixin, TransformerMixin, BaseEstimator):
    """Cluster feature vectors by training a projection head onto PEDCC centroids.

    Parameters: params.py's "train" entries (n_clusters, epochs, lr, w_mmd, ..., seed as
    random_state) and `view_noise`, the Gaussian noise (in units of each feature's standard
    deviation) that makes the augmented view when fit() is given no `views`, and `verbose`.
    After fit: labels_, latents_, centroids_ (PEDCC), neighbours_, history_ (per-epoch losses
    and metrics), best_head_ (the lowest-loss of the n_heads heads, the one that predicts;
    after select_head_after epochs only it trains on), n_features_in_. labels_ and predict()
    use each row's own latent: views are a training input here (the CLI and app's head mode
    also predict from the mean over the views).
    """

    __init__ = _init

    def _config(self) -> TrainConfig:
        values = {p.name: getattr(self, _name(p)) for p in PARAMS if p.level == "train"}
        return TrainConfig(**values)

    def fit(self, X, y=None, views=None, neighbours=None, guidance=None) -> "ICBPL":
        """Train on X (n_samples, n_features). `views` (n_views, n_samples, n_features)
        optionally gives features of augmented copies; `neighbours` (n_samples, k) the indices
        of each row's neighbours, when they come from other features than X (default: X's own
        cosine nearest); `guidance` (n_samples,) the cluster a person decided for some rows and -1
        for the rest, which steers training as `guide` says (method/guidance.py); `y` is only used
        to report metrics in history_ (training never sees it)."""
        X = _check_features(X)
        config = self._config()
        config.validate()
        params.param("view_noise").check(self.view_noise)
        if config.n_clusters > X.shape[0]:
            raise ValueError(f"n_clusters={config.n_clusters} is more than the {X.shape[0]} samples")
        if views is not None:
            views = np.asarray(views, dtype=np.float32)
            if views.ndim != 3 or views.shape[1:] != X.shape:
                raise ValueError(f"views must have shape (n_views, {X.shape[0]}, {X.shape[1]}), got {views.shape}")
            _check_features(views.reshape(-1, X.shape[1]))
        targets = None if guidance is None else _check_guidance(guidance, len(X), config.n_clusters)
        torch.manual_seed(self.random_state)
        self.centroids_ = make_pedcc(config.n_clusters, config.latent_dim, self.random_state)
        place = placement(config.device)
        if neighbours is None:
            self.neighbours_ = nearest_neighbours(X, min(config.n_neighbours, X.shape[0] - 1), config.knn_backend,
                                                  place.device)[0]
        else:
            self.neighbours_ = np.asarray(neighbours, dtype=np.int64)
            if self.neighbours_.ndim != 2 or len(self.neighbours_) != len(X) or not (
                    (self.neighbours_ >= 0) & (self.neighbours_ < len(X))).all():
                raise ValueError(f"neighbours must be row indices of shape ({len(X)}, k)")
        heads = MultiHead(X.shape[1], config.hidden_dim, config.latent_dim, config.n_heads)
        heads.set_input_stats(torch.from_numpy(X))
        source = FeatureSource(X, views, noise=self.view_noise)
        labels = None if y is None else np.asarray(y)
        report = (lambda e: e["type"] == events.EPOCH and print(events.line(e))) if self.verbose else None
        trainer = Trainer(heads, source, self.centroids_, self.neighbours_, config, labels=labels, on_event=report,
                          place=place, targets=targets)
        trainer.fit()
        self.best_head_ = trainer.best_head
        self.head_ = heads.heads[trainer.best_head].cpu().eval()     # predicts on the CPU; pickles anywhere
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


def _check_guidance(guidance, n_samples: int, n_clusters: int) -> np.ndarray:
    targets = np.asarray(guidance)
    if targets.shape != (n_samples,) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"guidance must be integers of shape ({n_samples},), got {targets.dtype} {targets.shape}")
    if ((targets < -1) | (targets >= n_clusters)).any():
        raise ValueError(f"guidance holds clusters 0..{n_clusters - 1}, or -1 for rows nobody decided")
    return targets.astype(np.int64)


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
