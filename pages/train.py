"""Train: start the run set up on Data & model as a background job and follow it live
(progress, time, losses per term, ACC/NMI, log); cancel, resume; reattaches after a reload."""
from __future__ import annotations

import streamlit as st

from icbpl_app import jobs, projection, state, uploads
from icbpl_app.figures import loss_figure, metric_figure
from icbpl_app.progress import extraction_passes, format_seconds, summarize
from icbpl_core.store.clock import seconds_since
from icbpl_core.store.runs import ACTIVE, RESUMABLE, open_run
from pages import common

common.entry()

POLL_SECONDS = 1.5

st.title("Train")

# -- a new run ---------------------------------------------------------------------------------------
draft = state.Draft(st.session_state.get("draft"))
with st.container(border=True):
    where = f" from {common.plain_label(uploads.shown(draft['data_root']))}" if draft["data_root"] else ""
    st.markdown(f"**New run:** {draft['dataset']}{where}"
                + (f", first {draft['limit']:,} images" if draft["limit"] else "")
                + f" · backbone {draft['backbone'] or 'default'} · K = {draft['n_clusters']} · {draft['epochs']} epochs"
                + f" · mode {draft['mode']} · seed {draft['seed']}")
    problems = state.problems(draft)
    c1, c2 = st.columns([1, 4])
    with c1:
        start = st.button("Start training", type="primary", key="t_start", disabled=bool(problems),
                          help="Runs `icbpl` in the background; closing the tab does not stop it.")
    with c2:
        st.page_link(common.PAGES["data"], label="Change the data or settings", icon=":material/dataset:")
    for problem in problems:
        st.error(problem, icon=":material/error:")
    for download in [] if problems else state.downloads(draft):
        st.warning(download, icon=":material/download:")
    if start and not problems:
        common.start_run(draft)

run = common.current_run()
if run is None:
    st.info("No run yet: press **Start training** to train on the settings above.", icon=":material/info:")
    st.stop()


def live(path: str) -> None:
    """Everything about one run that changes while it trains (a fragment, polled while active)."""
    with common.guard("the training view"):
        _live(open_run(path))


def _live(run) -> None:
    status = run.status()
    current = status["state"]
    _notice_the_end(run, current)
    config = run.config
    train = config.get("train", {})
    progress = summarize(run.events(), current, train.get("epochs"), passes=extraction_passes(config))
    st.subheader(f"{common.STATE_ICONS.get(current, '•')} {run.id}")
    recipe = state.recipe_line(config, run.choice)
    st.caption(f"{config.get('dataset')} · " + (f"{recipe} · " if recipe else "")
               + f"backbone {config.get('backbone')} · mode {config.get('mode')} · "
               f"K = {train.get('n_clusters')} · {train.get('epochs')} epochs · {common.where_it_runs(config)} · "
               f"state **{current}**")
    guided = state.guidance_line(run)
    if guided:
        st.caption(guided)
    st.progress(float(progress.fraction), text=progress.phase + (f" — {progress.detail}" if progress.detail else ""))
    history = progress.table()
    _figures_row(run, status, progress, history)
    _actions(run, current)
    _outcome(run, status)
    if progress.skipped:
        st.caption(f":material/warning: {progress.skipped} unreadable file(s) were skipped (see the log).")
    _curves(run, progress, history)
    # Open when the log is the only place that says why the run stopped (the message above says it otherwise).
    stopped = current in ("failed", "interrupted") and not status.get("error")
    with st.expander("Log (last 40 lines)", expanded=stopped):
        st.code(jobs.log_tail(run, 40) or "(no log yet)", language=None)


def _notice_the_end(run, current: str) -> None:
    """When the state of the run this page watches changes (starting, running, then stopped),
    refresh the whole page, so the run picker in the sidebar says the same as this view (and
    polling stops with the run); a finished run's projection starts in the background, so the
    latent page is ready."""
    seen_key = f"seen_state::{run.id}"
    previous = st.session_state.get(seen_key)
    st.session_state[seen_key] = current
    if previous is not None and previous != current:
        if previous in ACTIVE and current == "finished":
            projection.precompute_in_background(run)
        st.rerun()


