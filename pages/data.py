"""Data & model: choose the images, the backbone, the number of clusters and the training
options; preview the data; refuse choices that cannot work; start training."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

from icbpl_core import appstate, atomic
from icbpl_core.augment import AUGMENTATIONS
from icbpl_core.backbones import BACKBONES, backbone_names
from icbpl_core.config import TrainConfig
from icbpl_core.datasets import DatasetError, dataset_names, get_entry, load_dataset
from icbpl_core.pipeline import neighbour_sources
from pages import common

common.entry()

SOURCES = {"registry": "A dataset from the list", "folder": "A folder on this machine", "zip": "Upload a zip archive"}
MODES = {"auto": "auto — head-only with a pretrained backbone, else fine-tune",
         "head": "head — train the projection head on cached backbone features (fast on CPU)",
         "finetune": "finetune — train the backbone's last blocks too (slow on CPU, GPU form)"}
AUGMENTS = ["auto", *AUGMENTATIONS]
PREVIEW = 32


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


def init(key: str, value, lo=None, hi=None) -> None:
    """A widget's starting value comes from the draft (widgets forget theirs on other pages),
    kept inside the widget's range."""
    if key not in st.session_state:
        if lo is not None and value is not None:
            value = max(lo, value)
        if hi is not None and value is not None:
            value = min(hi, value)
        st.session_state[key] = value


def save_upload(upload) -> str:
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:20]
    path = appstate.uploads_dir() / f"{digest}.zip"
    if not path.is_file():
        atomic.write_bytes(path, data)
    return str(path)


draft = appstate.Draft.from_dict(st.session_state.get("draft"))

st.title("Data & model")
st.caption("Pick the images and how to cluster them. The defaults train on the bundled digits dataset "
           "(no download) in a minute or two on a CPU.")

left, right = st.columns([5, 6], gap="large")

with left:
    st.subheader("1 · Images")
    source = "folder" if draft.dataset == "folder" and not (draft.data_root or "").endswith(".zip") else \
        "zip" if draft.dataset in ("zip", "folder") else "registry"
    init("d_source", source)
    source = st.radio("Where are the images?", list(SOURCES), format_func=SOURCES.get, key="d_source",
                      horizontal=True)
    root: str | None = None
    if source == "registry":
        names = [n for n in dataset_names() if n not in appstate.OWN_DATA]
        init("d_dataset", draft.dataset if draft.dataset in names else appstate.DEFAULT_DATASET)
        name = st.selectbox("Dataset", names, key="d_dataset", format_func=lambda n: f"{n} — {get_entry(n).description}",
                            help="Registered datasets. `digits` ships with scikit-learn (no download).")
        if get_entry(name).needs_root:
            init("d_root", draft.data_root or "")
            root = st.text_input("Data folder", key="d_root", help="Where this dataset's files are.").strip() or None
        else:
            init("d_root_opt", draft.data_root or "")
            root = st.text_input("Data folder (optional)", key="d_root_opt",
                                 help="Leave empty for the dataset's default location.").strip() or None
    elif source == "folder":
        name = "folder"
        init("d_folder", draft.data_root if draft.dataset == "folder" else "")
        root = st.text_input("Folder path", key="d_folder", placeholder="/path/to/images",
                             help="Class subfolders (cats/, dogs/, …) give labels for the metrics; a flat "
                                  "folder of images has no labels. png, jpg, bmp, gif, tif, webp.").strip() or None
    else:
        name = "zip"
        upload = st.file_uploader("Zip archive of images", type=["zip"], key="d_upload",
                                  help="Same layout as a folder. Unsafe entries (absolute paths, '..', links) "
                                       "and zip bombs are refused.")
        if upload is not None:
            root = save_upload(upload)
            st.session_state["d_zip_name"] = upload.name
        elif draft.dataset == "zip" and draft.data_root:
            root = draft.data_root
            st.caption(f"Using the archive uploaded before: {st.session_state.get('d_zip_name', root)}")

    init("d_limit", int(draft.limit or 0), 0)
    limit = st.number_input("Use at most this many images (0 = all)", min_value=0, step=100, key="d_limit",
                            help="A seeded, class-balanced subset: quick trials on big datasets.")
    init("d_seed", int(draft.train.get("seed", 0)), 0)
    seed = st.number_input("Seed", min_value=0, step=1, key="d_seed",
                           help="Fixes the subset, the PEDCC points and training randomness.")

    dataset, n_images, open_error = None, None, None
    entry = get_entry(name)
    if entry.needs_root and not root:
        open_error = "Choose a folder of images or upload a zip archive." if name != "zip" else \
            "Upload a zip archive of images."
    else:
        try:
            dataset = open_preview(name, root, int(limit) or None, int(seed))
            n_images = len(dataset)
        except DatasetError as exc:
            open_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - anything unreadable is a plain message here
            open_error = common.friendly(exc)
    download = False
    if open_error:
        st.warning(open_error, icon=":material/warning:")
        if source == "registry" and not entry.needs_root:
            download = st.checkbox("Download it when training starts", value=draft.download,
                                   help="The training job downloads the missing files (needs internet).")

