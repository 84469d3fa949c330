"""Shared Streamlit pieces of the app: the run picker, error guard, cached loaders, galleries.

Every heavy result is cached per run and per version of the file it comes from (size and
mtime in the cache key), so a rerun never recomputes it and a run that finishes again
(resumed) is reloaded.
"""
from __future__ import annotations

import html
import logging
import re
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from icbpl_app import form, jobs, state
from icbpl_core.errors import IcbplError, RunError
from icbpl_core.store.runs import ACTIVE, Run, list_runs, open_run

LOG = logging.getLogger("icbpl.app")
STATE_ICONS = {"running": ":material/play_circle:", "starting": ":material/pending:",
               "finished": ":material/check_circle:", "failed": ":material/cancel:",
               "cancelled": ":material/stop_circle:", "interrupted": ":material/warning:"}
PAGES = {"data": "pages/data.py", "train": "pages/train.py", "latent": "pages/latent.py",
         "clusters": "pages/clusters.py", "metrics": "pages/metrics.py", "export": "pages/export.py"}


# -- entry ----------------------------------------------------------------------------------------

APP = Path(__file__).resolve().parents[1] / "app.py"


def entry() -> None:
    """Every page runs inside app.py (run picker, navigation, error guard).

    Streamlit keeps a compatibility mode for apps with a `pages/` folder: until app.py has
    called st.navigation once in the process (a fresh server's first request for a page URL,
    every AppTest run), it runs a page file on its own. Then this runs app.py in its place,
    which renders this page through st.navigation, and stops the bare run.

    This reads a Streamlit internal (PagesManager.uses_pages_directory): no public API tells
    a bare page run from a navigation one. tests/pages/test_app.py fails if it goes away."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        code = compile(APP.read_text(encoding="utf-8"), str(APP), "exec")
        exec(code, {"__name__": "__main__", "__file__": str(APP)})  # noqa: S102
        st.stop()


def serve_media(data: bytes, mime: str, name: str) -> str | None:
    """A URL for `data` on Streamlit's media endpoint (what st.image uses), or None without a
    running server (tests).

    This reads a Streamlit internal (the runtime's media file manager): no public API serves
    bytes at a URL a script can hand to its own JavaScript. tests/pages/test_app.py fails if it
    goes away."""
    from streamlit import runtime

    if not runtime.exists():
        return None
    return runtime.get_instance().media_file_mgr.add(data, mime, name)


def signed_in() -> bool:
    """Whether this browser session gave the access token (the app was started with one); if not,
    the form to give it."""
    from icbpl_app import access

    if st.session_state.get("signed_in"):
        return True
    st.title("ICBPL Explorer")
    with st.form("sign_in"):
        given = st.text_input("Access token", type="password",
                              help="The person who started this app gave it a token (ICBPL_ACCESS_TOKEN).")
        if st.form_submit_button("Open the app") and access.token_matches(given):
            st.session_state["signed_in"] = True
            st.rerun()
        elif given:
            st.error("That is not the token this app was started with.", icon=":material/lock:")
    return False


# -- errors ---------------------------------------------------------------------------------------

def friendly(exc: BaseException) -> str:
    """A plain-words message for an exception, with what to do about it."""
    from icbpl_app.gallery import GalleryError
    from icbpl_core.errors import DatasetError

    text = str(exc) or type(exc).__name__
    if isinstance(exc, GalleryError):
        return f"The images of this run cannot be shown: {text}."
    if isinstance(exc, DatasetError):
        return f"The dataset cannot be opened: {state.message(exc)}"
    if isinstance(exc, (IcbplError, jobs.JobError)):
        return state.message(exc)
    if isinstance(exc, FileNotFoundError):
        return f"A file is missing: {exc.filename or text}. The run folder may have been moved or deleted."
    if isinstance(exc, MemoryError):
        return "Not enough memory for this view; try a smaller run (a lower image limit)."
    if isinstance(exc, PermissionError):
        return f"No permission to read or write {exc.filename or text}; check the runs folder's permissions."
    return (f"Something went wrong ({type(exc).__name__}: {text}). Reload the page; if it happens again, "
            "check the terminal running `streamlit run app.py` for details.")


@contextmanager
def guard(what: str = ""):
    """Shows any exception as an error message (never a traceback); logs the traceback."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - Streamlit's rerun/stop are BaseExceptions and pass through
        LOG.error("error%s: %s", f" in {what}" if what else "", traceback.format_exc())
        st.error(friendly(exc), icon=":material/error:")


# -- runs -----------------------------------------------------------------------------------------

def runs_dir() -> Path:
    return state.runs_dir()


def stamp(run: Run, name: str) -> str:
    """A cache key part that changes whenever the run's file `name` is rewritten."""
    try:
        st_ = run.file(name).stat()
        return f"{st_.st_size}-{st_.st_mtime_ns}"
    except FileNotFoundError:
        return "missing"


def run_label(run: Run, status: dict) -> str:
    state = status.get("state", "?")
    metrics = (run.metrics or {}) if state == "finished" else {}
    extra = f" · ACC {metrics['acc']:.2f}" if isinstance(metrics.get("acc"), (int, float)) else ""
    return f"{run.id} · {state}{extra}"


def _default_run(runs: list[Run], statuses: dict[str, dict]) -> str | None:
    for wanted in (("running", "starting"), ("finished",)):
        for run in runs:
            if statuses[run.id]["state"] in wanted:
                return run.id
    return runs[0].id if runs else None


def sidebar() -> None:
    """The run picker (all pages): the current run and an optional second run to compare."""
    directory = runs_dir()
    runs = list_runs(directory)
    statuses = {r.id: r.status() for r in runs}
    ids = [r.id for r in runs]
    by_id = {r.id: r for r in runs}
    with st.sidebar:
        st.markdown("### Runs")
        if not runs:
            st.caption(f"No runs yet in `{directory}`. Set one up on **Data & model**, then start it on **Train**.")
            st.session_state["run_id"] = None
            return
        current = st.session_state.get("run_id")
        if current not in ids:
            wanted = st.query_params.get("run")
            current = wanted if wanted in ids else _default_run(runs, statuses)
        show_all = st.toggle("Show failed and stopped runs", value=st.session_state.get("show_all_runs", True),
                             help="Off: only finished and running runs are listed.")
        st.session_state["show_all_runs"] = show_all
        listed = [i for i in ids if show_all or statuses[i]["state"] in ("finished", "running", "starting")
                  or i == current]
        labels = {i: run_label(by_id[i], statuses[i]) for i in listed}
        chosen = st.selectbox("Current run", listed, index=listed.index(current) if current in listed else 0,
                              format_func=lambda i: labels.get(i, i),
                              help="Every page shows this run. Runs live in " + str(directory))
        st.session_state["run_id"] = chosen
        if st.query_params.get("run") != chosen:
            st.query_params["run"] = chosen
        finished = [i for i in listed if i != chosen and statuses[i]["state"] == "finished"]
        compare = st.session_state.get("compare_id")
        options = [None] + finished
        choice = st.selectbox("Compare with", options,
                              index=options.index(compare) if compare in options else 0,
                              format_func=lambda i: "— none —" if i is None else labels.get(i, i),
                              help="A second finished run, shown beside the current one on the "
                                   "Train, Latent space and Confusion & metrics pages.")
        st.session_state["compare_id"] = choice
        summary = by_id[chosen].summary()
        st.caption(f"{summary['dataset']} · {summary['backbone']} · K={summary['clusters']} · "
                   f"{statuses[chosen]['state']}")


def current_run() -> Run | None:
    run_id = st.session_state.get("run_id")
    if not run_id:
        return None
    try:
        return open_run(runs_dir() / run_id)
    except RunError:
        return None


def compare_run() -> Run | None:
    run_id = st.session_state.get("compare_id")
    if not run_id or run_id == st.session_state.get("run_id"):
        return None
    try:
        return open_run(runs_dir() / run_id)
    except RunError:
        return None


def require_finished_run(what: str) -> Run | None:
    """The current run if it has results; otherwise a message saying what to do (and None)."""
    run = current_run()
    if run is None:
        st.info(f"No run selected. Train one on the **Train** page to see its {what}.", icon=":material/info:")
        st.page_link(PAGES["data"], label="Set up a run", icon=":material/dataset:")
        return None
    status = run.status()
    if not run.file("assignments.csv").is_file():
        if status["state"] in ACTIVE:
            st.info(f"Run **{run.id}** is still training; its {what} appear when it finishes.", icon=":material/hourglass_top:")
            st.page_link(PAGES["train"], label="Watch it train", icon=":material/model_training:")
        else:
            st.warning(f"Run **{run.id}** has no results ({status['state']}). Resume it on the Train page, "
                       "or pick a finished run in the sidebar.", icon=":material/warning:")
        return None
    return run


# -- cached loaders --------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=32)
def _assignments(path: str, version: str):
    return open_run(path).assignments()


def assignments(run: Run):
    return _assignments(str(run.path), stamp(run, "assignments.csv"))


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(path: str, version: str) -> dict:
    return open_run(path).metrics or {}


def metrics(run: Run) -> dict:
    return _metrics(str(run.path), stamp(run, "metrics.json"))


@st.cache_resource(show_spinner=False, max_entries=8)
def _array(path: str, name: str, version: str) -> np.ndarray:
    return np.asarray(np.load(Path(path) / name), dtype=np.float32)


def latents(run: Run) -> np.ndarray:
    run.latents()   # a clear RunError when missing
    return _array(str(run.path), "latents.npy", stamp(run, "latents.npy"))


def features(run: Run) -> np.ndarray:
    run.features()
    return _array(str(run.path), "features.npy", stamp(run, "features.npy"))


@st.cache_resource(show_spinner=False, max_entries=6)
def _dataset(path: str, version: str):
    from icbpl_app.gallery import open_run_dataset
    run = open_run(path)
    return open_run_dataset(run.config, run.assignments()["id"].astype(str).tolist())


def run_dataset(run: Run):
    """The run's images, in the order of its assignments (reopened once per version of them)."""
    return _dataset(str(run.path), stamp(run, "assignments.csv"))


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumb_uri(path: str, version: str, index: int, size: int) -> str:
    from icbpl_app.gallery import data_uri
    return data_uri(_dataset(path, version).thumbnail(int(index), size))


def thumb_uri(run: Run, index: int, size: int = 64) -> str:
    return _thumb_uri(str(run.path), stamp(run, "assignments.csv"), int(index), size)


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumb_png(path: str, version: str, index: int, size: int) -> bytes:
    from icbpl_app.gallery import png_bytes
    return png_bytes(_dataset(path, version).thumbnail(int(index), size))


def thumb_png(run: Run, index: int, size: int = 64) -> bytes:
    return _thumb_png(str(run.path), stamp(run, "assignments.csv"), int(index), size)


# -- galleries -------------------------------------------------------------------------------------

def caption_of(row, class_names: list[str] | None) -> str:
    """Index, cluster and label of an image, as plain text (names come from the user's files)."""
    parts = [f"#{int(row['index'])}", f"c{int(row['cluster'])}"]
    if "label" in row and row["label"] == row["label"]:
        label = int(row["label"])
        name = class_names[label] if class_names and 0 <= label < len(class_names) else str(label)
        parts.append(f"label {name}")
    return " · ".join(parts)


def plain_label(text: str) -> str:
    """Text shown as a widget label without Markdown (widget labels render it): every Markdown
    character escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$:])", r"\\\1", text)


def html_gallery(run: Run, indices, table, class_names: list[str] | None = None, size: int = 64,
                 title: str = "", extra: dict[int, str] | None = None) -> None:
    """A compact grid of thumbnails with index, cluster and label under each (one element)."""
    run_dataset(run)
    cells = []
    rows = table.set_index("index", drop=False)
    for i in indices:
        i = int(i)
        row = rows.loc[i]
        caption = html.escape(caption_of(row, class_names))
        if extra and i in extra:
            caption += f"<br>{html.escape(extra[i])}"
        cells.append(
            f'<figure class="icbpl-cell" data-index="{i}"><img src="{thumb_uri(run, i, size)}" alt="image {i}" '
            f'width="{size}" height="{size}"><figcaption>{caption}</figcaption></figure>')
    style = ("<style>.icbpl-grid{display:flex;flex-wrap:wrap;gap:6px}.icbpl-cell{margin:0;width:%dpx;"
             "text-align:center;font-size:11px;line-height:1.2}.icbpl-cell img{image-rendering:pixelated;"
             "border:1px solid #ddd;border-radius:3px;background:#fff}</style>") % (size + 26)
    heading = f"<div style='font-weight:600;margin:4px 0'>{html.escape(title)}</div>" if title else ""
    st.html(style + heading + f'<div class="icbpl-grid">{"".join(cells)}</div>')


def image_grid(images, captions: list[str], size: int = 64) -> None:
    """Thumbnails (PIL images) in a wrapping grid with a caption under each (one element)."""
    from icbpl_app.gallery import data_uri

    cells = "".join(
        f'<figure class="icbpl-pcell"><img src="{data_uri(img)}" alt="{html.escape(cap)}" width="{size}" '
        f'height="{size}"><figcaption>{html.escape(cap)}</figcaption></figure>' for img, cap in zip(images, captions))
    style = ("<style>.icbpl-pgrid{display:flex;flex-wrap:wrap;gap:6px}.icbpl-pcell{margin:0;width:%dpx;"
             "text-align:center;font-size:11px;line-height:1.2}.icbpl-pcell img{image-rendering:pixelated;"
             "object-fit:contain;border:1px solid #ddd;border-radius:3px;background:#fff}</style>") % (size + 8)
    st.html(style + f'<div class="icbpl-pgrid">{cells}</div>')


def button_gallery(run: Run, indices, table, class_names: list[str] | None, key: str, columns: int = 6,
                   size: int = 72) -> int | None:
    """Thumbnails with a button under each; returns the index whose button was clicked."""
    run_dataset(run)
    rows = table.set_index("index", drop=False)
    clicked = None
    indices = [int(i) for i in indices]
    for start in range(0, len(indices), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, indices[start:start + columns]):
            with col:
                st.image(thumb_png(run, i, size), width=size)
                if st.button(plain_label(caption_of(rows.loc[i], class_names)), key=f"{key}-{i}",
                             help="Show this image's nearest neighbours"):
                    clicked = i
    return clicked


def class_names_of(run: Run) -> list[str] | None:
    return metrics(run).get("class_names")


# -- the Data & model form --------------------------------------------------------------------------

def param_input(name: str, value, container=None, **overrides):
    """The widget of one form field (icbpl_app/form.py), starting from the draft's `value`; returns
    the value as the draft holds it. Widgets forget their value on other pages, so the draft,
    not the widget, remembers it; `overrides` replace the field's label, help or options."""
    field = form.field(name)
    where = container or st
    key = overrides.get("key", field.key)
    if key not in st.session_state:
        st.session_state[key] = field.to_widget(value)
    label, help_text = overrides.get("label", field.label), overrides.get("help", field.help)
    if field.kind == "number":
        shown = where.number_input(label, min_value=field.low, max_value=field.high, step=field.step,
                                   format=field.format, key=key, help=help_text)
    elif field.kind == "choice":
        options = overrides.get("options") or field.options()
        if st.session_state[key] not in options:
            st.session_state[key] = options[0]
        shown = where.selectbox(label, options, key=key, help=help_text, format_func=overrides.get("format_func", str))
    elif field.kind == "bool":
        shown = where.checkbox(label, key=key, help=help_text)
    else:
        shown = where.text_input(label, key=key, help=help_text, placeholder=overrides.get("placeholder"))
    return field.from_widget(shown)


# -- jobs ------------------------------------------------------------------------------------------

def where_it_runs(config: dict) -> str:
    """"cuda:0 (NVIDIA H200), bf16, 2 processes" from config.json's runtime (recorded when it starts)."""
    runtime = config.get("runtime") or {}
    if not runtime:
        return f"device {config.get('train', {}).get('device', 'auto')}"
    name = runtime.get("device_name")
    text = f"{runtime.get('device')}" + (f" ({name})" if name and runtime.get("device") != "cpu" else "")
    text += f", {runtime.get('training_precision', 'fp32')}"
    size = int(runtime.get("world_size") or 1)
    return text + (f", {size} processes" if size > 1 else "")


def start_run(draft, choice: dict | None = None) -> None:
    """Launch the draft as a background job (once per click) and open the Train page on it;
    `choice`: the auto recipe's, recorded in the run."""
    import uuid

    request = st.session_state.setdefault("launch_request", uuid.uuid4().hex)
    try:
        run = jobs.launch(runs_dir(), draft.spec(), request_id=request, gpus=draft["gpus"], choice=choice)
    except jobs.DuplicateJob as exc:
        st.warning(f"{str(exc)[:1].upper()}{str(exc)[1:]}. It is now the current run; change a setting "
                   "(e.g. the seed) to start another.", icon=":material/warning:")
        select_run(exc.run.id)
        return
    except jobs.JobError as exc:
        st.error(f"Cannot start training: {exc}", icon=":material/error:")
        return
    st.session_state["launch_request"] = uuid.uuid4().hex
    select_run(run.id)
    st.switch_page(PAGES["train"])


def select_run(run_id: str) -> None:
    st.session_state["run_id"] = run_id
    st.query_params["run"] = run_id
