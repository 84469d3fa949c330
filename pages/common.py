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


# -- curation -------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=8)     # read only: shared, not copied, per rerun
def _curated(path: str, version: str, log_version: str):
    from icbpl_app import curation

    run = open_run(path)
    return curation.curated_state(run, _assignments(path, version)["cluster"].to_numpy())


def curated(run: Run):
    """(The run's curated state, what is wrong with its edit log or None), cached per version of
    the assignments and of the log."""
    from icbpl_core.store.curation import LOG_NAME

    return _curated(str(run.path), stamp(run, "assignments.csv"), stamp(run, LOG_NAME))


def flags_of(state_, indices) -> dict[int, str]:
    """The flag of each flagged image among `indices`, as a gallery's extra caption line."""
    return {int(i): f"flag: {state_.flag[int(i)]}" for i in indices
            if 0 <= int(i) < len(state_.flag) and state_.flag[int(i)]}


LABELLING = "labelling"      # run id -> the labelling the Latent space and metrics pages show


def labelling(run: Run, state_, page: str) -> str:
    """The labelling a result page shows (curation.MODEL or CURATED): with edits in effect a
    toggle, curated first; the choice is kept per run across pages."""
    from icbpl_app import curation

    if not state_.done:
        return curation.MODEL
    chosen = st.session_state.setdefault(LABELLING, {})
    key = f"labelling-{page}-{run.id}"
    st.session_state[key] = chosen.get(run.id, curation.default_labelling(state_))
    value = st.segmented_control(
        "Clusters", curation.LABELLINGS, key=key, on_change=lambda: chosen.__setitem__(
            run.id, st.session_state.get(key) or chosen.get(run.id, curation.CURATED)),
        help=f"This run has {len(state_.done)} curation edit(s) in effect. Curated: the clusters as edited "
             "(merged, split, images moved; names), the model's: as the model assigned them.")
    return value or curation.CURATED


def act_on_selection(run: Run, ids, state_, key: str) -> None:
    """Move the images `ids` to a cluster or flag them, in one action, through the run's edit log
    (the Clusters page's history, undo and redo see it); why not, while the run is training."""
    from icbpl_app import curation

    ids = [int(i) for i in ids]
    outcome_key = f"{key}:outcome"
    ok, message = st.session_state.pop(outcome_key, (None, None))
    if message:
        (st.success if ok else st.error)(message, icon=":material/check:" if ok else ":material/error:")
    waiting = curation.waiting_reason(run)
    if waiting:
        st.info(f"{waiting} The selection can be moved or flagged when it has.", icon=":material/hourglass_top:")
        return
    if not ids:
        return

    def do(action: str, *args) -> None:
        outcome = curation.edit(run, action, *args)
        st.session_state[outcome_key] = (outcome.ok, outcome.message)
        if outcome.ok:
            st.session_state.setdefault(LABELLING, {})[run.id] = curation.CURATED   # show what was done
        st.rerun()

    known = state_.clusters()
    what = f"the {len(ids):,} image{'s' if len(ids) != 1 else ''}"
    m1, m2, m3, m4 = st.columns([3, 2, 3, 2], vertical_alignment="bottom")
    target = m1.selectbox(f"Move {what} to", known, key=f"{key}:to",
                          format_func=lambda c: curation.cluster_label(state_, c))
    if m2.button("Move", key=f"{key}:move", icon=":material/drive_file_move:"):
        do("move", ids, target)
    flag = m3.selectbox(f"Flag {what} as", curation.FLAG_CHOICES, key=f"{key}:flag_as",
                        format_func=lambda f: "none (clear the flag)" if f == "none" else f)
    if m4.button("Flag", key=f"{key}:flag", icon=":material/flag:"):
        do("flag", ids, flag)
    st.caption("Each is one edit in the run's edit log: the Clusters page's history lists it, Undo takes it back.")


# -- galleries -------------------------------------------------------------------------------------

def caption_of(row, class_names: list[str] | None) -> str:
    """Index, cluster and label of an image, as plain text (names come from the user's files)."""
    from icbpl_app.figures import class_name

    parts = [f"#{int(row['index'])}", f"c{int(row['cluster'])}"]
    if "label" in row and row["label"] == row["label"]:
        parts.append(f"label {class_name(int(row['label']), class_names)}")
    return " · ".join(parts)