with right:
    st.subheader("Preview")
    if dataset is not None:
        labels = dataset.labels
        n_classes = dataset.n_classes
        first = dataset.image(0)
        c1, c2, c3 = st.columns(3)
        c1.metric("Images", f"{n_images:,}")
        c2.metric("Classes", n_classes if labels is not None else "no labels")
        c3.metric("Image size", f"{first.width}×{first.height} {'grey' if first.mode == 'L' else 'colour'}")
        picks = np.unique(np.linspace(0, n_images - 1, min(PREVIEW, n_images)).astype(int))
        thumbs = [dataset.thumbnail(int(i), 64) for i in picks]
        names = dataset.class_names
        captions = [(names[labels[i]] if names and labels is not None else str(labels[i])) if labels is not None
                    else f"#{i}" for i in picks]
        common.image_grid(thumbs, captions, 64)
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
    else:
        st.info("The preview appears once the images can be opened.", icon=":material/image:")

recipe = appstate.train_defaults(name)
TRAIN_KEYS = {"d_k": "n_clusters", "d_epochs": "epochs", "d_batch": "batch_size", "d_lr": "lr", "d_latent": "latent_dim",
              "d_hidden": "hidden_dim", "d_w_mmd": "w_mmd", "d_w_aug": "w_aug", "d_w_knn": "w_knn", "d_w_cos": "w_cos",
              "d_neighbors": "n_neighbors", "d_refresh": "refresh_every", "d_heads": "n_heads"}
if st.session_state.get("d_recipe_for", name if st.session_state.get("draft") else None) != name:
    # another dataset: its own training recipe (the same defaults `train --dataset` uses)
    for key, field_name in TRAIN_KEYS.items():
        if field_name in recipe and field_name != "n_clusters":
            st.session_state[key] = recipe[field_name]
    draft.train = {**draft.train, **{k: v for k, v in recipe.items() if k not in ("n_clusters", "seed")}}
st.session_state["d_recipe_for"] = name
defaults = TrainConfig.from_dict(recipe)

st.divider()
st.subheader("2 · Model and training")
m1, m2, m3, m4 = st.columns(4)
with m1:
    backbones = backbone_names()
    default_backbone = entry.default_backbone
    wanted = draft.backbone if draft.backbone in backbones and draft.dataset == name else default_backbone
    if st.session_state.get("d_backbone_for") != name:      # a new dataset: its default backbone
        st.session_state["d_backbone"] = wanted
        st.session_state["d_backbone_for"] = name
    init("d_backbone", wanted)
    backbone = st.selectbox("Backbone", backbones, key="d_backbone",
                            help="The feature extractor. Pretrained ones are fine-tuned or used frozen; "
                                 "`scratch` is a small CNN trained from scratch for tiny grey images.")
    st.caption(BACKBONES[backbone].description + (" · default for this dataset" if backbone == default_backbone else ""))
