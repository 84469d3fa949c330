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
LOSS_NAMES = {"total": "total", "mmd": "MMD to PEDCC", "aug": "augmentation consistency",
              "knn": "nearest neighbour", "cos": "min. cosine to PEDCC"}


def safe_text(text: str) -> str:
    """A user-named string (a class or file name) for a figure: Plotly renders tags in labels and
    hover text, and reads %{...} in hover templates, so both are escaped."""
    return html.escape(str(text)).replace("%", "&#37;")


def colour(i: int) -> str:
    return PALETTE[int(i) % len(PALETTE)]


def _marker_size(n: int) -> float:
    return 7 if n <= 2_000 else 5 if n <= 10_000 else 3 if n <= 40_000 else 2.5


def latent_figure(points: np.ndarray, centroids: np.ndarray, table, colour_by: str = "cluster",
                  class_names: list[str] | None = None, hover_key: str = "", height: int = 620,
                  drawn: np.ndarray | None = None) -> go.Figure:
    """UMAP scatter of a run: one WebGL trace per cluster (or class), or one coloured by
    confidence; PEDCC points as labelled stars. drawn: the rows of `table` to draw (None: all);
    when some are left out, each point's customdata ends with its position among the drawn rows
    (its hover thumbnail's cell) and the legend gives drawn and total counts."""
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
    label_part = "<br>label %{customdata[1]}" if has_labels else ""
    fig = go.Figure()
    if colour_by == "true label" and not has_labels:
        colour_by = "cluster"

    def name_of(c: int) -> str:
        if class_names and 0 <= c < len(class_names) and class_names[c] != str(c):
            return f"{c} {safe_text(class_names[c])}"
        return str(c)

    if colour_by == "confidence":
        fig.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="images", customdata=custom,
            marker=dict(size=size, color=confidence, colorscale="Viridis", cmin=float(confidence.min()),
                        cmax=float(confidence.max()), colorbar=dict(title="confidence", thickness=12),
                        opacity=0.85),
            text=[f"cluster {c}" for c in clusters] if n <= 20_000 else None,
            hovertemplate=("image %{customdata[0]}" + ("<br>%{text}" if n <= 20_000 else "") + label_part
                           + "<br>confidence %{customdata[2]:.3f}<extra></extra>")))
    else:
        groups = clusters if colour_by == "cluster" else labels
        totals = np.bincount(all_clusters if colour_by == "cluster" else all_labels[all_labels >= 0]) \
            if decimated else None
        for g in np.unique(groups):
            mask = groups == g
            what = f"cluster {g}" if colour_by == "cluster" else f"label {name_of(int(g))}"
            count = f"{int(mask.sum()):,} of {int(totals[g]):,}" if decimated and g >= 0 else str(int(mask.sum()))
            fig.add_trace(go.Scattergl(
                x=xy[mask, 0], y=xy[mask, 1], mode="markers", customdata=custom[mask],
                name=f"{what} ({count})", legendgroup=what,
                marker=dict(size=size, color=colour(int(g)), opacity=0.8),
                hovertemplate=("image %{customdata[0]}<br>" + what
                               + (label_part if colour_by == "cluster" else "")
                               + "<br>confidence %{customdata[2]:.3f}<extra></extra>")))
    k = len(centroids)
    fig.add_trace(go.Scatter(
        x=centroids[:, 0], y=centroids[:, 1], mode="markers+text", name="PEDCC centroids",
        text=[f"C{c}" for c in range(k)], textposition="top center",
        textfont=dict(size=13, color="#111111"),
        customdata=np.column_stack([-1 - np.arange(k), np.full(k, -1), np.ones(k)]).astype(np.float32),
        marker=dict(symbol="star", size=18, color=[colour(c) for c in range(k)],
                    line=dict(color="#111111", width=1.5)),
        hovertemplate="PEDCC point of cluster %{text}<extra></extra>"))
    fig.update_layout(
        height=height, dragmode="select", hovermode="closest", uirevision=hover_key or "latent",
        margin=dict(l=10, r=10, t=30, b=10), legend=dict(itemsizing="constant", title=colour_by),
        meta={"icbpl_hover": hover_key}, clickmode="event+select",
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False, scaleanchor="x", scaleratio=1))
    return fig


def trace_indices(fig: go.Figure) -> list[np.ndarray | None]:
    """Per trace, the image index of each point (None for the PEDCC trace), for selection fallback."""
    out = []
    for trace in fig.data:
        custom = getattr(trace, "customdata", None)
        if custom is None:
            out.append(None)
            continue
        first = np.asarray(custom)[:, 0].astype(np.int64)
        out.append(first if (first >= 0).all() else None)
    return out


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
    counts = conf.counts
    fig = go.Figure(go.Heatmap(
        z=counts, x=[safe_text(c) for c in conf.col_labels], y=[safe_text(r) for r in conf.row_labels],
        text=counts, texttemplate="%{text}",
        colorscale="Blues", colorbar=dict(title="images"),
        hovertemplate="%{y}<br>class %{x}<br>%{z} images<extra></extra>"))
    fig.update_layout(height=height or max(320, 34 * len(conf.row_labels) + 120),
                      margin=dict(l=10, r=10, t=30, b=10),
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
