"""The latent-space figure: class names and file names in the hover text, the PEDCC labels above
the points, the legend clear of the confidence colour bar, a selection carried between colourings."""
import numpy as np
import pandas as pd

from icbpl_app.figures import latent_figure, show_selected, trace_indices


def _table(n=30, k=3):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"index": np.arange(n), "id": [f"shapes/img_{i}.png" for i in range(n)],
                         "cluster": np.arange(n) % k, "confidence": rng.uniform(0, 1, n),
                         "margin": rng.uniform(0, 1, n), "label": (np.arange(n) + 1) % k})


def _figure(colour_by, names=("circle", "triangle", "<b>square</b>")):
    table = _table()
    rng = np.random.default_rng(1)
    return latent_figure(rng.normal(size=(len(table), 2)), rng.normal(size=(3, 2)), table, colour_by,
                         list(names) if names else None), table


def test_hover_names_the_class_and_the_file_as_the_galleries_do():
    for colour_by in ("cluster", "true label", "confidence"):
        fig, table = _figure(colour_by)
        for trace in fig.data[:-1]:
            first = trace_indices(fig)[list(fig.data).index(trace)]
            for i, text in zip(first, trace.text):
                label = int(table.loc[i, "label"])
                assert f"img_{i}.png" in text
                assert text.endswith("label " + ["circle", "triangle", "&lt;b&gt;square&lt;/b&gt;"][label])
            assert "customdata[1]" not in trace.hovertemplate      # never the class number
    fig, _ = _figure("cluster", names=None)
    assert fig.data[0].text[0].endswith("label 1")


def test_pedcc_labels_are_annotations_above_the_points():
    fig, _ = _figure("cluster")
    pedcc = fig.data[-1]
    assert pedcc.name == "PEDCC centroids" and pedcc.mode == "markers"
    assert [a.text for a in fig.layout.annotations] == ["C0", "C1", "C2"]


def test_confidence_legend_leaves_the_right_edge_to_the_colour_bar():
    fig, _ = _figure("confidence")
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y >= 1.0
    fig, _ = _figure("cluster")
    assert fig.layout.legend.orientation != "h"


def test_show_selected_marks_the_images_in_every_trace():
    fig, _ = _figure("cluster")
    show_selected(fig, [0, 4, 5])
    chosen = sorted(int(trace_indices(fig)[t][p]) for t, tr in enumerate(fig.data) if tr.selectedpoints
                    for p in tr.selectedpoints)
    assert chosen == [0, 4, 5]
    assert fig.data[-1].selectedpoints is None          # the PEDCC stars are not images


def test_a_big_plot_names_classes_but_leaves_file_names_to_the_galleries(monkeypatch):
    from icbpl_app import figures

    monkeypatch.setattr(figures, "HOVER_FILES_MAX", 10)       # 30 points drawn: above it
    fig, table = _figure("cluster")
    trace = fig.data[0]
    assert trace.text[0].startswith("label ") and ".png" not in "".join(trace.text)
    assert "customdata[1]" not in trace.hovertemplate and trace.hovertext is None
