import numpy as np
import pytest

from icbpl_core.method.pedcc import make_pedcc


def _off_diagonal_cosines(points):
    cos = points @ points.T
    return cos[~np.eye(len(points), dtype=bool)]


@pytest.mark.parametrize("k,d", [(2, 2), (3, 2), (10, 100), (20, 100), (101, 100), (10, 9)])
def test_simplex_is_exact_when_k_at_most_d_plus_one(k, d):
    points = make_pedcc(k, d, seed=3)
    assert points.shape == (k, d) and points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(_off_diagonal_cosines(points), -1.0 / (k - 1), atol=1e-5)


def test_seeded_and_cached_copies_are_independent():
    a = make_pedcc(10, 100, seed=1)
    b = make_pedcc(10, 100, seed=1)
    np.testing.assert_array_equal(a, b)
    a[0, 0] = 42.0  # mutating a result must not corrupt the cache
    assert make_pedcc(10, 100, seed=1)[0, 0] != 42.0
    assert not np.allclose(make_pedcc(10, 100, seed=2), b)


def test_repulsion_spreads_points_when_k_exceeds_d_plus_one():
    k, d = 150, 100
    points = make_pedcc(k, d, seed=0)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-5)
    rng = np.random.default_rng(0)
    random = rng.standard_normal((k, d))
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    # Far better spread than random directions (whose max cosine is about 0.4 here).
    assert _off_diagonal_cosines(points).max() < 0.15 < _off_diagonal_cosines(random).max()


def test_icosahedron_in_three_dimensions():
    # The 12-point optimum on S^2 is the icosahedron: max pairwise cosine 1/sqrt(5) = 0.447.
    points = make_pedcc(12, 3, seed=0)
    assert _off_diagonal_cosines(points).max() < 0.47


@pytest.mark.parametrize("k,d", [(1, 10), (0, 10), (5, 1)])
def test_rejects_degenerate_sizes(k, d):
    with pytest.raises(ValueError):
        make_pedcc(k, d)
