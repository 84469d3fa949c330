"""The latent space at scale: a big run's UMAP is fitted on a cluster-stratified sample and the
other latents are placed with `transform`, chunk by chunk, from the memory-mapped latents; the
sampling settings are part of the cache key; cuML is used when it and a GPU are there; the
latent page draws a decimated sample that keeps every cluster and the PEDCC points, and its
selections and hover cells map back to the right images."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from icbpl_app import projection, sampling
from icbpl_app.figures import latent_figure
from icbpl_app.selection import selected_indices
from icbpl_core.method.pedcc import make_pedcc
from icbpl_core.store.runs import Run

DIM, K = 16, 4


def latents_around(pedcc: np.ndarray, sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors gathered around the PEDCC points, `sizes[c]` of them around point c."""
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(clusters)
    z = pedcc[clusters] + 0.15 * rng.standard_normal((len(clusters), pedcc.shape[1]))
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32), clusters


def make_run(folder, sizes=(250, 200, 130, 20), seed: int = 0) -> Run:
    """A finished run folder with the files the projection reads (latents, PEDCC, config, status)."""
    folder.mkdir(parents=True, exist_ok=True)
    pedcc = make_pedcc(K, DIM, seed=0)
    latents, clusters = latents_around(pedcc, list(sizes), seed)
    np.save(folder / "latents.npy", latents)
    np.save(folder / "pedcc.npy", pedcc)
    (folder / "config.json").write_text(json.dumps({"dataset": "digits", "train": {"seed": seed}}))
    (folder / "status.json").write_text(json.dumps({"state": "finished"}))
    pd.DataFrame({"index": np.arange(len(clusters)), "id": [f"x:{i}" for i in range(len(clusters))],
                  "cluster": clusters, "confidence": 0.9, "margin": 0.5}).to_csv(folder / "assignments.csv", index=False)
    return Run(folder)


class LinearReducer:
    """A stand-in for a UMAP model: a fixed linear map to 2-D, recording what it was given."""

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.fitted_rows, self.transformed = kwargs, None, []
        self.w = np.random.default_rng(1).standard_normal((DIM, 2)).astype(np.float32)

    def fit_transform(self, x):
        self.fitted_rows = np.array(x)
        return x @ self.w

    def transform(self, x):
        self.transformed.append(np.array(x))
        return x @ self.w


# -- the sample ------------------------------------------------------------------------------------

def test_stratified_sample_keeps_every_group_its_share_and_is_seeded():
    groups = np.repeat([0, 1, 2, 3, 5], [60_000, 30_000, 9_000, 40, 3])
    np.random.default_rng(0).shuffle(groups)
    picked = sampling.stratified_sample(groups, 2_000, floor=100, seed=7)
    assert 1_990 <= len(picked) <= 2_000 and np.all(np.diff(picked) > 0)  # at most size, sorted, unique
    counts = np.bincount(groups[picked], minlength=6)
    assert counts[3] == 40 and counts[5] == 3                           # small groups kept whole
    assert counts[4] == 0 and (counts[:3] >= 100).all()                 # (group 4 has no items); floors
    few = np.bincount(groups[sampling.stratified_sample(groups, 2_000, floor=10, seed=7)], minlength=6)
    assert few[:3] / few[:3].sum() == pytest.approx([60 / 99, 30 / 99, 9 / 99], abs=0.01)   # in proportion
    assert np.array_equal(picked, sampling.stratified_sample(groups, 2_000, floor=100, seed=7))
    assert not np.array_equal(picked, sampling.stratified_sample(groups, 2_000, floor=100, seed=8))
    assert np.array_equal(sampling.stratified_sample(groups[:500], 2_000), np.arange(500))   # small: all


# -- the sampled projection ------------------------------------------------------------------------

