"""Plotly selections -> image indices.

Plotly numbers the points of a selection per trace (`point_index` restarts at 0 in every
trace), so the latent-space plot carries each point's image index in its `customdata`
(first element when customdata is a row; a typed-array row arrives as {"0": index, ...})
and marks points that are no image (the PEDCC
markers) with a negative index. `selected_indices` reads a selection event as Streamlit
delivers it (st.plotly_chart(..., on_select="rerun")) and returns sorted, unique image
indices; when a point has no customdata it falls back to the trace's own index table.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _selection_of(event) -> Mapping | None:
    if event is None:
        return None
    if isinstance(event, Mapping) and "selection" in event:
        return event["selection"]
    selection = getattr(event, "selection", None)
    if selection is not None:
        return selection
    if isinstance(event, Mapping) and ("points" in event or "point_indices" in event):
        return event
    return None


def _first(value):
    """customdata is a scalar or a row whose first element is the index. A row arrives as a
    list, or, when the figure sent it as a typed array (plotly's base64 'bdata', what numpy
    customdata becomes), as an object keyed by position: {"0": 17, "1": 3, "2": 0.9}."""
    if isinstance(value, Mapping):
        if "0" in value:
            return value["0"]
        if 0 in value:
            return value[0]
        keys = sorted((k for k in value if _as_index(k) is not None), key=lambda k: int(float(k)))
        return value[keys[0]] if keys else None
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    if isinstance(value, np.ndarray):
        return value.ravel()[0] if value.size else None
    return value


def _as_index(value) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(number) or number != int(number):
        return None
    return int(number)


def selected_indices(event, trace_indices: Sequence[Sequence[int]] | None = None,
                     n_images: int | None = None) -> np.ndarray:
    """Image indices of the selected points, sorted and unique (int64).

    event: the st.plotly_chart return value, its `selection`, or a plain dict of either.
    trace_indices: optional per-trace image indices (trace_indices[curve][point_index]),
    used for points that carry no customdata. n_images: drop indices outside 0..n-1."""
    selection = _selection_of(event)
    if not selection:
        return np.zeros(0, dtype=np.int64)
    points = selection.get("points") if isinstance(selection, Mapping) else getattr(selection, "points", None)
    out: list[int] = []
    for point in points or []:
        if not isinstance(point, Mapping):
            continue
        index = None
        custom = point.get("customdata", point.get("custom_data"))
        if custom is not None:
            index = _as_index(_first(custom))
        elif trace_indices is not None:
            curve = _as_index(point.get("curve_number", point.get("curveNumber")))
            pos = _as_index(point.get("point_index", point.get("pointIndex", point.get("point_number"))))
            if curve is not None and pos is not None and 0 <= curve < len(trace_indices) \
                    and trace_indices[curve] is not None and 0 <= pos < len(trace_indices[curve]):
                index = int(trace_indices[curve][pos])
        if index is None or index < 0:
            continue        # not an image (a PEDCC marker) or unreadable
        if n_images is not None and index >= n_images:
            continue
        out.append(index)
    return np.unique(np.asarray(out, dtype=np.int64))


def heatmap_cell(event, row_keys: Sequence, col_keys: Sequence, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None):
    """The (row key, column key) of the heatmap cell a selection event picked (the last point of
    it), or None. A point names its cell by position (its customdata, as figures.confusion_figure's
    cell markers carry it, or a heatmap's `point_index`, as [row, column]) or by its axis labels
    (`x`, `y`, as drawn: row_labels / col_labels)."""
    selection = _selection_of(event)
    points = (selection.get("points") if isinstance(selection, Mapping) else getattr(selection, "points", None)) \
        if selection else None
    for point in reversed(list(points or [])):
        if not isinstance(point, Mapping):
            continue
        custom = point.get("customdata", point.get("custom_data"))
        if isinstance(custom, Mapping):
            custom = [custom.get("0", custom.get(0)), custom.get("1", custom.get(1))]
        pos = custom if custom is not None else point.get("point_index", point.get("pointIndex"))
        if isinstance(pos, Mapping):
            pos = [pos.get("0", pos.get(0)), pos.get("1", pos.get(1))]
        if isinstance(pos, (list, tuple)) and len(pos) == 2:
            r, c = _as_index(pos[0]), _as_index(pos[1])
            if r is not None and c is not None and 0 <= r < len(row_keys) and 0 <= c < len(col_keys):
                return row_keys[r], col_keys[c]
        if row_labels is not None and col_labels is not None:
            y, x = point.get("y"), point.get("x")
            if y in list(row_labels) and x in list(col_labels):
                return row_keys[list(row_labels).index(y)], col_keys[list(col_labels).index(x)]
    return None


def table_row(event) -> int | None:
    """The row a dataframe selection event picked (st.dataframe(on_select=...)), or None."""
    selection = _selection_of(event)
    rows = (selection.get("rows") if isinstance(selection, Mapping) else getattr(selection, "rows", None)) \
        if selection else None
    return int(rows[-1]) if rows else None
