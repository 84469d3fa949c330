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