def test_sampled_fit_reads_chunks_and_puts_every_point_in_place(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    made = []
    monkeypatch.setattr(projection, "_reducer", lambda *a: (made.append(LinearReducer()) or made[-1], "stand-in"))
    latents = run.latents()
    assert isinstance(latents, np.memmap)                               # read memory-mapped, not loaded
    points, centroid_xy, fitted, backend = projection.fit_sampled(latents, run.centroids(), size=120, floor=10,
                                                                  chunk=64)
    (reducer,) = made
    assert backend == "stand-in" and fitted == len(reducer.fitted_rows) - K <= 120
    assert np.allclose(reducer.fitted_rows[-K:], run.centroids())       # the PEDCC points are fitted with it
    clusters = (np.asarray(latents) @ run.centroids().T).argmax(axis=1)
    sample = sampling.stratified_sample(clusters, 120, 10, 0)
    assert np.allclose(reducer.fitted_rows[:-K], latents[sample])
    assert (np.bincount(clusters[sample], minlength=K) >= 10).all()      # the 20-point cluster is in the fit
    assert all(len(x) <= 64 for x in reducer.transformed)                # bounded: chunk rows at a time
    assert sum(len(x) for x in reducer.transformed) == len(latents) - fitted
    assert np.allclose(points, np.asarray(latents) @ reducer.w, atol=1e-5)   # every row in its own place
    assert np.allclose(centroid_xy, run.centroids() @ reducer.w, atol=1e-5)


def test_a_big_run_is_projected_by_sample_and_transform_with_umap(tmp_path):
    """The real umap-learn on a small array with a low threshold: transformed points land with
    the fitted points of their own cluster."""
    run = make_run(tmp_path / "run")
    proj = projection.compute_projection(run, sample_above=300, sample_size=200, sample_floor=20, chunk=128)
    assert proj.sampled and proj.fitted <= 200 and proj.backend == "umap-learn" and proj.points.shape == (600, 2)
    assert np.isfinite(proj.points).all() and proj.centroids.shape == (K, 2)
    clusters = (np.asarray(run.latents()) @ run.centroids().T).argmax(axis=1)
    centres = np.stack([proj.points[clusters == c].mean(axis=0) for c in range(K)])
    nearest = np.linalg.norm(proj.points[:, None] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == clusters).mean() > 0.95
    again = projection.load_projection(run, sample_above=300, sample_size=200, sample_floor=20, chunk=128)
    assert again is not None and again.fitted == proj.fitted and np.array_equal(again.points, proj.points)


def test_a_small_run_is_fitted_whole_as_before(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    calls = []
    monkeypatch.setattr(projection, "fit", lambda latents, centroids, **kw: calls.append((len(latents), kw)) or (
        np.zeros((len(latents), 2), np.float32), np.zeros((len(centroids), 2), np.float32)))
    monkeypatch.setattr(projection, "fit_sampled", lambda *a, **k: pytest.fail("sampled a small run"))
    proj = projection.compute_projection(run)
    assert calls == [(600, {"seed": 0})] and not proj.sampled and proj.fitted == 0


# -- the cache key ---------------------------------------------------------------------------------

def test_cache_key_holds_the_sampling_settings_of_a_sampled_run_only(tmp_path):
    run = make_run(tmp_path / "run")
    before = json.dumps({"version": projection.VERSION, "latents": projection._stamp(run.file("latents.npy")),
                         "pedcc": projection._stamp(run.file("pedcc.npy")), **projection.DEFAULTS}, sort_keys=True)
    assert projection.source_key(run) == before          # under the threshold: the key it always had
    low = {"sample_above": 300, "sample_size": 200, "sample_floor": 20, "chunk": 128}
    key = projection.source_key(run, **low)
    assert json.loads(key)["sample"] == {"method": projection.SAMPLE_METHOD, "size": 200, "floor": 20,
                                         "chunk": 128, "seed": 0}
    for change in ({"sample_size": 300}, {"sample_floor": 5}, {"chunk": 64}):
        assert projection.source_key(run, **{**low, **change}) != key
    assert projection.source_key(run, **{**low, "sample_above": 400}) == key   # still sampled: same result
    assert projection.source_key(run, **{**low, "sample_above": 600}) == before  # now fitted whole
    (run.path / "config.json").write_text(json.dumps({"dataset": "digits", "train": {"seed": 3}}))
    assert projection.source_key(run, **low) != key                              # the sample's seed


def test_a_cached_projection_is_not_reused_under_other_sampling_settings(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    monkeypatch.setattr(projection, "_reducer", lambda *a: (LinearReducer(), "stand-in"))
    low = {"sample_above": 300, "sample_size": 200, "sample_floor": 20, "chunk": 128}
    projection.compute_projection(run, **low)
    assert projection.load_projection(run, **low).backend == "stand-in"
    assert projection.load_projection(run, **{**low, "sample_size": 150}) is None
    assert projection.load_projection(run) is None                   # default settings: fitted whole


# -- cuML ------------------------------------------------------------------------------------------

class FakeCupyArray:
    def __init__(self, array) -> None:
        self.array = array

    def get(self):
        return self.array


def fake_gpu(monkeypatch, devices: int) -> list:
    """Stand-ins for cuML (cuml.manifold.UMAP, results on the 'GPU') and cupy with `devices` GPUs:
    they check the calls this module makes, against cuML's documented interface, not cuML itself."""
    made = []

    class UMAP(LinearReducer):
        def __init__(self, *, n_neighbors=15, n_components=2, metric="euclidean", min_dist=0.1,
                     random_state=None, init="spectral"):
            super().__init__(n_neighbors=n_neighbors, n_components=n_components, metric=metric,
                             min_dist=min_dist, random_state=random_state, init=init)
            made.append(self)

        def fit_transform(self, x):
            return FakeCupyArray(super().fit_transform(x))

        def transform(self, x):
            return FakeCupyArray(super().transform(x))

    cuml, manifold = types.ModuleType("cuml"), types.ModuleType("cuml.manifold")
    manifold.UMAP, cuml.manifold = UMAP, manifold
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: devices))
    monkeypatch.setitem(sys.modules, "cuml", cuml)
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return made


def test_cuml_umap_is_used_when_it_imports_and_a_gpu_is_present(tmp_path, monkeypatch):
    made = fake_gpu(monkeypatch, devices=1)
    run = make_run(tmp_path / "run")
    low = {"sample_above": 300, "sample_size": 200, "sample_floor": 20, "chunk": 128}
    key = projection.source_key(run, **low)
    proj = projection.compute_projection(run, **low)
    (model,) = made
    assert proj.backend == "cuml" and proj.sampled
    assert model.kwargs == {"n_neighbors": 15, "n_components": 2, "metric": "cosine", "min_dist": 0.1,
                            "random_state": 0, "init": "spectral"}
    assert len(model.fitted_rows) == proj.fitted + K and all(len(x) <= 128 for x in model.transformed)
    assert np.allclose(proj.points, np.asarray(run.latents()) @ model.w, atol=1e-5)   # results came back from the GPU
    assert projection.source_key(run, **low) == key          # the backend is not part of the key


def test_no_gpu_or_no_cuml_means_umap_learn(monkeypatch):
    fake_gpu(monkeypatch, devices=0)
    assert projection.gpu_umap() is None
    monkeypatch.setitem(sys.modules, "cuml", None)           # not installed: the import fails
    assert projection.gpu_umap() is None
    assert projection._reducer(15, 0.1, 0)[1] == "umap-learn"


# -- the decimated plot ----------------------------------------------------------------------------

def big_table(sizes=(3_000, 1_500, 400, 7), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(clusters)
    n = len(clusters)
    return pd.DataFrame({"index": np.arange(n), "id": [f"x:{i}" for i in range(n)], "cluster": clusters,
                         "confidence": rng.uniform(0.3, 1, n).round(6), "margin": 0.1,
                         "label": (clusters + (rng.random(n) < 0.1)) % len(sizes)})


def test_decimated_figure_keeps_every_cluster_and_the_pedcc_points():
    table = big_table()
    n = len(table)
    points = np.random.default_rng(2).standard_normal((n, 2)).astype(np.float32)
    centroids = np.arange(2 * K, dtype=np.float32).reshape(K, 2)
    drawn = sampling.drawn_rows(table["cluster"].to_numpy(), max_points=1_000)
    assert len(drawn) <= 1_000
    fig = latent_figure(points, centroids, table, "cluster", drawn=drawn)
    gl = [t for t in fig.data if t.type == "scattergl"]
    assert [t.name for t in gl] == [f"cluster {c} ({int(np.sum(table['cluster'].to_numpy()[drawn] == c)):,} of {s:,})"
                                    for c, s in enumerate((3_000, 1_500, 400, 7))]
    assert gl[-1].name == "cluster 3 (7 of 7)"                        # the tiny cluster is drawn whole
    (pedcc,) = [t for t in fig.data if t.name == "PEDCC centroids"]
    assert list(pedcc.text) == [f"C{c}" for c in range(K)] and np.allclose(np.c_[pedcc.x, pedcc.y], centroids)
    custom = np.concatenate([np.asarray(t.customdata) for t in gl])
    index = custom[:, 0].astype(np.int64)
    assert sorted(index) == sorted(drawn)                             # each drawn image once, nothing else
    assert np.allclose(np.concatenate([np.c_[t.x, t.y] for t in gl]), points[index])
    cells = custom[:, 3].astype(np.int64)
    assert np.array_equal(drawn[cells], index)                        # hover cell -> the atlas of drawn rows
    assert np.allclose(custom[:, 2], table["confidence"].to_numpy()[index], atol=1e-6)

    # a lasso over some drawn points of two traces: Streamlit's selection event -> those images
    chosen = [(1, 0), (1, 5), (3, 2), (len(gl), 1)]                   # the last: a PEDCC star, not an image
    event = {"selection": {"points": [{"curve_number": c, "point_index": p,
                                       "customdata": list(np.asarray(fig.data[c].customdata)[p])}
                                      for c, p in chosen]}}
    expected = sorted(int(np.asarray(fig.data[c].customdata)[p][0]) for c, p in chosen[:3])
    assert selected_indices(event, n_images=n).tolist() == expected


def test_the_draw_limit_from_the_environment():
    assert sampling._limit(None) == sampling._limit("") == sampling._limit("many") == 100_000
    assert sampling._limit("250000") == 250_000 and sampling._limit("5") == 1_000


def test_a_run_under_the_limit_is_drawn_whole_as_before():
    table = big_table((300, 200))
    points = np.zeros((len(table), 2), np.float32)
    rows = sampling.drawn_rows(table["cluster"].to_numpy(), max_points=1_000)
    assert np.array_equal(rows, np.arange(len(table)))
    fig = latent_figure(points, np.zeros((2, 2), np.float32), table, "cluster")
    assert [t.name for t in fig.data[:2]] == ["cluster 0 (300)", "cluster 1 (200)"]
    assert np.asarray(fig.data[0].customdata).shape[1] == 3           # no hover-cell column
