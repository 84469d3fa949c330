import torch
import torch.nn.functional as F

from icbpl_core.method.losses import (LossWeights, augmentation_loss, icbpl_loss, knn_loss, min_cosine_loss,
                               mmd_loss, tile_centroids)
from icbpl_core.method.pedcc import make_pedcc

C = torch.from_numpy(make_pedcc(10, 16, seed=0))


def test_tiling_takes_full_copies_then_the_first_rows():
    tiled = tile_centroids(C, 23)
    assert tiled.shape == (23, 16)
    torch.testing.assert_close(tiled[:10], C)
    torch.testing.assert_close(tiled[10:20], C)
    torch.testing.assert_close(tiled[20:], C[:3])


def test_mmd_is_zero_on_the_target_and_large_when_collapsed():
    on_target = tile_centroids(C, 40)
    assert mmd_loss(on_target, C).abs() < 1e-6
    collapsed = C[:1].repeat(40, 1)
    assert mmd_loss(collapsed, C) > 0.5


def test_mmd_gradient_spreads_a_collapsed_batch():
    z = F.normalize(C[:1].repeat(40, 1) + 0.01 * torch.randn(40, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    z.requires_grad_(True)
    optimiser = torch.optim.SGD([z], lr=0.5)
    before = mmd_loss(z.detach(), C)
    for _ in range(50):
        optimiser.zero_grad()
        mmd_loss(F.normalize(z, dim=1), C).backward()
        optimiser.step()
    after = mmd_loss(F.normalize(z.detach(), dim=1), C)
    assert after < 0.5 * before
    nearest = (F.normalize(z.detach(), dim=1) @ C.T).argmax(dim=1)
    assert nearest.unique().numel() >= 5


def test_consistency_and_neighbour_losses_are_one_minus_cosine():
    a = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    b = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    expected = (0.0 + (1 - 2 ** -0.5)) / 2
    assert abs(float(augmentation_loss(a, b)) - expected) < 1e-6
    assert abs(float(knn_loss(a, b)) - expected) < 1e-6


def test_min_cosine_is_zero_on_centroids_and_uses_the_nearest():
    assert float(min_cosine_loss(C[[3, 7]], C)) < 1e-6
    z = F.normalize(C[2] + 0.1 * C[5], dim=0)[None]
    expected = 1 - float((z @ C.T).max())
    assert abs(float(min_cosine_loss(z, C)) - expected) < 1e-6


def test_weighted_total_and_skipped_terms():
    g = torch.Generator().manual_seed(1)
    z, zv, zn = (F.normalize(torch.randn(32, 16, generator=g), dim=1) for _ in range(3))
    w = LossWeights(mmd=2.0, aug=0.5, knn=0.0, cos=3.0)
    total, parts = icbpl_loss(z, zv, zn, C, w)
    assert "knn" not in parts
    expected = 2.0 * mmd_loss(z, C) + 0.5 * augmentation_loss(z, zv) + 3.0 * min_cosine_loss(z, C)
    assert abs(float(total) - float(expected)) < 1e-5
    assert abs(float(parts["total"]) - float(expected)) < 1e-5


def _naive_mmd(z, centroids):
    """The formula as written in METHOD.md: cdist on the joint set, five exps."""
    from icbpl_core.method.losses import BANDWIDTH_MULTIPLIERS
    joint = torch.cat([z, tile_centroids(centroids, z.shape[0])])
    d = torch.cdist(joint, joint).pow(2)
    n = joint.shape[0]
    base = d.detach().sum() / (n * n - n)
    k = sum(torch.exp(-d / (base * m)) for m in BANDWIDTH_MULTIPLIERS)
    b = z.shape[0]
    return k[:b, :b].mean() + k[b:, b:].mean() - 2 * k[:b, b:].mean()


def test_fast_mmd_equals_the_naive_formula_in_value_and_gradient():
    g = torch.Generator().manual_seed(3)
    for batch in (7, 64, 256):
        z1 = F.normalize(torch.randn(batch, 16, generator=g), dim=1).requires_grad_(True)
        z2 = z1.detach().clone().requires_grad_(True)
        fast, naive = mmd_loss(z1, C), _naive_mmd(z2, C)
        fast.backward()
        naive.backward()
        assert abs(float(fast.detach()) - float(naive.detach())) < 1e-5
        torch.testing.assert_close(z1.grad, z2.grad, atol=1e-5, rtol=1e-3)
