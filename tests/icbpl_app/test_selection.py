"""Plotly selection -> image indices (point indices are per trace; customdata carries the image)."""
import numpy as np
import pandas as pd
import pytest

from icbpl_app.figures import latent_figure, trace_indices
from icbpl_app.selection import selected_indices


def event(points, box=None, lasso=None):
    return {"selection": {"points": points,
                          "point_indices": [p.get("point_index") for p in points if isinstance(p, dict)],
                          "box": box or [], "lasso": lasso or []}}


def test_customdata_rows_give_image_indices_whatever_the_trace():
    points = [
        {"curve_number": 0, "point_index": 0, "customdata": [17, 3, 0.9]},
        {"curve_number": 1, "point_index": 0, "customdata": [4, 1, 0.8]},      # same point_index, other trace
        {"curve_number": 2, "point_index": 5, "customdata": [250, 7, 0.5]},
    ]
    got = selected_indices(event(points, box=[{"x": [0, 1], "y": [0, 1]}]))
    assert got.tolist() == [4, 17, 250]
    assert got.dtype == np.int64


def test_typed_array_rows_arrive_as_objects_keyed_by_position():
    """What the browser really sends for numpy customdata (plotly's base64 typed arrays)."""
    points = [{"curve_number": 0, "point_number": 0, "point_index": 0, "x": 0.6, "y": 0.8,
               "customdata": {"0": 40, "1": 2, "2": 0.75}},
              {"curve_number": 2, "point_number": 3, "point_index": 3, "customdata": {"1": 5, "0": 7}},
              {"curve_number": 3, "point_index": 0, "customdata": {"0": -3, "1": -1}}]      # a PEDCC star
    assert selected_indices(event(points)).tolist() == [7, 40]


def test_scalar_customdata_and_float_encoding():
    points = [{"curve_number": 0, "point_index": 2, "customdata": 12.0},
              {"curve_number": 0, "point_index": 3, "customdata": "13"}]
    assert selected_indices(event(points)).tolist() == [12, 13]


def test_pedcc_markers_and_garbage_are_ignored():
    points = [{"curve_number": 3, "point_index": 0, "customdata": [-1, -1, 1.0]},    # PEDCC point C0
              {"curve_number": 3, "point_index": 4, "customdata": [-5, -1, 1.0]},
              {"curve_number": 0, "point_index": 1, "customdata": [2.5, 0, 0.1]},    # not an integer
              {"curve_number": 0, "point_index": 1, "customdata": [None]},
              "not a point",
              {"curve_number": 0, "point_index": 2, "customdata": [9, 0, 0.7]}]
    assert selected_indices(event(points)).tolist() == [9]


def test_duplicates_are_merged_and_out_of_range_dropped():
    points = [{"customdata": [5]}, {"customdata": [5]}, {"customdata": [99]}, {"customdata": [0]}]
    assert selected_indices(event(points), n_images=50).tolist() == [0, 5]


def test_empty_and_missing_selections():
    assert selected_indices(None).size == 0
    assert selected_indices({}).size == 0
    assert selected_indices({"selection": {"points": [], "box": [], "lasso": []}}).size == 0


def test_accepts_the_state_object_and_its_selection_attribute():
    class State(dict):
        @property
        def selection(self):
            return self["selection"]

    state = State(event([{"customdata": [3]}]))
    assert selected_indices(state).tolist() == [3]
    assert selected_indices(state["selection"]).tolist() == [3]


def test_fallback_to_per_trace_index_tables_without_customdata():
    tables = [np.array([10, 11, 12]), None, np.array([40, 41])]
    points = [{"curve_number": 0, "point_index": 2}, {"curve_number": 2, "point_index": 0},
              {"curve_number": 1, "point_index": 0},          # the PEDCC trace: no images
              {"curve_number": 2, "point_index": 9}]          # out of range
    assert selected_indices(event(points), trace_indices=tables).tolist() == [12, 40]


@pytest.mark.parametrize("colour_by", ["cluster", "true label", "confidence"])
def test_round_trip_through_the_real_figure(colour_by):
    """Selecting points of the latent figure by (trace, point index) maps back to the right images."""
    rng = np.random.default_rng(0)
    n, k = 200, 4
    table = pd.DataFrame({"index": np.arange(n), "cluster": rng.integers(0, k, n),
                          "confidence": rng.random(n), "margin": rng.random(n) / 4,
                          "label": rng.integers(0, 3, n)})
    points = rng.normal(size=(n, 2)).astype(np.float32)
    fig = latent_figure(points, rng.normal(size=(k, 2)), table, colour_by)
    tables = trace_indices(fig)
    picked, expected = [], set()
    for curve, trace in enumerate(fig.data):
        custom = np.asarray(trace.customdata)
        for pos in range(0, len(custom), 7):
            picked.append({"curve_number": curve, "point_index": pos, "customdata": custom[pos].tolist(),
                           "x": float(trace.x[pos]), "y": float(trace.y[pos])})
            if custom[pos][0] >= 0:
                image = int(custom[pos][0])
                expected.add(image)
                # the point really is that image's position in the projection
                assert trace.x[pos] == pytest.approx(points[image, 0])
    assert selected_indices(event(picked)).tolist() == sorted(expected)
    no_custom = [{k_: v for k_, v in p.items() if k_ != "customdata"} for p in picked]
    assert selected_indices(event(no_custom), trace_indices=tables).tolist() == sorted(expected)
    if sum(t > 0 for t in map(len, filter(lambda t: t is not None, tables))) > 1:
        # a trace's point indices restart at 0: without customdata or tables they would collide
        assert len({p["point_index"] for p in picked}) < len(expected)


def test_heatmap_cell_from_the_cell_markers_of_the_confusion_figure():
    """A click on the contingency heatmap arrives as a point of its invisible cell markers."""
    from icbpl_app.analysis import confusion
    from icbpl_app.figures import confusion_figure
    from icbpl_app.selection import heatmap_cell

    table = pd.DataFrame({"label": [0, 0, 1, 1, 2, 2, 2], "cluster": [1, 1, 0, 2, 2, 2, 0]})
    conf = confusion(table, 3, {"class_names": ["circle", "triangle", "square"]})
    fig = confusion_figure(conf)
    markers = fig.data[1]
    rows, cols = list(conf.row_clusters), [0, 1, 2]
    for p in range(len(markers.customdata)):
        r, c = (int(v) for v in markers.customdata[p])
        event = {"selection": {"points": [{"curve_number": 1, "point_index": p, "customdata": {"0": r, "1": c},
                                           "x": markers.x[p], "y": markers.y[p]}]}}
        assert heatmap_cell(event, rows, cols) == (rows[r], cols[c])
        assert markers.x[p] == fig.data[0].x[c] and markers.y[p] == fig.data[0].y[r]   # on its cell
    by_label = {"selection": {"points": [{"x": "square", "y": conf.row_labels[0]}]}}
    assert heatmap_cell(by_label, rows, cols, conf.row_labels, conf.col_labels) == (rows[0], 2)
    assert heatmap_cell({"selection": {"points": []}}, rows, cols) is None


def test_table_row():
    from icbpl_app.selection import table_row

    assert table_row({"selection": {"rows": [3], "columns": []}}) == 3
    assert table_row({"selection": {"rows": [], "columns": []}}) is None
    assert table_row(None) is None
