"""Plotly figures of the app (built from plain arrays and tables; no Streamlit here).

The latent-space scatter uses WebGL (Scattergl) so 70,000 points stay smooth; every image
point carries [image index, label, confidence] in customdata (see selection.py); the PEDCC
points are a separate, labelled marker trace whose customdata is negative. A run with more
points than the page draws smoothly is drawn decimated (sampling.drawn_rows: a seeded sample
that keeps every cluster); its points then carry a fourth value, their cell in the hover
thumbnail atlas of the drawn points (gallery.hover_atlas).
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from .progress import LOSS_TERMS, METRIC_NAMES

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
           "#e6550d", "#31a354", "#756bb1", "#636363"]
COLOUR_BY = ("cluster", "true label", "confidence")
HOVER_FILES_MAX = 20_000      # drawn points up to which hover names each point's file
LOSS_NAMES = {"total": "total", "mmd": "MMD to PEDCC", "aug": "augmentation consistency",
              "knn": "nearest neighbour", "cos": "min. cosine to PEDCC"}


def safe_text(text: str) -> str:
    """A user-named string (a class or file name) for a figure: Plotly renders tags in labels and
    hover text, and reads %{...} in hover templates, so both are escaped."""
    return html.escape(str(text)).replace("%", "&#37;")


def class_name(label: int, class_names: list[str] | None) -> str:
    """A class as the app names it everywhere (plots, galleries, tables): its name when the data
    has names, else its number."""
    label = int(label)
    if class_names and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def colour(i: int) -> str:
    return PALETTE[int(i) % len(PALETTE)]


def _marker_size(n: int) -> float:
    return 7 if n <= 2_000 else 5 if n <= 10_000 else 3 if n <= 40_000 else 2.5


def latent_figure(points: np.ndarray, centroids: np.ndarray, table, colour_by: str = "cluster",
                  class_names: list[str] | None = None, hover_key: str = "", height: int = 620,
                  drawn: np.ndarray | None = None, cluster_names: dict[int, str] | None = None,
                  colour_of: dict[int, int] | None = None) -> go.Figure:
    """UMAP scatter of a run: one WebGL trace per cluster (or class), or one coloured by
    confidence; PEDCC points as labelled stars. drawn: the rows of `table` to draw (None: all);
    when some are left out, each point's customdata ends with its position among the drawn rows
    (its hover thumbnail's cell) and the legend gives drawn and total counts. cluster_names:
    names shown after a cluster's number in the legend and the hover ("cluster 3 · loops");
    colour_of: each cluster's colour number (default its own), so that two plots can draw
    matched clusters alike; PEDCC point c takes cluster c's colour."""
    rows = np.arange(len(table)) if drawn is None else np.asarray(drawn, dtype=np.int64)
    decimated = len(rows) < len(table)
    n = len(rows)
    index = table["index"].to_numpy(dtype=np.int64)[rows]
    all_clusters = table["cluster"].to_numpy(dtype=np.int64)
    clusters = all_clusters[rows]
    has_labels = "label" in table.columns
    all_labels = table["label"].to_numpy(dtype=np.int64) if has_labels else np.full(len(table), -1)
    labels = all_labels[rows]
    confidence = table["confidence"].to_numpy(dtype=np.float32)[rows]
    xy = np.asarray(points, dtype=np.float32)[index]
    columns = [index, labels, confidence] + ([np.arange(n)] if decimated else [])
    custom = np.column_stack(columns).astype(np.float32)
    size = _marker_size(n)
    fig = go.Figure()
    if colour_by == "true label" and not has_labels:
        colour_by = "cluster"

    def name_of(c: int) -> str:
        return safe_text(class_name(c, class_names))

    names = cluster_names or {}
    colour_of = colour_of or {}

    def cluster_of(c: int) -> str:
        return f"cluster {int(c)}" + (f" · {safe_text(names[int(c)])}" if names.get(int(c)) else "")

    def colour_for(c: int) -> str:
        return colour(colour_of.get(int(c), int(c)))

    # Per point: its class by name, as galleries show it, and up to HOVER_FILES_MAX points its file
    # (or dataset id) and, when not its trace's own, its cluster (each string costs the page's
    # payload: 100,000 points with both double it).
    detailed = n <= HOVER_FILES_MAX
    files = table["id"].astype(str).to_numpy()[rows] if detailed and "id" in table.columns else None
    label_names = {int(c): name_of(int(c)) for c in np.unique(labels)} if has_labels else {}
    text = np.asarray([(safe_text(files[j]) if files is not None else "")
                       + ("<br>" if files is not None and has_labels else "")
                       + (f"label {label_names[int(labels[j])]}" if has_labels else "") for j in range(n)],
                      dtype=object)
    cluster_text = np.asarray([cluster_of(c) for c in clusters], dtype=object) if detailed else None

    def hover(cluster: int | None = None, mask=None) -> dict:
        """The hover of a trace: image index, its text, its cluster (the trace's, or per point)."""
        parts = ["image %{customdata[0]}" + (": %{text}" if files is not None else "")
                 + ("<br>%{text}" if files is None and has_labels else "")]
        out = {"text": (text if mask is None else text[mask]).tolist()} if files is not None or has_labels else {}
        if cluster is not None:
            parts.append(cluster_of(cluster))
        elif cluster_text is not None:
            parts.append("%{hovertext}")
            out["hovertext"] = (cluster_text if mask is None else cluster_text[mask]).tolist()
        out["hovertemplate"] = "<br>".join(parts) + "<br>confidence %{customdata[2]:.3f}<extra></extra>"
        return out

    if colour_by == "confidence":
        fig.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="images", customdata=custom,
            marker=dict(size=size, color=confidence, colorscale="Viridis", cmin=float(confidence.min()),
                        cmax=float(confidence.max()),
                        colorbar=dict(title="confidence", thickness=12, len=0.8, y=0.4, yanchor="middle"),
                        opacity=0.85),
            **hover()))
    else:
        groups = clusters if colour_by == "cluster" else labels
        totals = np.bincount(all_clusters if colour_by == "cluster" else all_labels[all_labels >= 0]) \
            if decimated else None
        for g in np.unique(groups):
            mask = groups == g
            what = cluster_of(g) if colour_by == "cluster" else f"label {name_of(int(g))}"
            count = f"{int(mask.sum()):,} of {int(totals[g]):,}" if decimated and g >= 0 else str(int(mask.sum()))
            fig.add_trace(go.Scattergl(
                x=xy[mask, 0], y=xy[mask, 1], mode="markers", customdata=custom[mask],
                name=f"{what} ({count})", legendgroup=what,
                marker=dict(size=size, color=colour_for(g) if colour_by == "cluster" else colour(int(g)), opacity=0.8),
                **hover(int(g) if colour_by == "cluster" else None, mask)))
    k = len(centroids)
    fig.add_trace(go.Scatter(
        x=centroids[:, 0], y=centroids[:, 1], mode="markers", name="PEDCC centroids",
        text=[f"C{c}" for c in range(k)],
        customdata=np.column_stack([-1 - np.arange(k), np.full(k, -1), np.ones(k)]).astype(np.float32),
        marker=dict(symbol="star", size=18, color=[colour_for(c) for c in range(k)],
                    line=dict(color="#111111", width=1.5)),
        hovertemplate="PEDCC point of cluster %{text}<extra></extra>"))
    # The stars' labels are annotations: Plotly draws those above every trace, the WebGL points too
    # (a trace's own text would sit under them).
    fig.update_layout(annotations=[
        dict(x=float(centroids[c, 0]), y=float(centroids[c, 1]), text=f"C{c}", showarrow=False, yshift=16,
             font=dict(size=13, color="#111111"), bgcolor="rgba(255,255,255,0.75)", borderpad=1)
        for c in range(k)])
    legend = dict(itemsizing="constant", title=colour_by)
    if colour_by == "confidence":      # the colour bar takes the right edge: the legend goes above the plot
        legend.update(orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom", title=None)
    fig.update_layout(
        height=height, dragmode="select", hovermode="closest", uirevision=hover_key or "latent",
        margin=dict(l=10, r=10, t=30, b=10), legend=legend,
        meta={"icbpl_hover": hover_key}, clickmode="event+select",
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False, scaleanchor="x", scaleratio=1))
    return fig


