"""Data & model: choose the images, the backbone, the number of clusters and the training
options; preview the data; refuse choices that cannot work; start training. Every field is
a parameter of the table (icbpl_core/params.py), drawn through icbpl_app/form.py."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import streamlit as st

from icbpl_app import choosing, form, state, suggest_k, uploads
from icbpl_core.backbones import BACKBONES, backbone_names
from icbpl_core.datasets import DATASETS, get_entry, load_dataset
from icbpl_core.errors import DatasetError
from icbpl_core.recipes import RECIPES, default_recipe
from pages import common

common.entry()

SOURCES = {"registry": "A dataset from the list", "folder": "A folder on this machine",
           "archive": "Upload a zip archive"}
PREVIEW = 32
MAIN_MODEL_FIELDS = ("backbone", "n_clusters", "epochs", "mode")
STICKY = ('<style>[data-testid="stLayoutWrapper"]:has(> .st-key-d_launch){position:sticky;top:3.75rem;'
          "z-index:5;background:var(--background-color, #fff)}</style>")


@st.cache_resource(show_spinner="Opening the dataset…", max_entries=6)
def _open_preview(name: str, root: str | None, limit: int | None, seed: int, version: int):
    return load_dataset(name, root, limit, seed, download=False)


def open_preview(name: str, root: str | None, limit: int | None, seed: int):
    """The dataset as training will see it (reopened when a folder or archive changes)."""
    try:
        version = Path(root).stat().st_mtime_ns if root else 0
    except OSError:
        version = -1
    return _open_preview(name, root, limit, seed, version)


def session_id() -> str:
    """This browser session's id: its uploads and the folders it may open are its own."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex)


def choose_images(draft: state.Draft) -> dict:
    """Section 1: where the images are, the subset and the seed; the values it sets."""
    own = state.own_data_sources()
    sources = ["registry", *own]
    entry = get_entry(draft["dataset"])
    source = st.radio("Where are the images?", sources, format_func=SOURCES.get, key="d_source", horizontal=True,
                      index=sources.index(entry.own_data) if entry.own_data in sources else 0)
    if source == "registry":
        names = [n for n in sorted(DATASETS) if not DATASETS[n].own_data]
        name = common.param_input("dataset", draft["dataset"] if draft["dataset"] in names else state.DEFAULT_DATASET,
                                  options=names, format_func=lambda n: f"{n} — {get_entry(n).description}")
        needs_root = get_entry(name).needs_root
        root = common.param_input("data_root", draft["data_root"] if draft["dataset"] == name else None,
                                  key="d_root" if needs_root else "d_root_opt",
                                  label="Data folder" if needs_root else "Data folder (optional)",
                                  help="Where this dataset's files are." if needs_root else
                                  "Leave empty for the dataset's default location (./data).")
    elif source == "folder":
        name = own["folder"]
        root = common.param_input("data_root", draft["data_root"] if draft["dataset"] == name else None,
                                  key="d_folder", label="Folder path", placeholder="/path/to/images",
                                  help="Class subfolders (cats/, dogs/, …) give labels for the metrics; a flat "
                                       "folder of images has no labels. png, jpg, bmp, gif, tif, webp.")
    else:
        name = own["archive"]
        upload = st.file_uploader("Zip archive of images", type=["zip"], key="d_upload",
                                  help="Same layout as a folder. Unsafe entries (absolute paths, '..', links) "
                                       "and zip bombs are refused.")
        root = None
        if upload is not None:
            try:
                root = str(uploads.save_upload(upload, session_id()))
                st.session_state["d_zip_name"] = upload.name
            except uploads.UploadError as exc:
                st.error(f"{upload.name}: {exc}", icon=":material/error:")
        elif draft["dataset"] == name and draft["data_root"]:
            root = draft["data_root"]
            st.caption(f"Using the archive uploaded before: {st.session_state.get('d_zip_name', root)}")
    return {"dataset": name, "data_root": root,
            "limit": common.param_input("limit", draft["limit"]), "seed": common.param_input("seed", draft["seed"])}


