"""Confusion & metrics: the contingency table with clusters matched to classes (Hungarian),
ACC, NMI, ARI, many-to-one ACC and per-cluster purity; without labels, cluster sizes and
confidence. Clicking a cell of the table or a row of a cluster table shows those images, which can
be moved or flagged from here. Once the run has curation edits, every number, the table and the
drill-down count the curated clusters (or the model's, on request). A second run (sidebar) is
compared side by side."""
from __future__ import annotations

import streamlit as st

from functools import partial

from icbpl_app import curation as cur
from icbpl_app.analysis import agreement, confidence_summary, confusion, metric_summary
from icbpl_app.figures import class_name, confidence_figure, confusion_figure, safe_text, sizes_figure
from icbpl_app.gallery import cluster_table
from icbpl_app.selection import heatmap_cell, table_row
from icbpl_core.store.runs import open_run
from pages import common

common.entry()


def labelled_table(path: str, version: str, log_version: str, labelling: str):
    """(The run's assignments in this labelling, its cluster names, its curated state or None)."""
    table = common._assignments(path, version)
    if labelling == cur.MODEL:
        return table, {}, None
    state, _ = common._curated(path, version, log_version)
    return *cur.labelled(table, state, labelling), state


@st.cache_data(show_spinner=False, max_entries=32)
def numbers(path: str, version: str, log_version: str = "missing", labelling: str = cur.MODEL):
    run = open_run(path)
    table, names, state = labelled_table(path, version, log_version, labelling)
    metrics = run.metrics or {}
    k = int(metrics.get("n_clusters") or run.config.get("train", {}).get("n_clusters") or table["cluster"].max() + 1)
    if state is not None:
        k = max(state.clusters()) + 1
    summary = metric_summary(table, k)
    if state is not None:       # clusters a merge emptied are no longer in use
        summary["n_clusters"] = len([c for c in state.clusters() if state.size(c)])
    conf = confusion(table, k, metrics, names, drop_empty=state is not None) if "label" in table.columns else None
    stats = cluster_table(table, k)
    if state is not None:
        stats = stats[stats["size"] > 0].reset_index(drop=True)
        stats.insert(1, "name", [names.get(int(c), "") for c in stats["cluster"]])
    return summary, conf, stats, confidence_summary(table)


PICKS = "metrics_pick"      # run id -> what its gallery shows: {"cluster": c} or {"cluster": c, "label": l},
                            # and the labelling it was picked in


def pick_cell(run_id: str, key: str, rows: list[int], cols: list[int], row_labels: list[str],
              col_labels: list[str], labelling: str = cur.MODEL) -> None:
    """on_select of the contingency heatmap: a clicked cell shows its images."""
    cell = heatmap_cell(st.session_state.get(key), rows, cols, row_labels, col_labels)
    picks = st.session_state.setdefault(PICKS, {})
    if cell is None:
        picks.pop(run_id, None)
    else:
        picks[run_id] = {"cluster": int(cell[0]), "label": int(cell[1]), "labelling": labelling}


def pick_cluster(run_id: str, key: str, clusters: list[int], labelling: str = cur.MODEL) -> None:
    """on_select of a cluster table: a clicked row shows the cluster's images."""
    row = table_row(st.session_state.get(key))
    picks = st.session_state.setdefault(PICKS, {})
    if row is None or not 0 <= row < len(clusters):
        picks.pop(run_id, None)
    else:
        picks[run_id] = {"cluster": int(clusters[row]), "labelling": labelling}


