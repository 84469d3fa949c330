import numpy as np
import torch

from icbpl_core.method.guidance import anchor_loss, must_link
from icbpl_core.method.pedcc import make_pedcc


def test_anchor_loss_is_the_mean_cosine_gap_of_decided_rows_only():
    centroids = torch.from_numpy(make_pedcc(3, 8, 0))
    z = torch.stack([centroids[0], centroids[1], -centroids[2]])
    targets = torch.tensor([0, 2, -1])          # row 0 on its point, row 1 on another, row 2 undecided
    expected = (0.0 + (1 - float(centroids[1] @ centroids[2]))) / 2
    assert torch.isclose(anchor_loss(z, targets, centroids), torch.tensor(expected, dtype=z.dtype))
    assert anchor_loss(z, torch.full((3,), -1), centroids) == 0


def test_anchor_loss_gradient_moves_decided_rows_toward_their_target_only():
    centroids = torch.from_numpy(make_pedcc(3, 8, 0))
    z = torch.nn.functional.normalize(torch.randn(4, 8, dtype=centroids.dtype), dim=1).requires_grad_()
    anchor_loss(z, torch.tensor([1, -1, 1, -1]), centroids).backward()
    assert torch.all(z.grad[[1, 3]] == 0)
    assert torch.all((z.grad[[0, 2]] @ centroids[1]) < 0)       # descending the loss raises z . c_1


def test_must_link_draws_decided_rows_from_their_cluster_and_leaves_the_rest():
    neighbours = np.tile(np.arange(5), (10, 1))
    targets = np.array([0, 0, 0, 1, -1, -1, 1, -1, 2, -1])
    linked = must_link(neighbours, targets, seed=0)
    for i in (0, 1, 2):
        assert set(linked[i]) <= {0, 1, 2} - {i}
    assert set(linked[3]) == {6} and set(linked[6]) == {3}
    np.testing.assert_array_equal(linked[8], neighbours[8])      # a cluster's only decided image keeps its own
    np.testing.assert_array_equal(linked[targets < 0], neighbours[targets < 0])
    np.testing.assert_array_equal(must_link(neighbours, targets, seed=0), linked)   # seeded