def open_images(values: dict):
    """(dataset, problem): the dataset as training will see it, or why it cannot be opened."""
    entry = get_entry(values["dataset"])
    if entry.needs_root and not values["data_root"]:
        return None, ("Upload a zip archive of images." if entry.own_data == "archive" else
                      "Choose a folder of images or upload a zip archive.")
    if values["data_root"] and uploads.refusal(values["data_root"], session_id()):
        return None, uploads.refusal(values["data_root"], session_id())
    try:
        return open_preview(values["dataset"], values["data_root"], values["limit"], values["seed"]), None
    except DatasetError as exc:
        return None, state.message(exc)
    except Exception as exc:  # noqa: BLE001 - anything unreadable is a plain message here
        return None, common.friendly(exc)


def preview(dataset) -> None:
    if dataset is None:
        st.info("The preview appears once the images can be opened.", icon=":material/image:")
        return
    labels, n_classes, n_images = dataset.labels, dataset.n_classes, len(dataset)
    first = dataset.image(0)
    c1, c2, c3 = st.columns(3)
    c1.metric("Images", f"{n_images:,}")
    c2.metric("Classes", n_classes if labels is not None else "no labels")
    c3.metric("Image size", f"{first.width}×{first.height} {'grey' if first.mode == 'L' else 'colour'}")
    picks = np.unique(np.linspace(0, n_images - 1, min(PREVIEW, n_images)).astype(int))
    names = dataset.class_names
    captions = [(names[labels[i]] if names else str(labels[i])) if labels is not None else f"#{i}" for i in picks]
    common.image_grid([dataset.thumbnail(int(i), 64) for i in picks], captions, 64)
    if labels is not None:
        counts = np.bincount(labels, minlength=n_classes or 0)
        with st.expander(f"Images per class ({n_classes} classes)"):
            st.dataframe({"class": [names[c] if names else str(c) for c in range(len(counts))],
                          "images": counts.tolist()}, hide_index=True, width="stretch")
    else:
        st.info("These images have no labels: the result pages show cluster sizes and confidence "
                "instead of accuracy.", icon=":material/info:")
    if dataset.skipped:
        with st.expander(f":material/warning: {len(dataset.skipped)} file(s) skipped (unreadable or not images)"):
            st.code("\n".join(f"{p}: {why}" for p, why in dataset.skipped[:200]))


def follow_dataset(values: dict, dataset) -> None:
    """A newly chosen dataset brings its own backbone and training recipe (the defaults `train
    --dataset` uses) into the fields; newly chosen images bring their number of classes as K."""
    name = values["dataset"]
    if st.session_state.get("d_recipe_for") != name:
        if "d_recipe_for" in st.session_state or "draft" not in st.session_state:
            recipe = {**state.train_defaults(name), "backbone": get_entry(name).default_backbone,
                      "recipe": default_recipe(name)}
            for field in form.FIELDS.values():
                if field.name in recipe and field.name not in ("n_clusters", "seed"):
                    st.session_state[field.key] = field.to_widget(recipe[field.name])
        st.session_state["d_recipe_for"] = name
    images = (name, values["data_root"])
    if st.session_state.get("d_k_for") != images and dataset is not None and dataset.labels is not None:
        field = form.field("n_clusters")
        st.session_state[field.key] = field.to_widget(max(2, dataset.n_classes or 2))
        st.session_state["d_k_for"] = images


def choose_recipe(draft: state.Draft, name: str) -> str:
    """The recipe: auto (chosen from the images before training), the dataset's own, or the paper's."""
    recipe = common.param_input("recipe", draft["recipe"] or default_recipe(name), options=list(RECIPES),
                                help="A preset of the backbone, input size, neighbour source and head. auto: "
                                     "chosen from your images (each candidate scored on a sample, no label read), "
                                     "then filled into the fields below, where any of them can be changed; "
                                     "dataset: the dataset's own measured settings; paper: the published "
                                     "self-supervised ResNet-50 fine-tuned at 224 px (a GPU's work).")
    if st.session_state.get("d_recipe_values_for") != (name, recipe) and recipe != "auto":
        preset = {**state.train_defaults(name), "backbone": get_entry(name).default_backbone,
                  "mode": "auto", "image_size": None, "neighbours_from": "auto", **RECIPES[recipe]}
        if "d_recipe_values_for" in st.session_state:      # a change of recipe, not the first visit
            _fill(preset)
    st.session_state["d_recipe_values_for"] = (name, recipe)
    return recipe