def file_of(row) -> str:
    """The image's file name ('' when the run has no ids)."""
    from icbpl_app.gallery import file_name

    return file_name(row["id"]) if "id" in row and isinstance(row["id"], str) else ""


def plain_label(text: str) -> str:
    """Text shown as a widget label without Markdown (widget labels render it): every Markdown
    character escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$:])", r"\\\1", text)


def gallery_page(indices, table, class_names: list[str] | None, key: str):
    """The controls of a gallery (sort, order, label and cluster filters, page size, page) and the
    page of `indices` they choose (gallery.browse)."""
    from icbpl_app.gallery import AS_LISTED, PAGE_SIZES, SORTS, browse

    indices = np.asarray(indices, dtype=np.int64)
    chosen = table.set_index("index").loc[indices] if len(indices) else table.iloc[:0]
    has_labels = "label" in table.columns
    sorts = [s for s in SORTS if s != "label" or has_labels]
    left, right = st.columns([1, 1], vertical_alignment="bottom")
    with left.popover("Sort & filter", icon=":material/filter_list:"):
        sort = st.selectbox("Sort by", sorts, key=f"{key}:sort",
                            help=f"'{AS_LISTED}': the order this gallery comes in.")
        descending = st.toggle("Descending", key=f"{key}:desc")
        labels = st.multiselect("Labels", sorted(int(v) for v in chosen["label"].unique()), key=f"{key}:labels",
                                format_func=lambda v: _class_name(v, class_names),
                                placeholder="all labels") if has_labels else None
        clusters = st.multiselect("Clusters", sorted(int(v) for v in chosen["cluster"].unique()),
                                  key=f"{key}:clusters", format_func=lambda v: f"cluster {v}",
                                  placeholder="all clusters")
        per_page = st.selectbox("Images per page", PAGE_SIZES, index=PAGE_SIZES.index(60), key=f"{key}:per")
    page_key = f"{key}:page"
    page = browse(table, indices, sort, descending, labels, clusters, int(st.session_state.get(page_key, 1)) - 1,
                  per_page)
    if page.pages > 1:
        st.session_state[page_key] = page.page + 1
        right.number_input(f"Page (of {page.pages})", min_value=1, max_value=page.pages, step=1, key=page_key)
    else:
        st.session_state.pop(page_key, None)
    return page


def _class_name(label, class_names):
    from icbpl_app.figures import class_name

    return class_name(label, class_names)


def _page_note(page) -> str:
    if page.total == 0:
        return "no image matches the filters"
    return f"images {page.first + 1:,}-{page.first + len(page.indices):,} of {page.total:,}"


def html_gallery(run: Run, indices, table, class_names: list[str] | None = None, size: int = 64,
                 title: str = "", extra: dict[int, str] | None = None, key: str | None = None) -> None:
    """A compact grid of thumbnails with index, cluster, label and file name under each (one
    element; hovering an image shows its whole path). With a `key`, the gallery can be sorted,
    filtered and paged (gallery_page)."""
    run_dataset(run)
    if key is not None:
        page = gallery_page(indices, table, class_names, key)
        indices = page.indices
        title = f"{title} ({_page_note(page)})" if title else _page_note(page)
    cells = []
    rows = table.set_index("index", drop=False)
    for i in indices:
        i = int(i)
        row = rows.loc[i]
        caption = caption_of(row, class_names)
        name = file_of(row)
        lines = html.escape(caption) + (f"<br><span class='icbpl-file'>{html.escape(name)}</span>" if name else "")
        if extra and i in extra:
            lines += f"<br>{html.escape(extra[i])}"
        tip = html.escape(caption + (f"\n{row['id']}" if "id" in row else ""), quote=True)
        cells.append(
            f'<figure class="icbpl-cell" data-index="{i}" title="{tip}"><img src="{thumb_uri(run, i, size)}" '
            f'alt="{html.escape(name or f"image {i}", quote=True)}" width="{size}" height="{size}">'
            f'<figcaption>{lines}</figcaption></figure>')
    style = ("<style>.icbpl-grid{display:flex;flex-wrap:wrap;gap:8px}.icbpl-cell{margin:0;width:%dpx;"
             "text-align:center;font-size:11px;line-height:1.25;overflow-wrap:anywhere}.icbpl-cell img{"
             "image-rendering:pixelated;border:1px solid #ddd;border-radius:3px;background:#fff}"
             ".icbpl-file{color:#555}</style>") % max(size + 40, 104)
    heading = f"<div style='font-weight:600;margin:4px 0'>{html.escape(title)}</div>" if title else ""
    st.html(style + heading + f'<div class="icbpl-grid">{"".join(cells)}</div>')


def image_grid(images, captions: list[str], size: int = 64) -> None:
    """Thumbnails (PIL images) in a wrapping grid with a caption under each (one element)."""
    from icbpl_app.gallery import data_uri

    cells = "".join(
        f'<figure class="icbpl-pcell" title="{html.escape(cap, quote=True)}"><img src="{data_uri(img)}" '
        f'alt="{html.escape(cap, quote=True)}" width="{size}" height="{size}"><figcaption>{html.escape(cap)}'
        '</figcaption></figure>' for img, cap in zip(images, captions))
    style = ("<style>.icbpl-pgrid{display:flex;flex-wrap:wrap;gap:6px}.icbpl-pcell{margin:0;width:%dpx;"
             "text-align:center;font-size:11px;line-height:1.2;overflow-wrap:anywhere}.icbpl-pcell img{"
             "image-rendering:pixelated;object-fit:contain;border:1px solid #ddd;border-radius:3px;"
             "background:#fff}</style>") % max(size + 8, 96)
    st.html(style + f'<div class="icbpl-pgrid">{cells}</div>')


SCROLL = "icbpl_scroll_to"


def button_gallery(run: Run, indices, table, class_names: list[str] | None, key: str, columns: int = 6,
                   size: int = 72) -> int | None:
    """Thumbnails with their caption and file name and a Neighbours button under each (sortable,
    filterable, paged: gallery_page); returns the index whose button was clicked, and asks the
    page to scroll to its neighbours (anchor("neighbours"))."""
    run_dataset(run)
    rows = table.set_index("index", drop=False)
    clicked = None
    page = gallery_page(indices, table, class_names, key)
    st.caption(_page_note(page))
    indices = [int(i) for i in page.indices]
    for start in range(0, len(indices), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, indices[start:start + columns]):
            with col:
                row = rows.loc[i]
                st.image(thumb_png(run, i, size), width=size)
                name = file_of(row)
                st.caption(plain_label(caption_of(row, class_names)) + (f"  \n{plain_label(name)}" if name else ""),
                           help=plain_label(str(row["id"])) if "id" in row else None)
                if st.button("Neighbours", key=f"{key}-{i}", icon=":material/hub:",
                             help=f"Show the nearest neighbours of image #{i}"):
                    clicked = i
    if clicked is not None:
        st.session_state[SCROLL] = "neighbours"
    return clicked


def anchor(name: str) -> None:
    """A place on the page that a gallery's button scrolls to (button_gallery); scrolls there now
    when a button asked for it in this rerun."""
    import uuid

    st.html(f'<div id="icbpl-anchor-{html.escape(name, quote=True)}"></div>')
    if st.session_state.get(SCROLL) == name:
        del st.session_state[SCROLL]
        # (no "<" in the script: Streamlit's sanitizer drops a script whose text holds "<" and a letter or digit)
        st.html("<script>/* %s */(function(){let tries=0;const go=()=>{const el=document.getElementById("
                "'icbpl-anchor-%s');if(el){el.scrollIntoView({block:'start'});}else if(50 > tries++){setTimeout(go,100);}};"
                "setTimeout(go,150);})();</script>" % (uuid.uuid4().hex, html.escape(name, quote=True)),
                unsafe_allow_javascript=True)


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
        # no bounds on the widget: a browser keeps showing an out-of-range value it never sends,
        # so the page would check another value than the one shown; the table's check says why instead
        shown = where.number_input(label, step=field.step, format=field.format, key=key, help=help_text)
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
    from icbpl_core.store.runs import CHOICE_FILE

    launch_and_open(draft.spec(), draft["gpus"], {CHOICE_FILE: choice} if choice else None)


def launch_and_open(spec, gpus: int, files: dict[str, dict] | None = None) -> None:
    """Launch `spec` as a background job (once per click), with `files` in its run folder, and open
    the Train page on it; a refusal is shown where the click was."""
    import uuid

    request = st.session_state.setdefault("launch_request", uuid.uuid4().hex)
    try:
        run = jobs.launch(runs_dir(), spec, request_id=request, gpus=gpus, files=files)
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
