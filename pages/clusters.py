"""Clusters & neighbours: per cluster its size, purity, most and least confident images;
curation (name, merge, split, move, flag, undo, redo, the edit history); an image's k nearest
neighbours in latent space and in backbone feature space. Clusters are shown as curated."""
from __future__ import annotations

import streamlit as st

from icbpl_app import curation as cur
from icbpl_app.figures import sizes_figure
from icbpl_app.gallery import cluster_table, cluster_view, nearest
from icbpl_core import params
from icbpl_core.store.curation import LOG_NAME
from icbpl_core.training import corrections
from pages import common

common.entry()

st.title("Clusters & neighbours")
run = common.require_finished_run("clusters")
if run is None:
    st.stop()



curated, log_problem = common.curated(run)
if log_problem:
    st.warning(f"The model's clusters are shown without edits: {log_problem[:1].lower()}{log_problem[1:]}",
               icon=":material/warning:")
table = cur.curated_table(common.assignments(run), curated)
metrics = common.metrics(run)
names = common.class_names_of(run)
n_clusters = max(curated.clusters()) + 1
has_labels = "label" in table.columns
stats = cluster_table(table, n_clusters)
stats.insert(1, "name", [curated.name_of(c) for c in stats["cluster"]])
stats = stats[stats["cluster"].isin(curated.known)]
if curated.done:
    st.caption(f"Clusters as curated: {len(curated.done)} edit(s) in effect, {int(curated.edited.sum()):,} "
               "image(s) moved or flagged. The model's own labels are unchanged (Export offers both).")

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
    if st.session_state.get("cl_cluster") not in used:
        st.session_state.pop("cl_cluster", None)      # merged away: back to the biggest
    cluster = st.selectbox("Cluster", used, key="cl_cluster", index=used.index(biggest),
                           format_func=lambda c: cur.cluster_label(curated, c, int(stats.loc[c, 'size'])))
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

picking = st.toggle("Click images to select them for curation", key="cl_pick",
                    help="Off: clicking an image shows its nearest neighbours below. On: it adds the image to "
                         "(or takes it out of) the selection that Curate moves or flags.")
st.caption("Click an image's button to " + ("select it for curation below." if picking
                                            else "see its nearest neighbours below."))