def _fill(values: dict) -> None:
    """Put values into the form's fields (before they are drawn)."""
    for field in form.FIELDS.values():
        if field.name in values and field.name not in ("n_clusters", "seed", "recipe"):
            st.session_state[field.key] = field.to_widget(values[field.name])


def apply_finished_choice(values: dict) -> None:
    """A choice that finished since the last run of this page fills the fields once."""
    job = choosing.job_for(state.runs_dir(), values)
    if job.state == "done" and st.session_state.get("d_choice_applied") != job.key:
        _fill(choosing.form_values(job.choice))
        st.session_state["d_choice_applied"] = job.key


@st.fragment(run_every=1.5)
def watch(find_job, values: dict, doing: str, watching: str) -> None:
    """Progress of a background job (icbpl_app/background.py) that `find_job(runs_dir, values)`
    finds; when it ends, the whole page reruns to show and apply its result (`watching`: the session
    key that remembers which job is watched)."""
    job = find_job(state.runs_dir(), values)
    if job.state == "running":
        st.session_state[watching] = job.key
        st.info(f"{doing}: {job.progress}", icon=":material/hourglass_top:")
    elif st.session_state.get(watching) == job.key:
        st.session_state.pop(watching)
        st.rerun()


def show_choice(values: dict, ready: bool) -> None:
    """The auto recipe: the choice and every candidate's scores, or the button that makes it."""
    job = choosing.job_for(state.runs_dir(), values)
    if job.state == "running":
        watch(choosing.job_for, values, "Choosing the recipe", "d_choice_watching")
        return
    if job.state == "done":
        choice = job.choice
        st.success(f"Auto recipe: **{choice.chosen}**, filled into the fields below. Why: {choice.why}.",
                   icon=":material/auto_awesome:")
        with st.expander(f"Scores of every candidate ({choice.seconds:.0f} s on {choice.sample:,} images)"):
            rows = [{"candidate": n, "chosen": n == choice.chosen,
                     **{k: round(v, 4) for k, v in s.items() if isinstance(v, float)}} for n, s in choice.scores.items()]
            st.dataframe(rows, hide_index=True, width="stretch")
            st.caption(f"Chosen by {choice.criterion.replace('_', ' ')}; the other columns are shown for "
                       "comparison. No label is read. Same as `icbpl choose` with these settings.")
        return
    if job.state == "failed":
        st.error(f"Choosing the recipe failed: {job.progress}", icon=":material/error:")
    st.info("The auto recipe picks the features and head for these images: it scores each candidate with short "
            "runs on a sample (about a minute here), without reading labels.", icon=":material/auto_awesome:")
    if st.button("Choose for me", key="d_choose", disabled=not ready, icon=":material/auto_awesome:"):
        choosing.start(state.runs_dir(), values)
        st.session_state["d_choice_watching"] = job.key
        st.rerun()


def apply_suggested_k() -> None:
    """"Use K = k" clicked on the last run of this page: into the K field before it is drawn."""
    k = st.session_state.pop("d_use_k", None)
    if k is not None:
        st.session_state[form.field("n_clusters").key] = form.field("n_clusters").to_widget(k)


def suggest_clusters(values: dict, ready: bool) -> None:
    """Suggest K: short runs for every K in a range on the images' features, scored without labels."""
    job = suggest_k.job_for(state.runs_dir(), values)
    with st.expander("Not sure about K? Suggest it", expanded=job.state in ("running", "done")):
        if job.state == "running":
            watch(suggest_k.job_for, values, "Suggesting K", "d_k_watching")
            return
        if job.state == "done":
            suggestion = job.suggestion
            st.plotly_chart(suggest_k.figure(suggestion), key="d_k_figure")
            st.caption(f"{suggestion.why[:1].upper()}{suggestion.why[1:]}. Same as `icbpl suggest-k` with these "
                       "settings. Near-flat scores mean several K are about as good: look at the chart.")
            if st.button(f"Use K = {suggestion.k}", key="d_use_k_button"):
                st.session_state["d_use_k"] = suggestion.k
                st.rerun()
            return
        if job.state == "failed":
            st.error(f"Suggesting K failed: {job.progress}", icon=":material/error:")
        st.caption("Scores every K from 2 to 15 with short runs on a sample of the images (a few minutes here), "
                   "without reading labels.")
        if st.button("Suggest K", key="d_suggest_k", disabled=not ready):
            suggest_k.start(state.runs_dir(), values)
            st.session_state["d_k_watching"] = job.key
            st.rerun()