def picked_gallery(run, table, column_key: str, labelling: str = cur.MODEL, names: dict | None = None,
                   state=None) -> None:
    """The images of the heatmap cell or table row last clicked for this run (in the labelling
    shown: a pick made in the other one is dropped), and the actions on them."""
    pick = st.session_state.get(PICKS, {}).get(run.id)
    if pick and pick.get("labelling", cur.MODEL) != labelling:
        st.session_state[PICKS].pop(run.id, None)
        pick = None
    if not pick:
        st.caption("Click a cell of the table or a row of the cluster table to see its images.")
        return
    class_names = common.class_names_of(run)
    chosen = table["cluster"] == pick["cluster"]
    title = f"Cluster {pick['cluster']}" + (f" · {names[pick['cluster']]}" if (names or {}).get(pick["cluster"]) else "")
    if "label" in pick:
        chosen &= table["label"] == pick["label"]
        title += f", true class {class_name(pick['label'], class_names)}"
    indices = table.loc[chosen, "index"].to_numpy()
    head, close = st.columns([5, 1], vertical_alignment="bottom")
    head.markdown(f"**{common.plain_label(title)}**: {len(indices):,} image{'s' if len(indices) != 1 else ''}")
    if close.button("Close", key=f"close-pick-{column_key}", icon=":material/close:"):
        st.session_state[PICKS].pop(run.id, None)
        st.rerun()
    if len(indices):
        common.html_gallery(run, indices, table, class_names, key=f"metrics-gallery-{column_key}",
                            extra=common.flags_of(state, indices) if state is not None else None)
        if state is not None:
            only = st.text_input(f"Act on: all {len(indices):,} images shown, or only these ids",
                                 key=f"metrics-only-{column_key}", placeholder="e.g. 3, 17, 40-45 (empty: all)")
            ids, problem = cur.selection([], only, None, len(table))
            if problem:
                st.error(problem, icon=":material/error:")
            else:
                ids = [i for i in ids if i in set(indices.tolist())] if only.strip() else indices.tolist()
                common.act_on_selection(run, ids, state, key=f"metrics-act-{run.id}")


def show(run, column_key: str, narrow: bool = False, labelling: str = cur.MODEL) -> dict:
    from icbpl_core.store.curation import LOG_NAME

    version = common.stamp(run, "assignments.csv")
    log_version = common.stamp(run, LOG_NAME)
    summary, conf, stats, confid = numbers(str(run.path), version, log_version, labelling)
    table, cluster_names, state = labelled_table(str(run.path), version, log_version, labelling)
    if state is None:
        state, _ = common.curated(run)      # the actions on a drill-down's images
    if labelling == cur.CURATED:
        st.caption("Clusters as curated: merged, split and moved images count where the edits put them.")
    per_row = 2 if narrow else 4       # two runs side by side: metric names stay whole
    if "acc" in summary:
        m = st.columns(per_row) + (st.columns(per_row) if narrow else [])
        m[0].metric("ACC (Hungarian)", f"{summary['acc']:.3f}", help="Best one-to-one matching of clusters to classes.")
        m[1].metric("NMI", f"{summary['nmi']:.3f}", help="Normalised mutual information.")
        m[2].metric("ARI", f"{summary['ari']:.3f}", help="Adjusted Rand index.")
        m[3].metric("Many-to-one ACC", f"{summary['acc_many_to_one']:.3f}",
                    help="Each cluster takes its majority class (several clusters may share one).")
        st.caption(f"{summary['n_clusters_used']} of {summary['n_clusters']} clusters used · "
                   f"{summary['n_samples']:,} images · mean confidence {confid['mean_confidence']:.3f}")
        st.markdown("**Contingency table** — rows: clusters, ordered by their matched class (Hungarian); "
                    "columns: true classes. The diagonal is the matching. Click a cell to see its images.")
        key = f"conf-{column_key}"
        st.plotly_chart(confusion_figure(conf), width="stretch", key=key, selection_mode="points",
                        on_select=partial(pick_cell, run.id, key, list(conf.row_clusters),
                                          list(range(len(conf.col_labels))),
                                          [safe_text(r) for r in conf.row_labels],
                                          [safe_text(c) for c in conf.col_labels], labelling))
        purity = stats[["cluster", *(["name"] if "name" in stats.columns else []), "size", "majority class",
                        "purity", "mean confidence"]].copy()
        names = common.class_names_of(run)
        purity["matched class"] = [conf.col_labels[conf.matched[c]] if c in conf.matched else "—"
                                   for c in purity["cluster"]]
        if names:
            purity["majority class"] = [names[c] if 0 <= c < len(names) else "—" for c in purity["majority class"]]
        st.markdown("**Per-cluster purity** (share of a cluster's images in its majority class); click a row "
                    "to see the cluster's images")
        key = f"purity-{column_key}"
        st.dataframe(purity, hide_index=True, width="stretch", key=key, selection_mode="single-row",
                     on_select=partial(pick_cluster, run.id, key, [int(c) for c in purity["cluster"]], labelling),
                     column_config={"purity": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                              format="percent"),
                                    "mean confidence": st.column_config.NumberColumn(format="%.3f")})
        picked_gallery(run, table, column_key, labelling, cluster_names, state)
    else:
        st.info("This data has no labels, so accuracy, NMI and ARI cannot be measured. Below: how the images "
                "spread over the clusters and how confidently they sit there.", icon=":material/info:")
        m = st.columns(per_row) + (st.columns(per_row) if narrow else [])
        m[0].metric("Clusters used", f"{summary['n_clusters_used']}/{summary['n_clusters']}")
        m[1].metric("Mean confidence", f"{confid['mean_confidence']:.3f}",
                    help="Cosine between an image's latent and its PEDCC point (1 = on it).")
        m[2].metric("Mean margin", f"{confid['mean_margin']:.3f}",
                    help="Cosine to the assigned point minus cosine to the second closest.")
        m[3].metric("Confidence < 0.5", f"{confid['low_confidence_share']:.1%}")
        st.plotly_chart(sizes_figure(stats), width="stretch", key=f"sizes-{column_key}")
        st.plotly_chart(confidence_figure(table), width="stretch", key=f"confidence-{column_key}")
        st.caption("Click a row to see the cluster's images.")
        key = f"clusters-{column_key}"
        st.dataframe(stats, hide_index=True, width="stretch", key=key, selection_mode="single-row",
                     on_select=partial(pick_cluster, run.id, key, [int(c) for c in stats["cluster"]], labelling),
                     column_config={"share": st.column_config.NumberColumn(format="percent")})
        picked_gallery(run, table, column_key, labelling, cluster_names, state)
    return summary


