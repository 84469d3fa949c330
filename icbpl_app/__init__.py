"""The app's services, between the pages (pages/, which draw) and the engine (icbpl_core):
the draft run and its form (state, form), training jobs and their progress (jobs, processes,
progress), the latent map (projection), images (gallery), plot selections (selection),
result tables (analysis) and figures (figures). No Streamlit here."""