def _figures_row(run, status: dict, progress, history) -> None:
    current, train = status["state"], run.config.get("train", {})
    last = history.iloc[-1] if len(history) else None
    final = (run.metrics or {}) if current == "finished" else {}

    def score(name: str) -> str:
        if progress.has_labels is False or (final and name not in final):
            return "no labels"
        if final:
            return f"{final[name]:.3f}"
        return f"{last[name]:.3f}" if last is not None and name in history.columns else "—"

    m = st.columns(6)
    elapsed = progress.elapsed
    if elapsed is None and current in ACTIVE:
        elapsed = seconds_since(status.get("started_at"))
    m[0].metric("Elapsed", format_seconds(elapsed))
    m[1].metric("Remaining", "—" if current not in ACTIVE and current != "finished" else
                format_seconds(progress.remaining) if progress.remaining is not None else "…",
                help="While features are extracted: the time the extraction still takes, from its pace so "
                     "far (training follows). While training: from the epochs done so far.")
    m[2].metric("Epoch", f"{progress.epoch}/{progress.epochs or '?'}")
    m[3].metric("ACC", score("acc"), help="Final (after training) or live (the last epoch's).")
    m[4].metric("NMI", score("nmi"))
    used = final.get("n_clusters_used") if final else (
        int(last["clusters_used"]) if last is not None and last.get("clusters_used") == last.get("clusters_used") else None)
    m[5].metric("Clusters used", f"{used}/{train.get('n_clusters')}" if used is not None else "—")


def _actions(run, current: str) -> None:
    b = st.columns([2, 2, 3])
    if current in ACTIVE:
        if b[0].button("Cancel", key=f"cancel-{run.id}", help="Stops after the current step (SIGTERM); "
                                                              "the run can be resumed from its last epoch."):
            try:
                stopped = jobs.cancel(run)
                st.toast("Stopping the run…" if stopped else "The run was not running.")
            except jobs.JobError as exc:
                st.error(str(exc))
    elif current in RESUMABLE:
        if b[0].button("Resume", type="primary", key=f"resume-{run.id}",
                       help="Continue from the last completed epoch."):
            try:
                jobs.resume(run)
                st.session_state[f"seen_state::{run.id}"] = "starting"
                st.rerun()
            except jobs.JobError as exc:
                st.error(str(exc))
    elif current == "finished":
        b[0].page_link(common.PAGES["latent"], label="Explore the latent space", icon=":material/scatter_plot:")
        b[1].page_link(common.PAGES["metrics"], label="See the metrics", icon=":material/grid_on:")


def _outcome(run, status: dict) -> None:
    current = status["state"]
    message = jobs.error_message(run, status)
    if current == "failed":
        st.error(f"**Training failed:** {message}", icon=":material/cancel:")
        st.caption("Fix the cause (the log below has details), then Resume, or start a new run.")
    elif current == "interrupted":
        st.warning(f"**Training stopped:** {message}. Resume continues from the last completed epoch.",
                   icon=":material/warning:")
    elif current == "cancelled":
        st.warning("**Cancelled.** Resume continues from the last completed epoch.", icon=":material/stop_circle:")
    elif current == "finished":
        metrics = run.metrics or {}
        if "acc" in metrics:
            st.success(f"Finished: ACC {metrics['acc']:.3f} · NMI {metrics['nmi']:.3f} · ARI {metrics['ari']:.3f}"
                       f" · {metrics.get('n_clusters_used')}/{metrics.get('n_clusters')} clusters used",
                       icon=":material/check_circle:")
        else:
            st.success(f"Finished: {metrics.get('n_clusters_used')}/{metrics.get('n_clusters')} clusters used, "
                       f"mean confidence {metrics.get('mean_confidence', float('nan')):.3f} (no labels)",
                       icon=":material/check_circle:")
        if metrics.get("views_averaged"):
            st.caption(f"The final clusters come from each image's mean latent over it and its "
                       f"{metrics['views_averaged']} augmented views; the live curves score each "
                       "image's own latent, so they can read a little lower.")


def _curves(run, progress, history) -> None:
    c1, c2 = st.columns(2)
    with c1:
        if len(history):
            st.plotly_chart(loss_figure(history), width="stretch")
        else:
            st.info("Loss curves appear after the first epoch.", icon=":material/show_chart:")
    with c2:
        other = common.compare_run()
        tables = {}
        if len(history) and progress.has_labels is not False:
            tables[run.id] = history
        if other is not None:
            other_table = summarize(other.events(), other.state).table()
            if len(other_table) and "acc" in other_table.columns:
                tables[other.id] = other_table
        if tables and any("acc" in t.columns for t in tables.values()):
            st.plotly_chart(metric_figure(tables), width="stretch")
        elif progress.has_labels is False:
            st.info("No labels: ACC and NMI cannot be measured; the loss curves and the cluster sizes tell "
                    "how training goes.", icon=":material/info:")
        else:
            st.info("ACC / NMI appear after the first epoch.", icon=":material/show_chart:")


active = run.active
st.fragment(run_every=POLL_SECONDS if active else None)(live)(str(run.path))
