"""Run configuration: one dataclass holds everything a run depends on."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .losses import LossWeights


@dataclass
class TrainConfig:
    """Hyper-parameters of ICBPL training (the defaults are the measured ones, docs/BENCHMARKS.md)."""

    n_clusters: int = 10
    latent_dim: int = 100          # d, the PEDCC dimension (paper: 100)
    hidden_dim: int = 512          # projection head: Linear(feat, hidden), ReLU, Linear(hidden, d)
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    w_mmd: float = 20.0            # MMD to PEDCC; keeps every cluster in use
    w_aug: float = 1.0             # augmentation consistency
    w_knn: float = 5.0             # k-nearest-neighbour attraction
    w_cos: float = 1.0             # minimum cosine distance to PEDCC
    n_neighbors: int = 20          # k of the neighbour loss (SCAN: 20 on 10-class sets)
    refresh_every: int = 0         # re-mine neighbours in latent space every R epochs (0: never)
    n_heads: int = 1               # heads trained together; the lowest-loss one predicts
    select_head_after: int = 10    # head-only, several heads: keep only the lowest-loss one after E epochs (0: never)
    seed: int = 0

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.w_mmd, self.w_aug, self.w_knn, self.w_cos)

    def validate(self) -> None:
        if self.n_clusters < 2:
            raise ValueError(f"the number of clusters must be at least 2, got {self.n_clusters}")
        for name in ("latent_dim", "hidden_dim", "epochs", "batch_size", "n_neighbors", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if min(self.w_mmd, self.w_aug, self.w_knn, self.w_cos) < 0:
            raise ValueError("loss weights must be non-negative")
        if self.select_head_after < 0:
            raise ValueError("select_head_after must be 0 (keep every head) or a positive number of epochs")
        if self.refresh_every < 0:
            raise ValueError("refresh_every must be 0 (never) or a positive number of epochs")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> "TrainConfig":
        """TrainConfig defaults, then the dataset's recipe, then `overrides` (None = not given)."""
        from .datasets import get_entry

        recipe = dict(get_entry(dataset).train_defaults)
        return cls(**{**recipe, **{k: v for k, v in overrides.items() if v is not None}})