def choose_model(draft: state.Draft, name: str, dataset) -> dict:
    """Section 2: the backbone, K, epochs and mode up front; every other field under Advanced."""
    default_backbone = get_entry(name).default_backbone
    classes = dataset.n_classes if dataset is not None and dataset.labels is not None else None
    values = {}
    columns = st.columns(len(MAIN_MODEL_FIELDS))
    values["backbone"] = common.param_input(
        "backbone", draft["backbone"] or default_backbone, columns[0], options=backbone_names(),
        format_func=lambda n: f"{n} ({state.backbone_tag(n)})",
        help="The feature extractor. Pretrained ones are fine-tuned or used frozen; `scratch` is a small CNN "
             "trained from scratch for tiny grey images. offline: nothing to download (no weights needed, or "
             "they are on this machine); downloads: fetched when the run starts (needs internet); missing: "
             "cannot be had here (the message above says why).")
    columns[0].caption(BACKBONES[values["backbone"]].description
                       + (" · default for this dataset" if values["backbone"] == default_backbone else ""))
    k_help = form.field("n_clusters").help + (f" This data has {classes} classes." if classes else "")
    values["n_clusters"] = common.param_input("n_clusters", draft["n_clusters"], columns[1], help=k_help)
    values["epochs"] = common.param_input("epochs", draft["epochs"], columns[2])
    values["mode"] = common.param_input("mode", draft["mode"], columns[3])
    with st.expander("Advanced training options"):
        for group, title in (("model", "Model and views"), ("training", "Training")):
            st.markdown(f"**{title}**")
            fields = [f for f in form.advanced(group) if f.name not in values]
            # numbers and lists four to a row, then the switches on a row of their own
            for width, kinds in ((4, ("number", "choice", "text")), (2, ("bool",))):
                for row_fields in _rows([f for f in fields if f.kind in kinds], width):
                    for column, field in zip(st.columns(width), row_fields):
                        values[field.name] = common.param_input(field.name, draft[field.name], column)
    return values


def _rows(fields: list, width: int = 4) -> list[list]:
    return [fields[i:i + width] for i in range(0, len(fields), width)]


def restore_from_url() -> None:
    """A new browser session (a reload, a link): the choices kept in the page's URL."""
    if "draft" in st.session_state:
        return
    restored = state.draft_from_query(st.query_params.to_dict())
    if restored:
        draft = state.Draft(restored)
        st.session_state["draft"] = draft.to_dict()
        if "n_clusters" in restored:      # a K kept in the URL is not replaced by the data's classes
            st.session_state["d_k_for"] = (draft["dataset"], draft["data_root"])


def keep_in_url(draft: state.Draft) -> None:
    """The draft's choices into the URL (the run picker's `run` stays), so a reload keeps them."""
    wanted = state.draft_query(draft)
    shown = {k: v for k, v in st.query_params.to_dict().items() if k != "run"}
    if shown != wanted:
        for name in set(shown) - set(wanted):
            del st.query_params[name]
        st.query_params.update(wanted)


def launch(top, draft: state.Draft, n_images: int | None, open_error: str | None) -> None:
    """The verdict on the draft and the Start button, in `top` (near the page's top: visible
    without scrolling); what stops it, or what starting it will download."""
    problems = state.problems(draft, n_images)
    if open_error and not draft["download"]:
        problems = ["The images cannot be opened: see “1 · Images” below."] + problems
    choice_job = choosing.job_for(state.runs_dir(), draft.to_dict()) if draft["recipe"] == "auto" else None
    with top.container(border=True):
        says, act = st.columns([5, 1], vertical_alignment="center")
        with act:
            start = _start_button(problems, choice_job, draft)
        with says:
            _verdict(problems, choice_job, draft, n_images)
    if start:
        common.start_run(draft, _choice_record(choice_job, draft))


