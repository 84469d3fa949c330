"""The result pages' curated labelling and the linked comparison of two runs, on small tables:
curation.labelled, analysis.confusion with names and emptied clusters, analysis.match_clusters,
matched_colours and same_images, and latent_figure's cluster names and colours."""
import numpy as np
import pandas as pd

from icbpl_app import curation as cur
from icbpl_app.analysis import confusion, match_clusters, matched_colours, same_images
from icbpl_app.figures import PALETTE, latent_figure
from icbpl_core.store.curation import replay


def table(clusters, labels=None, ids=None):
    n = len(clusters)
    out = pd.DataFrame({"index": np.arange(n), "id": ids if ids is not None else [f"img{i}" for i in range(n)],
                        "cluster": np.asarray(clusters), "confidence": np.linspace(0.5, 0.9, n),
                        "margin": np.full(n, 0.1)})
    if labels is not None:
        out["label"] = np.asarray(labels)
    return out


def edited(raw, *edits):
    raw = np.asarray(raw, dtype=np.int64)
    entries = [{**e, "seq": i + 1} for i, e in enumerate(edits)]
    for e in entries:
        if e["op"] == "split":
            e["into"] = [e["cluster"], int(raw.max()) + 1]
    return replay(entries, raw, int(raw.max()) + 1)


def test_labelled_gives_the_model_or_the_curated_clusters_and_names():
    raw = [0, 0, 1, 1, 2, 2]
    state = edited(raw, {"op": "merge", "clusters": [0, 2]}, {"op": "name", "cluster": 0, "name": "loops"})
    assert cur.default_labelling(state) == cur.CURATED
    assert cur.default_labelling(edited(raw)) == cur.MODEL
    model, names = cur.labelled(table(raw), state, cur.MODEL)
    assert model["cluster"].tolist() == raw and names == {}
    curated, names = cur.labelled(table(raw), state, cur.CURATED)
    assert curated["cluster"].tolist() == [0, 0, 1, 1, 0, 0] and curated["model cluster"].tolist() == raw
    assert names == {0: "loops"}


def test_confusion_names_clusters_and_leaves_out_those_a_merge_emptied():
    labels = [0, 0, 1, 1, 2, 2]
    curated = table([0, 0, 1, 1, 0, 0], labels)        # cluster 2 merged into 0: empty
    conf = confusion(curated, 3, None, {0: "loops"}, drop_empty=True)
    assert conf.row_clusters == [0, 1] and conf.counts.sum() == 6
    assert conf.row_labels[0].startswith("cluster 0 · loops → ")
    assert 2 not in conf.matched
    whole = confusion(curated, 3)
    assert whole.row_clusters[-1] == 2 and len(whole.row_labels) == 3


def test_two_runs_clusters_are_matched_on_the_images_they_share():
    a = table([0, 0, 1, 1, 2, 2])
    b = table([5, 5, 3, 3, 4, 4, 7], ids=[f"img{i}" for i in range(7)])     # b has one more image
    b = b.iloc[[1, 0, 2, 3, 5, 4, 6]].reset_index(drop=True)                # in another order
    mapping = match_clusters(a, b)
    assert mapping == {5: 0, 3: 1, 4: 2}
    colours = matched_colours(mapping, a["cluster"].unique(), b["cluster"].unique())
    assert colours[5] == 0 and colours[3] == 1 and colours[4] == 2
    assert colours[7] not in (0, 1, 2)                  # unmatched: a colour no cluster of a has
    assert match_clusters(a, table([0, 1], ids=["x", "y"])) == {}


def test_same_images_follow_ids_not_positions():
    a = table([0, 0, 1, 1])
    b = table([1, 1, 0, 0], ids=["img3", "img2", "img1", "other"])
    assert same_images(a, b, [1, 3]).tolist() == [0, 2]        # img1 -> b's 2, img3 -> b's 0
    assert same_images(b, a, [3]).tolist() == []               # "other" is not in a


def test_latent_figure_names_and_colours_clusters_as_given():
    t = table([0, 0, 1, 1, 2, 2])
    points, centroids = np.random.default_rng(0).normal(size=(6, 2)), np.zeros((3, 2))
    fig = latent_figure(points, centroids, t, cluster_names={1: "<b>ones</b>"}, colour_of={0: 5, 1: 6, 2: 7})
    traces = {tr.name: tr for tr in fig.data if tr.type == "scattergl"}
    assert "cluster 1 · &lt;b&gt;ones&lt;/b&gt; (2)" in traces              # named, as text
    assert traces["cluster 0 (2)"].marker.color == PALETTE[5]
    assert "cluster 1 · &lt;b&gt;ones&lt;/b&gt;" in traces["cluster 1 · &lt;b&gt;ones&lt;/b&gt; (2)"].hovertemplate
    stars = fig.data[-1]
    assert list(stars.marker.color) == [PALETTE[5], PALETTE[6], PALETTE[7]]
