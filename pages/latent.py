"""Latent space: UMAP (cosine) of the run's latents with its PEDCC points; colour by cluster,
true label or confidence; hover shows the image; box / lasso selection opens a gallery. A run
with more than sampling.MAX_DRAWN images is drawn as a seeded sample that keeps every cluster
(the page says how many of how many); hover and selection work on the drawn points.

Once the run has curation edits the plot shows the curated clusters (names in the legend and the
hover), or the model's on request; a selection can be moved or flagged from here (one edit of the
run's log). A compared run is drawn beside it with its clusters matched to this run's (Hungarian)
in the same colours, and a selection in either plot shows in both."""
from __future__ import annotations

import json
import pickle
from functools import partial

import numpy as np

import streamlit as st

from icbpl_app import curation as cur
from icbpl_app import projection, sampling
from icbpl_app.analysis import match_clusters, matched_colours, same_images
from icbpl_app.figures import COLOUR_BY, class_name, latent_figure, show_selected
from icbpl_app.gallery import GalleryError, atlas_layout, hover_atlas
from icbpl_app.selection import selected_indices
from icbpl_core.store.runs import open_run
from pages import common

common.entry()

@st.cache_data(show_spinner=False, max_entries=16)
def cached_projection(path: str, version: str, cache_version: str):
    run = open_run(path)
    proj = projection.load_projection(run) or projection.compute_projection(run)
    return proj.points, proj.centroids


@st.cache_data(show_spinner=False, max_entries=16)
def cached_drawn(path: str, table_version: str, max_drawn: int):
    """(The rows the plot draws (sampling.drawn_rows), or None when it draws every image; how many images)."""
    table = common._assignments(path, table_version)
    rows = sampling.drawn_rows(table["cluster"].to_numpy(), max_drawn)
    return (None if len(rows) == len(table) else rows), len(table)


def labelled_table(path: str, table_version: str, log_version: str, labelling: str):
    """(The run's assignments in this labelling, its cluster names): curation.labelled."""
    table = common._assignments(path, table_version)
    if labelling == cur.MODEL:
        return table, {}
    state, _ = common._curated(path, table_version, log_version)
    return cur.labelled(table, state, labelling)


@st.cache_data(show_spinner=False, max_entries=24)
def cached_figure(path: str, version: str, cache_version: str, table_version: str, max_drawn: int,
                  colour_by: str, class_names: tuple | None, log_version: str = "missing",
                  labelling: str = cur.MODEL, colours: tuple | None = None, names: tuple | None = None):
    """The plot of a run in a labelling; colours, names: (cluster, value) pairs that replace the
    clusters' own colours and names (a compared run's, matched to the current run)."""
    points, centroids = cached_projection(path, version, cache_version)
    table, cluster_names = labelled_table(path, table_version, log_version, labelling)
    fig = latent_figure(points, centroids, table, colour_by, list(class_names) if class_names else None,
                        hover_key=hover_key(path, version), drawn=cached_drawn(path, table_version, max_drawn)[0],
                        cluster_names=dict(names) if names is not None else cluster_names,
                        colour_of=dict(colours) if colours else None)
    # The chart's widget id hashes its JSON, and a figure's JSON key order changes once it has
    # been through pickle (as every cache hit is): return the pickled form from the first run
    # too, or the first selection after a cache miss would be dropped as a new widget's.
    return pickle.loads(pickle.dumps(fig))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_atlas(path: str, table_version: str, max_drawn: int) -> list[bytes]:
    """The hover thumbnail tiles of the drawn points (every image unless the plot is decimated)."""
    return hover_atlas(open_run(path), cached_drawn(path, table_version, max_drawn)[0],
                       common._assignments(path, table_version))


def hover_key(path: str, version: str) -> str:
    return f"{open_run(path).id}:{version}"


def projection_of(run):
    """The run's projection: from the cache (memory, then disk) or fitted now, once."""
    version = common.stamp(run, "assignments.csv") + "/" + common.stamp(run, "latents.npy")
    cache_version = common.stamp(run, projection.CACHE_NAME)
    if projection.load_projection(run) is None:
        busy = projection.is_computing(run)
        n = len(common.assignments(run))
        how = (f"fitted on {min(projection.SAMPLE_SIZE, n):,} of them, the rest placed by the fitted model; "
               if n > projection.SAMPLE_ABOVE else "")
        message = ("Another tab or the background job is computing this run's UMAP projection; waiting for it…"
                   if busy else f"Computing the UMAP projection of {n:,} latents ({how}once per run; cached in "
                                "the run folder)…")
        with st.spinner(message, show_time=True):
            projection.compute_projection(run)
        cache_version = common.stamp(run, projection.CACHE_NAME)
    return version, cache_version