def show_selected(fig: go.Figure, indices) -> go.Figure:
    """Mark the images `indices` as selected in a latent figure (each image trace's
    selectedpoints), so a selection made on another colouring of the plot shows on this one."""
    wanted = np.asarray(indices, dtype=np.int64)
    for trace, first in zip(fig.data, trace_indices(fig)):
        if first is not None:
            trace.selectedpoints = np.flatnonzero(np.isin(first, wanted)).tolist()
    return fig


def trace_indices(fig: go.Figure) -> list[np.ndarray | None]:
    """Per trace, the image index of each point (None for the PEDCC trace), for selection fallback."""
    out = []
    for trace in fig.data:
        custom = getattr(trace, "customdata", None)
        if custom is None:
            out.append(None)
            continue
        first = _array(custom)[:, 0].astype(np.int64)
        out.append(first if (first >= 0).all() else None)
    return out


def _array(value) -> np.ndarray:
    """A figure's array, also in the typed form a figure holds after pickling:
    {"dtype": "f4", "bdata": base64, "shape": "n, m"}."""
    if isinstance(value, dict) and "bdata" in value:
        import base64
        shape = tuple(int(x) for x in str(value.get("shape", "-1")).split(","))
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).reshape(shape)
    return np.asarray(value)


def _epoch_axis(n_epochs: int) -> dict:
    return dict(title="epoch", tickmode="linear", tick0=1, dtick=max(1, round(n_epochs / 10)))


