"""Train: start the run set up on Data & model as a background job and follow it live
(progress, time, losses per term, ACC/NMI, log); cancel, resume; reattaches after a reload."""
from __future__ import annotations

import streamlit as st

from icbpl_core import appstate, jobs, projection
from icbpl_core.figures import loss_figure, metric_figure
from icbpl_core.progress import format_seconds, summarize
from icbpl_core.runs import open_run
from pages import common

common.entry()

POLL_SECONDS = 1.5

st.title("Train")

# -- a new run ---------------------------------------------------------------------------------------
draft = appstate.Draft.from_dict(st.session_state.get("draft"))
with st.container(border=True):
    spec = draft.spec()
    t = spec.train
    where = f" from `{draft.data_root}`" if draft.data_root else ""
    st.markdown(f"**New run:** {draft.dataset}{where}"
                + (f", first {draft.limit:,} images" if draft.limit else "")
                + f" · backbone {spec.backbone or 'default'} · K = {t.n_clusters} · {t.epochs} epochs"
                + f" · mode {spec.mode} · seed {t.seed}")
    problems = appstate.problems(draft)
    c1, c2 = st.columns([1, 4])
    with c1:
        start = st.button("Start training", type="primary", key="t_start", disabled=bool(problems),
                          help="Runs `python -m icbpl_core` in the background; closing the tab does not stop it.")
    with c2:
        st.page_link(common.PAGES["data"], label="Change the data or settings", icon=":material/dataset:")
    for problem in problems:
        st.error(problem, icon=":material/error:")
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
    status = jobs.status(run)
    state = status["state"]
    config = run.config
    train = config.get("train", {})
    seen_key = f"seen_state::{run.id}"
    previous = st.session_state.get(seen_key)
    st.session_state[seen_key] = state
    if previous in jobs.ACTIVE and state not in jobs.ACTIVE:
        if state == "finished":
            projection.precompute_in_background(run)    # the latent page is then ready at once
        st.rerun()                                       # the whole page: stop polling, refresh the run list

    events = run.events()
    progress = summarize(events, state, train.get("epochs"))
    icon = common.STATE_ICONS.get(state, "•")
    st.subheader(f"{icon} {run.id}")
    st.caption(f"{config.get('dataset')} · backbone {config.get('backbone')} · mode {config.get('mode')} · "
               f"K = {train.get('n_clusters')} · {train.get('epochs')} epochs · state **{state}**")

    text = f"{progress.phase}" + (f" — {progress.detail}" if progress.detail else "")
    st.progress(float(progress.fraction), text=text)
    history = progress.table()
    last = history.iloc[-1] if len(history) else None
    final = (run.metrics or {}) if state == "finished" else {}

    def score(name: str) -> str:
        if progress.has_labels is False or (final and name not in final):
            return "no labels"
        if final:
            return f"{final[name]:.3f}"
        return f"{last[name]:.3f}" if last is not None and name in history.columns else "—"

    m = st.columns(6)
    elapsed = progress.elapsed
    if elapsed is None and state in jobs.ACTIVE and status.get("started_at"):
        elapsed = _since(status["started_at"])
    m[0].metric("Elapsed", format_seconds(elapsed))
    m[1].metric("Remaining", "—" if state not in jobs.ACTIVE and state != "finished" else
                format_seconds(progress.remaining) if progress.remaining is not None else "…",
                help="Estimated from the epochs done so far.")
    m[2].metric("Epoch", f"{progress.epoch}/{progress.epochs or '?'}")
    m[3].metric("ACC", score("acc"), help="Final (after training) or live (the last epoch's).")
    m[4].metric("NMI", score("nmi"))
    used = final.get("n_clusters_used") if final else (
        int(last["clusters_used"]) if last is not None and last.get("clusters_used") == last.get("clusters_used") else None)
    m[5].metric("Clusters used", f"{used}/{train.get('n_clusters')}" if used is not None else "—")

    b = st.columns([2, 2, 3])
    if state in jobs.ACTIVE:
        if b[0].button("Cancel", key=f"cancel-{run.id}", help="Stops after the current step (SIGTERM); "
                                                              "the run can be resumed from its last epoch."):
            try:
                stopped = jobs.cancel(run)
                st.toast("Stopping the run…" if stopped else "The run was not running.")
            except jobs.JobError as exc:
                st.error(str(exc))
    elif state in jobs.RESUMABLE:
        if b[0].button("Resume", type="primary", key=f"resume-{run.id}",
                       help="Continue from the last completed epoch."):
            try:
                jobs.resume(run)
                st.session_state[seen_key] = "starting"
                st.rerun()
            except jobs.JobError as exc:
                st.error(str(exc))
    elif state == "finished":
        b[0].page_link(common.PAGES["latent"], label="Explore the latent space", icon=":material/scatter_plot:")
        b[1].page_link(common.PAGES["metrics"], label="See the metrics", icon=":material/grid_on:")

    message = jobs.error_message(run, status)
    if state == "failed":
        st.error(f"**Training failed:** {message}", icon=":material/cancel:")
        st.caption("Fix the cause (the log below has details), then Resume, or start a new run.")
    elif state == "interrupted":
        st.warning(f"**Training stopped:** {message}. Resume continues from the last completed epoch.", icon=":material/warning:")
    elif state == "cancelled":
        st.warning("**Cancelled.** Resume continues from the last completed epoch.", icon=":material/stop_circle:")
    elif state == "finished":
        metrics = run.metrics or {}
        if "acc" in metrics:
            st.success(f"Finished: ACC {metrics['acc']:.3f} · NMI {metrics['nmi']:.3f} · ARI {metrics['ari']:.3f}"
                       f" · {metrics.get('n_clusters_used')}/{metrics.get('n_clusters')} clusters used", icon=":material/check_circle:")
        else:
            st.success(f"Finished: {metrics.get('n_clusters_used')}/{metrics.get('n_clusters')} clusters used, "
                       f"mean confidence {metrics.get('mean_confidence', float('nan')):.3f} (no labels)", icon=":material/check_circle:")
        if metrics.get("views_averaged"):
            st.caption(f"The final clusters come from each image's mean latent over it and its "
                       f"{metrics['views_averaged']} augmented views; the live curves score each "
                       "image's own latent, so they can read a little lower.")
    if progress.skipped:
        st.caption(f":material/warning: {progress.skipped} unreadable file(s) were skipped (see the log).")

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
            other_table = summarize(other.events(), jobs.state(other)).table()
            if len(other_table) and "acc" in other_table.columns:
                tables[other.id] = other_table
        if tables and any("acc" in t.columns for t in tables.values()):
            st.plotly_chart(metric_figure(tables), width="stretch")
        elif progress.has_labels is False:
            st.info("No labels: ACC and NMI cannot be measured; the loss curves and the cluster sizes tell "
                    "how training goes.", icon=":material/info:")
        else:
            st.info("ACC / NMI appear after the first epoch.", icon=":material/show_chart:")

    with st.expander("Log (last 40 lines)", expanded=state in ("failed", "interrupted")):
        st.code(jobs.log_tail(run, 40) or "(no log yet)", language=None)


def _since(iso: str) -> float | None:
    from datetime import datetime, timezone
    try:
        return max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds())
    except (TypeError, ValueError):
        return None


active = jobs.is_active(run)
st.fragment(run_every=POLL_SECONDS if active else None)(live)(str(run.path))
