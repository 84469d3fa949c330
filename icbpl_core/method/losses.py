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


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 by one matrix product (far cheaper than cdist, then squaring)."""
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def multi_bandwidth_kernel(sq_dist: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """sum_i exp(-D / (base * m_i)) for m_i = 1/4, 1/2, 1, 2, 4.

    With e = exp(-D / base) these are e^4, e^2, e, e^(1/2), e^(1/4): one exp, two
    squarings and two square roots instead of five exps.
    """
    e = torch.exp(-sq_dist / base)
    e2, root = e * e, e.sqrt()
    return e2 * e2 + e2 + e + root + root.sqrt()


def mmd_loss(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """L_mmd = MMD^2(z, tiled PEDCC), biased estimator mean(XX + YY - XY - YX).

    Kernel k(a, b) = sum_i exp(-|a - b|^2 / bw_i), bw_i = base * {1/4, 1/2, 1, 2, 4},
    base = mean pairwise squared distance over the joint set (detached).
    """
    target = tile_centroids(centroids, z.shape[0])
    d_xx, d_xy = squared_distances(z, z), squared_distances(z, target)
    with torch.no_grad():
        d_yy = squared_distances(target, target)
        n = 2 * z.shape[0]
        base = (d_xx.sum() + d_yy.sum() + 2 * d_xy.sum()) / (n * n - n)
        k_yy = multi_bandwidth_kernel(d_yy, base).mean()
    return multi_bandwidth_kernel(d_xx, base).mean() + k_yy - 2 * multi_bandwidth_kernel(d_xy, base).mean()


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
    """The four terms' weights (their defaults live in params.py: w_mmd, w_aug, w_knn, w_cos)."""

    mmd: float
    aug: float
    knn: float
    cos: float


def icbpl_loss(
    z: torch.Tensor,
    z_view: torch.Tensor,
    z_neighbour: torch.Tensor,
    centroids: torch.Tensor,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and the value of each term, detached (terms with weight 0 are skipped).

    The values stay tensors, so a training loop on a GPU reads them when it reports, not
    at every step (reading a GPU value waits for the GPU to finish)."""
    terms = {
        "mmd": (weights.mmd, lambda: mmd_loss(z, centroids)),
        "aug": (weights.aug, lambda: augmentation_loss(z, z_view)),
        "knn": (weights.knn, lambda: knn_loss(z, z_neighbour)),
        "cos": (weights.cos, lambda: min_cosine_loss(z, centroids)),
    }
    total = z.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for name, (weight, term) in terms.items():
        if weight == 0:
            continue
        value = term()
        total = total + weight * value
        parts[name] = value.detach()
    parts["total"] = total.detach()
    return total, parts