def loss_figure(history_table, height: int = 320) -> go.Figure:
    """Loss per term against epochs (total on the right axis)."""
    fig = go.Figure()
    if len(history_table):
        for term in LOSS_TERMS:
            col = f"loss_{term}"
            if col in history_table.columns:
                fig.add_trace(go.Scatter(x=history_table["epoch"], y=history_table[col], mode="lines+markers",
                                         name=LOSS_NAMES.get(term, term), yaxis="y2" if term == "total" else "y",
                                         line=dict(dash="dot" if term == "total" else "solid")))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), title="losses per term",
                      xaxis=_epoch_axis(len(history_table)), yaxis=dict(title="loss term"),
                      yaxis2=dict(title="total", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def metric_figure(tables: dict[str, object], height: int = 320) -> go.Figure:
    """ACC / NMI / ARI against epochs for one or more runs ({name: history table})."""
    fig = go.Figure()
    dashes = ["solid", "dash", "dot"]
    for r, (name, table) in enumerate(tables.items()):
        for m, metric in enumerate(METRIC_NAMES):
            if len(table) and metric in table.columns:
                fig.add_trace(go.Scatter(x=table["epoch"], y=table[metric], mode="lines+markers",
                                         name=f"{metric.upper()}" + (f" · {name}" if len(tables) > 1 else ""),
                                         line=dict(color=colour(m), dash=dashes[r % len(dashes)])))
    longest = max([len(t) for t in tables.values()] or [0])
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), title="clustering metrics per epoch",
                      xaxis=_epoch_axis(longest), yaxis=dict(title="score", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def confusion_figure(conf, height: int | None = None) -> go.Figure:
    """The contingency heatmap. Plotly selects no heatmap cells, so an invisible marker sits on every
    cell (customdata: [row, column]) to make cells clickable (selection.heatmap_cell reads it)."""
    counts = conf.counts
    xs, ys = [safe_text(c) for c in conf.col_labels], [safe_text(r) for r in conf.row_labels]
    fig = go.Figure(go.Heatmap(
        z=counts, x=xs, y=ys, text=counts, texttemplate="%{text}",
        colorscale="Blues", colorbar=dict(title="images"), hoverinfo="skip"))
    rows, cols = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    hidden = dict(marker=dict(opacity=0))
    fig.add_trace(go.Scatter(
        x=[xs[c] for c in cols.ravel()], y=[ys[r] for r in rows.ravel()], mode="markers", showlegend=False,
        customdata=np.column_stack([rows.ravel(), cols.ravel()]), text=counts.ravel(),
        marker=dict(symbol="square", size=28, opacity=0, color="#000000"), selected=hidden, unselected=hidden,
        hovertemplate="%{y}<br>class %{x}<br>%{text} images (click: show them)<extra></extra>"))
    fig.update_layout(height=height or max(320, 34 * len(conf.row_labels) + 120),
                      margin=dict(l=10, r=10, t=30, b=10), clickmode="event+select", dragmode=False,
                      hovermode="closest", hoverdistance=-1,   # the nearest cell's marker, anywhere in the cell
                      xaxis=dict(title="true class", type="category", side="top"),
                      yaxis=dict(title="cluster (matched class)", type="category", autorange="reversed"))
    return fig


def sizes_figure(cluster_table, height: int = 300) -> go.Figure:
    fig = go.Figure(go.Bar(x=[str(c) for c in cluster_table["cluster"]], y=cluster_table["size"],
                           marker_color=[colour(c) for c in cluster_table["cluster"]],
                           hovertemplate="cluster %{x}: %{y} images<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), title="cluster sizes",
                      xaxis=dict(title="cluster", type="category"), yaxis=dict(title="images"))
    return fig


def confidence_figure(assignments, height: int = 300) -> go.Figure:
    fig = go.Figure()
    for c in sorted(assignments["cluster"].unique()):
        fig.add_trace(go.Box(y=assignments.loc[assignments["cluster"] == c, "confidence"], name=str(c),
                             marker_color=colour(int(c)), boxpoints=False))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), showlegend=False,
                      title="confidence (cosine to the assigned PEDCC point) per cluster",
                      xaxis=dict(title="cluster", type="category"), yaxis=dict(title="confidence"))
    return fig
