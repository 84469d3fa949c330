"""ICBPL Explorer: `streamlit run app.py`.

Set up a run on the bundled digits dataset (or your own images), train it in the
background, and explore the result: latent space, clusters and neighbours, confusion
and metrics, export. Runs live in ./runs (or $ICBPL_RUNS_DIR).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from icbpl_app import access
from pages import common   # Streamlit puts this script's folder on sys.path for its pages

# The favicon is served by this app (a material icon would be fetched from Google's font servers,
# which an offline machine cannot reach).
FAVICON = Path(__file__).resolve().parent / "assets" / "favicon.png"
st.set_page_config(page_title="ICBPL Explorer", page_icon=str(FAVICON), layout="wide")

PAGES = [
    st.Page("pages/data.py", title="Data & model", icon=":material/dataset:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("pages/clusters.py", title="Clusters & neighbours", icon=":material/hub:"),
    st.Page("pages/metrics.py", title="Confusion & metrics", icon=":material/grid_on:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]

refused = access.address_refusal(st.get_option("server.address"))
locked = access.token_required() and not st.session_state.get("signed_in")
# Navigation is declared even when nothing may be shown, hidden: otherwise Streamlit would list
# the pages/ folder's files on its own.
page = st.navigation(PAGES, position="hidden" if refused or locked else "sidebar")
if refused:
    st.error(refused, icon=":material/lock:")
    st.stop()
if locked and not common.signed_in():
    st.stop()
with st.sidebar:
    st.markdown("## :material/explore: ICBPL Explorer")
    st.caption("Deep image clustering on evenly spread class centroids (PEDCC).")
with common.guard("the run picker"):
    common.sidebar()
with common.guard(page.title):
    page.run()