st.markdown("**Most confident** (closest to the cluster's PEDCC point)")
clicked = common.button_gallery(run, view.most_confident, table, names, key=f"most-{cluster}", columns=per_row // 2 if per_row > 12 else 6)
st.markdown("**Least confident** (the cluster's doubtful members)")
clicked_low = common.button_gallery(run, view.least_confident, table, names, key=f"least-{cluster}",
                                    columns=per_row // 2 if per_row > 12 else 6)
query = clicked if clicked is not None else clicked_low
pick_key = f"cur_pick_{run.id}"
if st.session_state.pop("cur_clear", False):     # the last edit used the selection: start afresh
    for key in (pick_key, "cur_typed", "cur_use_latent"):
        st.session_state.pop(key, None)
if query is not None and picking:
    chosen = set(st.session_state.get(pick_key, []))
    st.session_state[pick_key] = sorted(chosen ^ {int(query)})
elif query is not None:
    st.session_state["nb_query"] = int(query)


def do(action: str, *args) -> None:
    """Apply one edit, keep its outcome for the next run of the page, and show the new state."""
    outcome = cur.edit(run, action, *args)
    st.session_state["cur_outcome"] = (outcome.ok, outcome.message)
    if outcome.ok:
        st.session_state.pop("cur_preview", None)
        st.session_state["cur_clear"] = action in ("move", "flag")
    st.rerun()


st.divider()
st.subheader("Curate")
waiting = cur.waiting_reason(run)
if waiting:
    st.info(f"{waiting} Curation waits for it to finish.", icon=":material/hourglass_top:")
else:
    st.caption(f"Every edit is appended to the run's edit log ({LOG_NAME}); the model's labels are never "
               "changed. Edits made in another tab or on the command line show here after a rerun.")
    ok, message = st.session_state.pop("cur_outcome", (None, None))
    with st.container():        # always there, so that the tabs below keep their place (and the open tab)
        if message:
            (st.success if ok else st.error)(message, icon=":material/check:" if ok else ":material/error:")
    u = st.columns([1, 1, 6])
    if u[0].button("Undo", key="cur_undo", icon=":material/undo:", disabled=not curated.done,
                   help="Take back the latest edit in effect."):
        do("undo")
    if u[1].button("Redo", key="cur_redo", icon=":material/redo:", disabled=not curated.undone,
                   help="Bring back the latest undone edit."):
        do("redo")
    label_of = lambda c: cur.cluster_label(curated, c, curated.size(c))  # noqa: E731
    known = curated.clusters()
    name_tab, merge_tab, split_tab, images_tab, history_tab, retrain_tab = st.tabs(
        ["Name", "Merge", "Split", "Move & flag images", "History", "Retrain from corrections"])
    with name_tab:
        n1, n2 = st.columns([1, 2])
        to_name = n1.selectbox("Cluster", known, index=known.index(cluster), key=f"cur_name_cluster_{cluster}",
                               format_func=label_of)
        new_name = n2.text_input("Name", value=curated.name_of(to_name), key=f"cur_name_{to_name}",
                                 placeholder="e.g. sneakers", help="Empty clears the name.")
        if st.button("Save name", key="cur_name_save", icon=":material/label:"):
            do("name", to_name, new_name)
    with merge_tab:
        to_merge = st.multiselect("Clusters to merge", used, key="cur_merge", format_func=label_of,
                                  help="The merged cluster keeps the id and name of the first one chosen.")
        if st.button("Merge", key="cur_merge_go", icon=":material/merge:", disabled=len(to_merge) < 2):
            do("merge", to_merge)
        if len(to_merge) >= 2:
            st.caption(f"{', '.join(map(str, to_merge[1:]))} go into cluster {to_merge[0]} "
                       f"({sum(curated.size(c) for c in to_merge):,} images).")
    with split_tab:
        s1, s2 = st.columns([2, 1])
        to_split = s1.selectbox("Cluster", used, index=used.index(cluster), key=f"cur_split_cluster_{cluster}",
                                format_func=label_of)
        size = curated.size(to_split)
        parts = s2.number_input("Parts", min_value=2, max_value=max(2, min(20, size)), value=2, step=1,
                                key="cur_split_k", disabled=size < 2)
        if st.button("Preview split", key="cur_split_preview", icon=":material/call_split:", disabled=size < 2,
                     help="k-means on the cluster's latents; nothing changes until you apply it."):
            st.session_state["cur_preview"] = cur.preview_split(run, to_split, int(parts), curated)
        preview = st.session_state.get("cur_preview")
        if isinstance(preview, str):
            st.error(preview, icon=":material/error:")
        elif preview is not None and preview.cluster == to_split:
            st.markdown(f"**Preview:** cluster {preview.cluster} would become " +
                        ", ".join(f"{c} ({n:,} images)" for c, n in zip(preview.into, preview.sizes)))
            for c, part in zip(preview.into, preview.parts):
                order = table.set_index("index").loc[part].sort_values("confidence", ascending=False).index
                common.html_gallery(run, order[:12], table, names, size=48, title=f"part → cluster {c}")
            a1, a2 = st.columns([1, 4])
            if a1.button("Apply split", key="cur_split_apply", type="primary", icon=":material/check:"):
                do("split", preview.cluster, len(preview.parts), preview)
            if a2.button("Discard preview", key="cur_split_discard"):
                st.session_state.pop("cur_preview", None)
                st.rerun()
    with images_tab:
        shown_ids = [int(i) for i in [*view.most_confident, *view.least_confident]]
        picked_now = [int(i) for i in st.session_state.get(pick_key, [])]
        picked = st.multiselect("Images picked in the gallery", sorted(set(shown_ids) | set(picked_now)),
                                key=pick_key, format_func=lambda i: f"#{i}",
                                help="Turn on 'Click images to select them' above and click thumbnails, "
                                     "or choose them here.")
        typed = st.text_input("More image ids", key="cur_typed", placeholder="3, 17, 40-45")
        latent = (st.session_state.get("selections") or {}).get(run.id) or []
        use_latent = st.checkbox(f"Add the {len(latent):,} images selected on the Latent space page",
                                 key="cur_use_latent", disabled=not latent)
        ids, problem = cur.selection(picked, typed, latent if use_latent else None, len(table))
        if problem:
            st.error(problem, icon=":material/error:")
        st.caption(f"{len(ids):,} image(s) selected" + (f": {', '.join(f'#{i}' for i in ids[:20])}"
                                                         + (" ..." if len(ids) > 20 else "") if ids else "."))
        if ids:
            common.html_gallery(run, ids[:48], table, names, size=48,
                                extra={i: f for i, f in zip(ids[:48], curated.flag[ids[:48]]) if f})
        m1, m2 = st.columns(2)
        with m1:
            target = st.selectbox("Move them to", known, index=known.index(cluster), key="cur_move_to",
                                  format_func=label_of)
            if st.button("Move", key="cur_move_go", icon=":material/drive_file_move:", disabled=not ids):
                do("move", ids, target)
        with m2:
            flag = st.selectbox("Flag them as", cur.FLAG_CHOICES, key="cur_flag_as",
                                format_func=lambda f: "none (clear the flag)" if f == "none" else f)
            if st.button("Flag", key="cur_flag_go", icon=":material/flag:", disabled=not ids):
                do("flag", ids, flag)
        flagged = table[table["flag"] != ""]
        if len(flagged):
            st.caption(f"Flagged images ({len(flagged):,}): " + ", ".join(
                f"#{int(i)} {f}" for i, f in zip(flagged["index"][:30], flagged["flag"][:30]))
                + (" ..." if len(flagged) > 30 else ""))
    with history_tab:
        rows = cur.history_rows(curated)
        st.caption(f"{len(rows)} edit(s), newest first; undo and redo are edits too.")
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(rows)))
        else:
            st.caption("No edits yet.")
    with retrain_tab:
        r1, r2 = st.columns(2)
        guide_param, weight_param = params.param("guide"), params.param("w_guide")
        guide = r1.selectbox(guide_param.label, guide_param.options(), key="cur_guide",
                             index=guide_param.options().index(run.config["train"].get("guide", guide_param.default)),
                             help=guide_param.help)
        weight = r2.number_input(weight_param.label, min_value=weight_param.low, max_value=weight_param.high,
                                 value=float(run.config["train"].get("w_guide", weight_param.default)),
                                 step=weight_param.step, key="cur_w_guide", help=weight_param.help,
                                 disabled=guide == "must-link")
        warm_param = params.param("warm_start")
        warm = st.checkbox(warm_param.label, value=bool(run.config["train"].get("warm_start", warm_param.default)),
                           key="cur_warm_start", help=warm_param.help)
        plan = cur.retrain_plan(run, curated, table["id"].to_numpy(),
                                {"guide": guide, "w_guide": weight, "warm_start": warm})
        if isinstance(plan, str):
            st.info(plan, icon=":material/info:")
        else:
            guidance, new_spec = plan
            st.markdown(cur.guidance_summary(guidance, curated, run, warm))
            if st.button("Retrain from these corrections", key="cur_retrain", type="primary",
                         icon=":material/model_training:"):
                common.launch_and_open(new_spec, int(run.job().get("gpus") or 1),
                                       {corrections.GUIDANCE_FILE: guidance.to_dict()})

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
