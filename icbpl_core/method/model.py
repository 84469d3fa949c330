"""The encoder: (backbone ->) projection head -> L2-normalised latent z in R^d."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import Backbone


class ProjectionHead(nn.Module):
    """Standardise -> Linear(in, hidden) -> ReLU -> Linear(hidden, d) -> L2-normalise.

    The reference head is Linear(2048, 512), ReLU, Linear(512, d). Standardising the
    input with fixed statistics (buffers, saved with the weights) lets one learning
    rate fit features of any scale.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, latent_dim: int = 100) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, latent_dim))

    def set_input_stats(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0).clamp(min=1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net((features - self.mean) / self.scale), dim=1)


class MultiHead(nn.Module):
    """H independent projection heads on the same input: forward -> (H, B, d).

    Training all H at once and keeping the one whose loss ends lowest (SCAN keeps the
    lowest-loss of its heads too) guards against a poor local optimum
    (docs/BENCHMARKS.md#levers-that-helped).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, latent_dim: int = 100, n_heads: int = 1) -> None:
        super().__init__()
        self.heads = nn.ModuleList(ProjectionHead(in_dim, hidden_dim, latent_dim) for _ in range(n_heads))

    def set_input_stats(self, features: torch.Tensor) -> None:
        for head in self.heads:
            head.set_input_stats(features)

    @property
    def n_heads(self) -> int:
        return len(self.heads)

    def keep_head(self, index: int) -> None:
        """Drop every head but `index` (training then costs one head, not H)."""
        self.heads = nn.ModuleList([self.heads[index]])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features) for head in self.heads])


class Encoder(nn.Module):
    """Backbone + projection heads, for training on images."""

    def __init__(self, backbone: Backbone, head: MultiHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def n_heads(self) -> int:
        return self.head.n_heads

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