with m2:
    suggested_k = (dataset.n_classes if dataset is not None and dataset.labels is not None else None)
    if st.session_state.get("d_k_for") != (name, root) and suggested_k:
        st.session_state["d_k"] = int(min(max(2, suggested_k), 1000))
        st.session_state["d_k_for"] = (name, root)
    init("d_k", int(draft.train.get("n_clusters", defaults.n_clusters)), 2, 1000)
    k = st.number_input("Number of clusters K", min_value=2, max_value=1000, step=1, key="d_k",
                        help="How many groups to find (one PEDCC point each). With labels, the number of "
                             "classes is a good start." + (f" This data has {suggested_k} classes." if suggested_k else ""))
with m3:
    init("d_epochs", int(draft.train.get("epochs", defaults.epochs)), 1, 5000)
    epochs = st.number_input("Epochs", min_value=1, max_value=5000, step=5, key="d_epochs",
                             help=f"Passes over the data (default {defaults.epochs}).")
with m4:
    init("d_mode", draft.mode if draft.mode in MODES else "auto")
    mode = st.selectbox("Training mode", list(MODES), key="d_mode", format_func=lambda m: MODES[m].split(" — ")[0],
                        help="; ".join(MODES.values()))

with st.expander("Advanced training options"):
    a1, a2, a3, a4 = st.columns(4)
    init("d_batch", int(draft.train.get("batch_size", defaults.batch_size)), 2, 8192)
    batch = a1.number_input("Batch size", min_value=2, max_value=8192, step=32, key="d_batch")
    init("d_lr", float(draft.train.get("lr", defaults.lr)), 1e-6, 1.0)
    lr = a2.number_input("Learning rate", min_value=1e-6, max_value=1.0, step=1e-4, format="%.5f", key="d_lr")
    init("d_latent", int(draft.train.get("latent_dim", defaults.latent_dim)), 2, 4096)
    latent = a3.number_input("Latent dimension d", min_value=2, max_value=4096, step=10, key="d_latent",
                             help="Dimension of the unit sphere holding the PEDCC points (paper: 100).")
    init("d_hidden", int(draft.train.get("hidden_dim", defaults.hidden_dim)), 1, 8192)
    hidden = a4.number_input("Head hidden size", min_value=1, max_value=8192, step=64, key="d_hidden")
    st.markdown("**Loss weights**")
    w1, w2, w3, w4 = st.columns(4)
    weights = {}
    for col, term, label, help_text in (
            (w1, "w_mmd", "MMD to PEDCC", "Keeps every cluster in use (too low: clusters go empty)."),
            (w2, "w_aug", "Augmentation consistency", "An image and its augmented view should agree."),
            (w3, "w_knn", "Nearest neighbour", "Pulls an image toward one of its nearest neighbours."),
            (w4, "w_cos", "Min. cosine to PEDCC", "Pulls each latent onto its nearest PEDCC point.")):
        init(f"d_{term}", float(draft.train.get(term, getattr(defaults, term))), 0.0, 100.0)
        weights[term] = col.number_input(label, min_value=0.0, max_value=100.0, step=0.5, key=f"d_{term}",
                                         help=help_text)
    o1, o2, o3, o4, o5 = st.columns(5)
    init("d_neighbors", int(draft.train.get("n_neighbors", defaults.n_neighbors)), 1, 500)
    neighbors = o1.number_input("Neighbours k", min_value=1, max_value=500, step=1, key="d_neighbors",
                                help="k of the neighbour loss (SCAN: 20 on 10-class sets).")
    init("d_refresh", int(draft.train.get("refresh_every", defaults.refresh_every)), 0, 1000)
    refresh = o2.number_input("Re-mine neighbours every R epochs", min_value=0, max_value=1000, key="d_refresh",
                              help="0: keep the backbone's neighbours throughout.")
    init("d_views", int(draft.n_views), 0, 32)
    views = o3.number_input("Augmented views", min_value=0, max_value=32, key="d_views",
                            help="Augmented copies per image: head mode caches their features and "
                                 "trains on them; both modes can predict from the mean over them.")
    init("d_size", int(draft.image_size or 0), 0, 1024)
    image_size = o4.number_input("Image size (0 = default)", min_value=0, max_value=1024, step=16, key="d_size",
                                 help="Input side of the backbone. 0: the dataset's choice for pretrained "
                                      "backbones (96 px for grey images of 32 px or less, such as "
                                      "Fashion-MNIST), else the backbone's own.")
    init("d_heads", int(draft.train.get("n_heads", defaults.n_heads)), 1, 64)
    heads = o5.number_input("Heads", min_value=1, max_value=64, key="d_heads",
                            help="Projection heads trained together; the lowest-loss one predicts. Guards "
                                 "against a poor start. In head mode only that one trains on after "
                                 f"{defaults.select_head_after} epochs, so it costs little; in finetune "
                                 "mode all of them train to the end.")
    p1, p2, p3, p4 = st.columns(4)
    sources = neighbour_sources()
    init("d_neighbours_from", draft.neighbours_from if draft.neighbours_from in sources else "auto")
    neighbours_from = p4.selectbox("Neighbours mined in", sources, key="d_neighbours_from",
                                   help="auto: a pretrained backbone's own features; for an encoder trained "
                                        "from scratch, the dataset's choice (digits: mobilenet_v2_mid "
                                        "features, purer neighbours than the pixels), else the pixels.")
    init("d_augment", draft.augment if draft.augment in AUGMENTS else "auto")
    augment = p1.selectbox("Augmentation", AUGMENTS, key="d_augment",
                           help="auto: small rotations/shifts for small grey images, SimCLR-style otherwise.")
    init("d_pretrained", bool(draft.pretrained))
    pretrained = p2.checkbox("Use pretrained weights", key="d_pretrained",
                             help="Off: the backbone starts from random weights (then use finetune).")
    init("d_average_views", bool(draft.average_views))
    average_views = p3.checkbox("Predict from the mean over the views", key="d_average_views",
                                help="An image's latent is the mean over it and its augmented views "
                                     "(about +0.5 ACC points on Fashion-MNIST and on digits).")