def media_urls(run, table_version: str) -> list[str] | None:
    """URLs of the hover thumbnail tiles (served by Streamlit's media endpoint), or None."""
    try:
        with st.spinner("Preparing the hover thumbnails (once per run)…"):
            tiles = cached_atlas(str(run.path), table_version, sampling.MAX_DRAWN)
    except (GalleryError, OSError, ValueError) as exc:
        st.caption(f"Hover thumbnails are not available: {exc}")
        return None
    mime = atlas_layout()["mime"]
    urls = [common.serve_media(data, mime, f"icbpl-atlas-{run.id}-{i}") for i, data in enumerate(tiles)]
    if all(urls):
        return urls
    import base64   # no media endpoint (tests): inline small atlases instead
    if sum(len(t) for t in tiles) > 3_000_000:
        return None
    return [f"data:{mime};base64," + base64.b64encode(t).decode("ascii") for t in tiles]


HOVER_JS = (common.APP.parent / "assets" / "latent_hover.js").read_text(encoding="utf-8")


def hover_script(run, version: str, table_version: str) -> None:
    urls = media_urls(run, table_version)
    if not urls:
        return
    cfg = {"key": hover_key(str(run.path), version), "urls": urls, **atlas_layout()}
    st.html("<script>" + HOVER_JS.replace("__ICBPL_HOVER_CONFIG__", json.dumps(cfg)) + "</script>",
            unsafe_allow_javascript=True)


SELECTIONS = "latent_selection"     # run id -> {"indices": [...], "colour": the colouring it was made on}
CARRIED = "latent_carried"          # run id -> {"indices": [...], "colour": the colouring it is shown on}


def remember_selection(run_id: str, key: str, colour_by: str) -> None:
    """on_select: keep what the user selected, whatever colouring they switch to next (every
    colouring is another figure, so another chart widget that starts empty)."""
    indices = selected_indices(st.session_state.get(key), n_images=None).tolist()
    if indices:
        st.session_state.setdefault(SELECTIONS, {})[run_id] = {"indices": indices, "colour": colour_by}
    else:                            # double-click: cleared
        clear_selection(run_id)


def remember_compared(run, other, key: str) -> None:
    """on_select of the compared run's plot: its selection becomes the current run's (the same
    images, by id), so both plots show it."""
    picked = selected_indices(st.session_state.get(key), n_images=None)
    if len(picked):
        indices = same_images(common.assignments(other), common.assignments(run), picked).tolist()
        st.session_state.setdefault(SELECTIONS, {})[run.id] = {"indices": indices, "colour": "compared"}
    else:
        clear_selection(run.id)


def clear_selection(run_id: str) -> None:
    st.session_state.setdefault(SELECTIONS, {}).pop(run_id, None)
    st.session_state.setdefault(CARRIED, {}).pop(run_id, None)


def kept_selection(run_id: str, colour_by: str, key: str | None = None) -> list[int]:
    """The run's selection. One the chart does not hold (made on another colouring, or before the
    user left the page: a chart forgets its selection then) is carried onto this figure, drawn
    selected there, until the user selects again or clears it."""
    stored = st.session_state.setdefault(SELECTIONS, {}).get(run_id)
    if not stored:
        return []
    held = key is not None and len(selected_indices(st.session_state.get(key))) > 0
    if stored["colour"] != colour_by or (key is not None and not held):
        carried = st.session_state.setdefault(CARRIED, {})
        if carried.get(run_id) != {"indices": stored["indices"], "colour": colour_by}:
            carried[run_id] = {"indices": stored["indices"], "colour": colour_by}
        stored["colour"] = colour_by
    return stored["indices"]


