"""The four ICBPL losses, on L2-normalised latents z (rows of a (B, d) tensor).

    total = w_mmd * L_mmd + w_aug * L_aug + w_knn * L_knn + w_cos * L_cos
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def tile_centroids(centroids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """PEDCC rows tiled to batch size: floor(B/K) full copies, then the first B mod K rows."""
    k = centroids.shape[0]
    reps, rest = divmod(batch_size, k)
    return torch.cat([centroids.repeat(reps, 1), centroids[:rest]], dim=0)


def mmd_loss(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L_mmd = MMD^2(z, tiled PEDCC), biased estimator mean(XX + YY - XY - YX).

    Kernel k(a, b) = sum_i exp(-|a - b|^2 / bw_i), bw_i = base * {1/4, 1/2, 1, 2, 4},
    base = mean pairwise squared distance over the joint set (detached).
    """
    target = tile_centroids(centroids, z.shape[0])
    joint = torch.cat([z, target], dim=0)
    sq_dist = torch.cdist(joint, joint).pow(2)
    n = joint.shape[0]
    base = sq_dist.detach().sum() / (n * n - n)
    kernel = sum(torch.exp(-sq_dist / (base * m)) for m in BANDWIDTH_MULTIPLIERS)
    b = z.shape[0]
    xx, yy, xy = kernel[:b, :b], kernel[b:, b:], kernel[:b, b:]
    return xx.mean() + yy.mean() - 2 * xy.mean()


def augmentation_loss(z: torch.Tensor, z_view: torch.Tensor) -> torch.Tensor:
    """L_aug = mean(1 - z . z_view): an image and its augmented view should agree."""
    return (1.0 - (z * z_view).sum(dim=1)).mean()


def knn_loss(z: torch.Tensor, z_neighbour: torch.Tensor) -> torch.Tensor:
    """L_knn = mean(1 - z . z_nb), z_nb the latent of a random one of its k nearest neighbours."""
    return (1.0 - (z * z_neighbour).sum(dim=1)).mean()


def min_cosine_loss(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L_cos = mean(1 - max_k z . c_k): pulls each latent onto its nearest PEDCC point."""
    return (1.0 - (z @ centroids.T).max(dim=1).values).mean()


@dataclass(frozen=True)
class LossWeights:
    mmd: float = 5.0
    aug: float = 1.0
    knn: float = 1.0
    cos: float = 1.0


def icbpl_loss(
    z: torch.Tensor,
    z_view: torch.Tensor,
    z_neighbour: torch.Tensor,
    centroids: torch.Tensor,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total and the value of each term (terms with weight 0 are skipped)."""
    terms = {
        "mmd": (weights.mmd, lambda: mmd_loss(z, centroids)),
        "aug": (weights.aug, lambda: augmentation_loss(z, z_view)),
        "knn": (weights.knn, lambda: knn_loss(z, z_neighbour)),
        "cos": (weights.cos, lambda: min_cosine_loss(z, centroids)),
    }
    total = z.new_zeros(())
    parts: dict[str, float] = {}
    for name, (weight, term) in terms.items():
        if weight == 0:
            continue
        value = term()
        total = total + weight * value
        parts[name] = float(value.detach())
    parts["total"] = float(total.detach())
    return total, parts
