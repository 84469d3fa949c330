"""Export: the cluster labels as CSV (the CLI export's columns) for the whole run or the
current selection, the model's as they are or with the curation's columns, and the command
that reproduces the run."""
from __future__ import annotations

import numpy as np
import streamlit as st

from icbpl_app import curation, state
from icbpl_core.errors import RunError
from icbpl_core.store.curation import LOG_NAME
from icbpl_core.store.export import export_table
from icbpl_core.store.runs import open_run
from pages import common

common.entry()


@st.cache_data(show_spinner=False, max_entries=16)
def csv_bytes(path: str, version: str, indices: tuple | None) -> tuple[bytes, int]:
    table = export_table(open_run(path), None if indices is None else np.asarray(indices, dtype=np.int64))
    return table.to_csv(index=False).encode("utf-8"), len(table)


@st.cache_data(show_spinner=False, max_entries=16)
def curated_bytes(path: str, version: str, log_version: str, indices: tuple | None) -> tuple[bytes, int]:
    return curation.curated_csv(open_run(path), indices)


@st.cache_data(show_spinner=False, max_entries=16)
def head(path: str, version: str, indices: tuple | None, log_version: str = "missing"):
    """The first rows, with the curation's columns once the run has edits (that can be replayed)."""
    rows = None if indices is None else np.asarray(indices, dtype=np.int64)
    try:
        return export_table(open_run(path), rows, curated=log_version != "missing").head(20)
    except RunError:
        return export_table(open_run(path), rows).head(20)


st.title("Export")
run = common.require_finished_run("cluster labels")
if run is None:
    st.stop()

version = common.stamp(run, "assignments.csv")
selection = st.session_state.get("selections", {}).get(run.id) or []
choices = ["whole run", "current selection"]
scope = st.radio("Rows", choices, horizontal=True, key="export_scope",
                 format_func=lambda c: c if c == "whole run" else f"current selection ({len(selection):,} images)",
                 help="The selection is made with box or lasso on the Latent space page.")
if scope == "current selection" and not selection:
    st.warning("Nothing is selected: select images on the Latent space page first.", icon=":material/select:")
    st.page_link(common.PAGES["latent"], label="Go to the latent space", icon=":material/scatter_plot:")
else:
    indices = None if scope == "whole run" else tuple(int(i) for i in selection)
    data, rows = csv_bytes(str(run.path), version, indices)
    name = f"{run.id}-clusters{'' if indices is None else '-selection'}.csv"
    d1, d2 = st.columns(2)
    d1.download_button(f"Download {rows:,} rows as CSV", data, file_name=name, mime="text/csv",
                       type="primary", key="export_download", icon=":material/download:",
                       help="The model's clusters, as the run wrote them.")
    with d2, common.guard("the curated export"):
        cdata, _ = curated_bytes(str(run.path), version, common.stamp(run, LOG_NAME), indices)
        st.download_button("Download curated CSV", cdata, file_name=name.replace("-clusters", "-curated"),
                           mime="text/csv", key="export_curated", icon=":material/edit_note:",
                           help="The same rows with curated_cluster, cluster_name, flag and edited "
                                "(the edits made under Curate on the Clusters page).")
    table = head(str(run.path), version, None if indices is None else indices[:20], common.stamp(run, LOG_NAME))
    st.caption("Columns: index (position in the dataset), path (file or dataset id), cluster, confidence "
               "(cosine to the cluster's PEDCC point), margin (to the second closest)"
               + (", label and matched_class (the class Hungarian matching gives the cluster)"
                  if "label" in table.columns else "") + ". The curated CSV adds curated_cluster (after the edits), "
               "cluster_name, flag (outlier, unsure, verified or empty) and edited (its cluster or flag was "
               "changed by hand). First rows:")
    st.dataframe(table, hide_index=True, width="stretch")

st.divider()
st.subheader("Reproduce this run")
st.caption("The same settings on the command line (the run folder's config.json holds them too):")
st.code(state.train_command(run.config, "runs", (run.metrics or {}).get("threads")), language="bash",
        wrap_lines=True)
st.caption(f"Export from the command line: `icbpl export {run.path} --out labels.csv` "
           "(add `--curated` for the curated columns)")