def _verdict(problems: list[str], choice_job, draft: state.Draft, n_images: int | None) -> None:
    if problems:
        for problem in problems:
            st.error(problem, icon=":material/error:")
        return
    if choice_job is not None and choice_job.state != "done":
        st.info("The auto recipe is chosen before training starts.", icon=":material/auto_awesome:")
        return
    summary = (f"{draft['dataset']}" + (f" ({n_images:,} images)" if n_images else "")
               + f", recipe {draft['recipe']}, backbone {draft['backbone']}, K = {draft['n_clusters']}, "
               f"{draft['epochs']} epochs.")
    downloads = state.downloads(draft)
    if downloads:       # it can start, but only with internet: never the plain "Ready"
        st.warning(" ".join(downloads) + f"\n\nStart downloads them, then trains: {summary}",
                   icon=":material/download:")
    else:
        st.success(f"Ready: {summary}", icon=":material/check_circle:")
    if choice_job is not None:
        overridden = choosing.overridden(choice_job.choice, draft.to_dict())
        if overridden:
            st.caption("Changed by hand after the auto recipe chose: "
                       + ", ".join(state.label(n) for n in overridden) + ".")


def _start_button(problems: list[str], choice_job, draft: state.Draft) -> bool:
    """Whether to start now (clicked, or the auto recipe this click asked for has just been chosen)."""
    if problems:
        st.button("Start training", type="primary", disabled=True, key="d_start_disabled", width="stretch")
        return False
    if choice_job is not None and choice_job.state != "done":
        if st.button("Choose the recipe, then start →", type="primary", key="d_choose_start", width="stretch",
                     disabled=choice_job.state == "running"):
            choosing.start(state.runs_dir(), draft.to_dict())
            st.session_state["d_choice_watching"] = choice_job.key
            st.session_state["d_start_after_choice"] = choice_job.key
            st.rerun()
        return False
    start_now = choice_job is not None and st.session_state.get("d_start_after_choice") == choice_job.key
    if start_now:
        st.session_state.pop("d_start_after_choice")
    clicked = st.button("Start training →", type="primary", key="d_start", width="stretch",
                        help="Starts a background job and opens the Train page to watch it.")
    return start_now or clicked


def _choice_record(choice_job, draft: state.Draft) -> dict | None:
    """The auto recipe's choice as the run records it, with the fields changed by hand since."""
    if choice_job is None:
        return None
    choice = choice_job.choice.to_dict()
    choice["overridden"] = choosing.overridden(choice_job.choice, draft.to_dict())
    return choice


restore_from_url()
draft = state.Draft(st.session_state.get("draft"))

st.title("Data & model")
st.caption("Pick the images and how to cluster them. The defaults train on the bundled digits dataset "
           "(no download) in a minute or two on a CPU.")
top = st.container(key="d_launch")      # filled last, once every field below has its value
# the verdict and Start stay in view while the fields below are scrolled through and changed
st.html(STICKY)

left, right = st.columns([5, 6], gap="large")
with left:
    st.subheader("1 · Images")
    values = choose_images(draft)
    dataset, open_error = open_images(values)
    n_images = len(dataset) if dataset is not None else None
    values["download"] = False
    refused = bool(values["data_root"]) and uploads.refusal(values["data_root"], session_id()) is not None
    if open_error:
        st.warning(open_error, icon=":material/warning:")
        entry = get_entry(values["dataset"])
        if not entry.own_data and not entry.needs_root and not refused:
            values["download"] = common.param_input("download", draft["download"],
                                                    help="The training job downloads the missing files "
                                                         "(needs internet).")
with right:
    st.subheader("Preview")
    preview(dataset)

follow_dataset(values, dataset)
st.divider()
st.subheader("2 · Model and training")
values["recipe"] = choose_recipe(draft, values["dataset"])
# what the choice depends on is known before the model fields are drawn: the images, K, the seed
choice_values = {**draft.to_dict(), **values}
if values["recipe"] == "auto":
    apply_finished_choice(choice_values)
    show_choice(choice_values, ready=dataset is not None)
apply_suggested_k()
# before the auto recipe has chosen, the backbone field holds no choice yet: let suggest-k choose too
unchosen = values["recipe"] == "auto" and choosing.job_for(state.runs_dir(), choice_values).state != "done"
suggest_clusters({**choice_values, "backbone": None} if unchosen else choice_values, ready=dataset is not None)
values.update(choose_model(draft, values["dataset"], dataset))
draft = state.Draft({**draft.to_dict(), **values})
st.session_state["draft"] = draft.to_dict()
keep_in_url(draft)
launch(top, draft, n_images, open_error)