train = {**draft.train, "n_clusters": int(k), "epochs": int(epochs), "batch_size": int(batch), "lr": float(lr),
         "latent_dim": int(latent), "hidden_dim": int(hidden), "n_neighbors": int(neighbors),
         "refresh_every": int(refresh), "n_heads": int(heads), "seed": int(seed),
         **{t: float(w) for t, w in weights.items()}}
draft = appstate.Draft(dataset=name, data_root=root, limit=int(limit) or None, backbone=backbone, mode=mode,
                       pretrained=bool(pretrained), image_size=int(image_size) or None, augment=augment,
                       n_views=int(views), average_views=bool(average_views), neighbours_from=neighbours_from,
                       download=bool(download),
                       train=train)
st.session_state["draft"] = draft.to_dict()

problems = appstate.problems(draft, n_images)
if open_error and not download:
    problems = [open_error] + problems
st.divider()
if problems:
    for problem in problems:
        st.error(problem, icon=":material/error:")
    st.button("Start training", type="primary", disabled=True, key="d_start_disabled")
else:
    st.success(f"Ready: {draft.dataset}" + (f" ({n_images:,} images)" if n_images else "")
               + f", backbone {backbone}, K = {k}, {epochs} epochs.", icon=":material/check_circle:")
    if st.button("Start training →", type="primary", key="d_start",
                 help="Starts a background job and opens the Train page to watch it."):
        common.start_run(draft)