def draw(run, colour_by: str, key: str, labelling: str = cur.MODEL, colours: dict | None = None,
         names: dict | None = None, highlight=None, on_select=None):
    """One latent plot. The current run's shows its kept selection; a compared run's (on_select
    given) highlights `highlight`, the same images in it."""
    version, cache_version = projection_of(run)
    table_version = common.stamp(run, "assignments.csv")
    from icbpl_core.store.curation import LOG_NAME
    class_names = common.class_names_of(run)
    fig = cached_figure(str(run.path), version, cache_version, table_version, sampling.MAX_DRAWN, colour_by,
                        tuple(class_names) if class_names else None, common.stamp(run, LOG_NAME), labelling,
                        tuple(sorted(colours.items())) if colours else None,
                        tuple(sorted(names.items())) if names is not None else None)
    carried = st.session_state.get(CARRIED, {}).get(run.id) if on_select is None else None
    if carried and carried["colour"] == colour_by:
        show_selected(fig, carried["indices"])
    if highlight is not None and len(highlight):
        show_selected(fig, highlight)
    drawn, total = cached_drawn(str(run.path), table_version, sampling.MAX_DRAWN)
    if drawn is not None:
        st.caption(f"Showing {len(drawn):,} of {total:,} points: a seeded sample in which "
                   f"every cluster keeps its share, and at least {sampling.DRAWN_FLOOR:,} points (all of a smaller "
                   "cluster). Hover and selections work on the points drawn.")
    config = {"displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["toImage"]}
    event = st.plotly_chart(fig, key=key, on_select=on_select or partial(remember_selection, run.id, key, colour_by),
                            selection_mode=("box", "lasso", "points"), width="stretch", config=config)
    hover_script(run, version, table_version)
    return event


st.title("Latent space")
run = common.require_finished_run("latent space")
if run is None:
    st.stop()

curated, log_problem = common.curated(run)
if log_problem:
    st.warning(f"The model's clusters are shown without edits: {log_problem[:1].lower()}{log_problem[1:]}",
               icon=":material/warning:")
table = common.assignments(run)
has_labels = "label" in table.columns
options = [c for c in COLOUR_BY if has_labels or c != "true label"]
c1, c2 = st.columns([3, 2])
with c1:
    colour_by = st.radio("Colour by", options, horizontal=True, key="latent_colour",
                         help="Cluster: the PEDCC point each image is closest to (or its cluster as curated). "
                              "True label: the dataset's classes. Confidence: cosine to the assigned PEDCC point.")
    labelling = common.labelling(run, curated, "latent")
    table, cluster_names = cur.labelled(table, curated, labelling)
with c2:
    st.caption("Stars are the PEDCC points (labelled C0, C1, …). Drag to box-select, or pick the lasso in the "
               "plot's toolbar; hover a point to see its image; double-click to clear.")

kept_selection(run.id, colour_by, key=f"latent-{run.id}-{colour_by}")   # drawn selected if the chart has it not
other = common.compare_run()
if other is not None:
    other_state, _ = common.curated(other)
    other_labelling = cur.default_labelling(other_state)       # curated once it has edits, as on metrics
    other_table, other_names = cur.labelled(common.assignments(other), other_state, other_labelling)
    mapping = match_clusters(table, other_table)
    colours = matched_colours(mapping, table["cluster"].unique(), other_table["cluster"].unique())
    matched_names = {int(b): " ".join(filter(None, [other_names.get(int(b)), f"≈ {mapping[b]}" if b in mapping else "",
                                                     cluster_names.get(mapping.get(b, -1))]))
                     for b in set(mapping) | set(other_names)}
    kept = kept_selection(run.id, colour_by)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{run.id}**")
        event = draw(run, colour_by, key=f"latent-{run.id}-{colour_by}", labelling=labelling)
    with right:
        st.markdown(f"**{other.id}** (comparison" + (", curated)" if other_labelling == cur.CURATED else ")"))
        other_colour = colour_by if colour_by != "true label" or "label" in other_table.columns else "cluster"
        key = f"latent-cmp-{other.id}-{other_colour}"
        draw(other, other_colour, key=key, labelling=other_labelling, colours=colours, names=matched_names,
             highlight=same_images(table, other_table, kept) if kept else None,
             on_select=partial(remember_compared, run, other, key))
    shared = len(set(table["id"].astype(str)) & set(other_table["id"].astype(str)))
    st.caption(f"Matched clusters share a colour: each of {other.id}'s clusters is matched one-to-one to one of "
               f"{run.id}'s (Hungarian, on the {shared:,} images both runs clustered); '≈ 3' names its match. "
               "A selection in either plot shows the same images selected in the other"
               + (f" (those of the {shared:,} shared)." if shared < max(len(table), len(other_table)) else "."))
else:
    event = draw(run, colour_by, key=f"latent-{run.id}-{colour_by}", labelling=labelling)

indices = np.asarray([i for i in kept_selection(run.id, colour_by) if 0 <= i < len(table)], dtype=np.int64)
st.session_state.setdefault("selections", {})[run.id] = indices.tolist()   # the Export page offers these rows

h1, h2 = st.columns([4, 1], vertical_alignment="bottom")
h1.subheader(f"Selection: {len(indices):,} image{'s' if len(indices) != 1 else ''}")
if len(indices) and h2.button("Clear selection", key="latent_clear", icon=":material/deselect:"):
    clear_selection(run.id)
    st.rerun()
if len(indices) == 0:
    st.info("Select points with the box or lasso tool to see their images here; the Export page can then "
            "download just those rows.", icon=":material/select:")
else:
    chosen = table.set_index("index").loc[indices].reset_index()
    with st.container(key="latent-act"):
        common.act_on_selection(run, indices, curated, key=f"latent-act-{run.id}")
    s1, s2 = st.columns([1, 3])
    with s1:
        per_cluster = chosen["cluster"].value_counts().sort_index()
        st.dataframe({"cluster": [cur.cluster_label(curated, c) if labelling == cur.CURATED else f"cluster {c}"
                                  for c in per_cluster.index],
                      "images": per_cluster.tolist()}, hide_index=True,
                     width="stretch", height=min(400, 38 + 35 * len(per_cluster)))
        if has_labels:
            names = common.class_names_of(run)
            per_label = chosen["label"].value_counts().sort_index()
            st.dataframe({"label": [class_name(i, names) for i in per_label.index],
                          "images": per_label.tolist()}, hide_index=True, width="stretch",
                         height=min(400, 38 + 35 * len(per_label)))
    with s2:
        common.html_gallery(run, indices, table, common.class_names_of(run), title="Selected images",
                            extra=common.flags_of(curated, indices),
                            key=f"latent-gallery-{run.id}")
