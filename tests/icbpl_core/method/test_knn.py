import subprocess
import sys

import numpy as np
import pytest
import torch

from icbpl_core.method import knn
from icbpl_core.method.knn import (
    BACKENDS,
    FaissMissingError,
    choose_backend,
    nearest_neighbours,
)
from icbpl_core.method.neighbours import cosine_topk

pytest.importorskip("faiss")


def clustered(n, dim=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    return centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)


@pytest.fixture
def x():
    return clustered(2000)


def test_faiss_flat_gives_the_exact_neighbours(x):
    idx, sim = nearest_neighbours(x, 10, backend="faiss")
    ref_idx, ref_sim = cosine_topk(x, 10)
    assert idx.dtype == np.int64 and sim.dtype == np.float32 and idx.shape == sim.shape == (2000, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)


def test_exact_backend_is_cosine_topk(x):
    for device in (None, "cpu", torch.device("cpu")):
        idx, sim = nearest_neighbours(x, 7, backend="exact", device=device)
        ref_idx, ref_sim = cosine_topk(x, 7)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(sim, ref_sim)


def test_device_blocked_search_matches_cosine_topk(x, monkeypatch):
    # The search a GPU runs, here on the CPU with blocks of 101 rows (a ragged last block of 81).
    monkeypatch.setattr(knn, "DEVICE_BLOCK_ELEMENTS", 101 * len(x))
    idx, sim = knn._exact_blocked(torch.nn.functional.normalize(torch.from_numpy(x), dim=1), 9, torch.device("cpu"))
    ref_idx, ref_sim = cosine_topk(x, 9)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)


def spy(monkeypatch, name):
    """Record the arguments of every call of knn.<name>, which still runs."""
    calls, real = [], getattr(knn, name)
    monkeypatch.setattr(knn, name, lambda *args: calls.append(args) or real(*args))
    return calls


def test_approximate_index_reaches_the_recall_target(monkeypatch):
    x = clustered(10000, clusters=50)
    calibrations = spy(monkeypatch, "_calibrate_nprobe")
    idx, sim = nearest_neighbours(x, 20, backend="faiss", approx_from=5000)
    assert len(calibrations) == 1                                 # the IVF index was searched
    ref_idx, _ = cosine_topk(x, 20)
    assert knn.recall(idx, ref_idx) >= 0.99
    assert not (idx == np.arange(len(x))[:, None]).any()
    assert (np.diff(sim, axis=1) <= 0).all()


def test_rows_whose_probed_lists_are_short_are_searched_exactly(monkeypatch):
    # One probe and 60 neighbours out of lists of ~65 rows: faiss fills some rows with -1.
    x = clustered(2000, clusters=60)
    monkeypatch.setattr(knn, "RECALL_TARGET", 0.0)
    exact_calls = spy(monkeypatch, "_exact_rows")
    idx, sim = nearest_neighbours(x, 60, backend="faiss", approx_from=1000)
    assert len(exact_calls) == 2                                  # the calibration sample, then the short rows
    short = exact_calls[-1][2]
    assert 0 < len(short) < len(x)
    ref_idx, ref_sim = cosine_topk(x, 60)
    assert (idx >= 0).all()
    np.testing.assert_array_equal(idx[short], ref_idx[short])
    np.testing.assert_allclose(sim[short], ref_sim[short], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_excluded_and_sorted(x, backend):
    idx, sim = nearest_neighbours(x, 15, backend=backend)
    assert not (idx == np.arange(len(x))[:, None]).any()
    assert (np.diff(sim, axis=1) <= 0).all()


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_duplicates_are_neighbours_but_never_self(backend):
    a = clustered(300)
    idx, sim = nearest_neighbours(np.vstack([a, a]), 3, backend=backend)
    twins = np.concatenate([np.arange(300, 600), np.arange(300)])
    np.testing.assert_array_equal(idx[:, 0], twins)
    np.testing.assert_allclose(sim[:, 0], 1.0, atol=1e-5)
    # Six copies of one row, k = 3: every copy's neighbours are three other copies.
    b = np.vstack([np.repeat(a[:1], 6, axis=0), a[1:]])
    idx, sim = nearest_neighbours(b, 3, backend=backend)
    for row in range(6):
        assert set(idx[row]) < set(range(6)) - {row} and len(set(idx[row])) == 3
    np.testing.assert_allclose(sim[:6], 1.0, atol=1e-5)


def test_drop_self_removes_self_else_the_last():
    idx = np.array([[4, 0, 7], [5, 6, 8]])
    sim = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], dtype=np.float32)
    kept, kept_sim = knn._drop_self(idx, sim, np.array([0, 1]))
    np.testing.assert_array_equal(kept, [[4, 7], [5, 6]])
    np.testing.assert_array_equal(kept_sim, sim[[[0, 0], [1, 1]], [[0, 2], [0, 1]]])


def test_memmaps_and_tensors_as_input(x, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, x)
    frozen = np.load(path, mmap_mode="r")
    ref_idx, _ = cosine_topk(x, 5)
    for backend in ("exact", "faiss"):
        np.testing.assert_array_equal(nearest_neighbours(frozen, 5, backend=backend)[0], ref_idx)
        np.testing.assert_array_equal(nearest_neighbours(torch.from_numpy(x), 5, backend=backend)[0], ref_idx)


def test_auto_resolution(monkeypatch):
    assert choose_backend(knn.AUTO_FAISS_FROM - 1) == "exact"
    assert choose_backend(knn.AUTO_FAISS_FROM) == "faiss"
    assert choose_backend(10, "faiss") == "faiss" and choose_backend(10**7, "exact") == "exact"
    with pytest.raises(ValueError, match="auto, exact, faiss"):
        choose_backend(10, "annoy")
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    assert choose_backend(10**7) == "exact"


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_k(backend):
    x = clustered(50)
    for k in (0, 50):
        with pytest.raises(ValueError, match="between 1 and 49 for 50 points"):
            nearest_neighbours(x, k, backend=backend)


def test_missing_faiss_says_how_to_install(monkeypatch, x):
    monkeypatch.setitem(sys.modules, "faiss", None)             # `import faiss` now raises ImportError
    with pytest.raises(FaissMissingError, match="pip install faiss-cpu") as info:
        nearest_neighbours(x, 5, backend="faiss")
    assert isinstance(info.value, ImportError)


def test_importing_knn_leaves_faiss_unimported():
    code = "import sys, icbpl_core.method.knn; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
