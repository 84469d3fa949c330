"""Clusters & neighbours: per cluster its size, purity, most and least confident images;
an image's k nearest neighbours in latent space and in backbone feature space."""
from __future__ import annotations

import streamlit as st

from icbpl_app.figures import sizes_figure
from icbpl_app.gallery import cluster_table, cluster_view, nearest
from pages import common

common.entry()

st.title("Clusters & neighbours")
run = common.require_finished_run("clusters")
if run is None:
    st.stop()

table = common.assignments(run)
metrics = common.metrics(run)
names = common.class_names_of(run)
n_clusters = int(metrics.get("n_clusters") or run.config.get("train", {}).get("n_clusters") or table["cluster"].max() + 1)
has_labels = "label" in table.columns
stats = cluster_table(table, n_clusters)

top = st.columns([3, 2])
with top[0]:
    shown = stats.copy()
    if has_labels and names:
        shown["majority class"] = [names[c] if 0 <= c < len(names) else "—" for c in shown["majority class"]]
    st.dataframe(shown, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(shown)),
                 column_config={"share": st.column_config.NumberColumn(format="percent"),
                                "purity": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")
                                if has_labels else None,
                                "mean confidence": st.column_config.NumberColumn(format="%.3f"),
                                "min confidence": st.column_config.NumberColumn(format="%.3f"),
                                "mean margin": st.column_config.NumberColumn(format="%.3f")})
with top[1]:
    st.plotly_chart(sizes_figure(stats), width="stretch")

st.divider()
used = [int(c) for c in stats.loc[stats["size"] > 0, "cluster"]]
c1, c2 = st.columns([2, 3])
with c1:
    biggest = int(stats.loc[stats["size"].idxmax(), "cluster"])
    cluster = st.selectbox("Cluster", used, key="cl_cluster", index=used.index(biggest),
                           format_func=lambda c: f"cluster {c} ({int(stats.loc[c, 'size'])} images)")
with c2:
    per_row = st.slider("Images per list", 6, 24, 12, step=6, key="cl_n")
view = cluster_view(table, cluster, min(per_row, max(1, (int(stats.loc[cluster, 'size']) + 1) // 2)))
m = st.columns(4)
m[0].metric("Size", f"{view.size:,}")
m[1].metric("Share of images", f"{view.size / max(1, len(table)):.1%}")
m[2].metric("Mean confidence", f"{view.mean_confidence:.3f}")
if view.purity is not None:
    majority = names[view.majority_class] if names else str(view.majority_class)
    m[3].metric("Purity", f"{view.purity:.1%}",
                help=f"Share of its images in its majority class ({common.plain_label(majority)}).")
else:
    m[3].metric("Purity", "no labels")

st.caption("Click an image's button to see its nearest neighbours below.")
st.markdown("**Most confident** (closest to the cluster's PEDCC point)")
clicked = common.button_gallery(run, view.most_confident, table, names, key=f"most-{cluster}", columns=per_row // 2 if per_row > 12 else 6)
st.markdown("**Least confident** (the cluster's doubtful members)")
clicked_low = common.button_gallery(run, view.least_confident, table, names, key=f"least-{cluster}",
                                    columns=per_row // 2 if per_row > 12 else 6)
query = clicked if clicked is not None else clicked_low
if query is not None:
    st.session_state["nb_query"] = int(query)

st.divider()
common.anchor("neighbours")
st.subheader("Nearest neighbours")
q1, q2 = st.columns([1, 1])
with q1:
    default_query = int(st.session_state.get("nb_query", int(view.most_confident[0]) if len(view.most_confident) else 0))
    default_query = min(max(0, default_query), len(table) - 1)
    query = st.number_input("Image index", min_value=0, max_value=len(table) - 1, value=default_query, step=1,
                            key=f"nb_index_{default_query}", help="Or click an image above.")
    st.session_state["nb_query"] = int(query)
with q2:
    k = st.slider("Neighbours k", 4, 48, 12, step=4, key="nb_k")

row = table.set_index("index").loc[int(query)]
st.markdown(f"Query: image **#{int(query)}** · cluster **{int(row['cluster'])}**"
            + (f" · label **{common.plain_label(names[int(row['label'])] if names else str(int(row['label'])))}**"
               if has_labels else "")
            + f" · confidence {row['confidence']:.3f}")
common.html_gallery(run, [int(query)], table, names, size=96)


@st.cache_data(show_spinner=False, max_entries=256)
def neighbours_of(path: str, space: str, version: str, index: int, k: int):
    from icbpl_core.store.runs import open_run
    run = open_run(path)
    vectors = common.latents(run) if space == "latent" else common.features(run)
    return nearest(vectors, index, k)


left, right = st.columns(2)
feature_space = ("In backbone feature space (the frozen pretrained features the head was trained on)"
                 if run.config.get("mode") == "head" else "In backbone feature space (the trained backbone's features)")
for col, space, title in ((left, "latent", "In latent space (the trained encoder)"),
                          (right, "features", feature_space)):
    with col:
        version = common.stamp(run, "latents.npy" if space == "latent" else "features.npy")
        idx, sims = neighbours_of(str(run.path), space, version, int(query), int(k))
        same = int((table.set_index("index").loc[idx, "cluster"].to_numpy() == int(row["cluster"])).sum())
        label_note = ""
        if has_labels:
            same_label = int((table.set_index("index").loc[idx, "label"].to_numpy() == int(row["label"])).sum())
            label_note = f", {same_label}/{len(idx)} same label"
        common.html_gallery(run, idx, table, names, title=f"{title}: {same}/{len(idx)} same cluster{label_note}",
                            extra={int(i): f"cos {s:.3f}" for i, s in zip(idx, sims)}, key=f"nb-{space}")