st.title("Confusion & metrics")
run = common.require_finished_run("metrics")
if run is None:
    st.stop()

curated, log_problem = common.curated(run)
if log_problem:
    st.warning(f"The model's clusters are shown without edits: {log_problem[:1].lower()}{log_problem[1:]}",
               icon=":material/warning:")
labelling = common.labelling(run, curated, "metrics")
other = common.compare_run()
if other is None:
    show(run, "main", labelling=labelling)
else:
    other_labelling = labelling if common.curated(other)[0].done else cur.MODEL
    left, right = st.columns(2)
    with left:
        st.markdown(f"### {run.id}")
        a = show(run, "main", narrow=True, labelling=labelling)
    with right:
        st.markdown(f"### {other.id}")
        b = show(other, "other", narrow=True, labelling=other_labelling)
    st.divider()
    st.subheader("Comparison")
    rows = []
    for key, label in (("acc", "ACC"), ("nmi", "NMI"), ("ari", "ARI"), ("acc_many_to_one", "many-to-one ACC"),
                       ("n_clusters_used", "clusters used")):
        if key in a or key in b:
            rows.append({"metric": label, run.id: a.get(key), other.id: b.get(key)})
    settings = []
    for key in ("dataset", "limit", "backbone", "mode"):
        settings.append({"setting": key, run.id: str(run.config.get(key)), other.id: str(other.config.get(key))})
    for key in ("n_clusters", "epochs", "w_mmd", "w_aug", "w_knn", "w_cos", "seed"):
        settings.append({"setting": key, run.id: str(run.config.get("train", {}).get(key)),
                         other.id: str(other.config.get("train", {}).get(key))})
    c1, c2 = st.columns(2)
    with c1:
        st.dataframe(rows, hide_index=True, width="stretch")
    with c2:
        st.dataframe(settings, hide_index=True, width="stretch")
    agree = agreement(common.assignments(run), common.assignments(other))
    if agree is None:
        st.caption("The two runs clustered different images, so their clusterings cannot be compared image by image.")
    else:
        st.markdown(f"**Agreement between the two clusterings** (same {len(common.assignments(run)):,} images): "
                    f"NMI {agree['nmi']:.3f} · ARI {agree['ari']:.3f} · "
                    f"{agree['matched_share']:.1%} of images in matching clusters")
