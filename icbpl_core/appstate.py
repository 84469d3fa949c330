"""What the app needs to know besides the runs: where runs live, the draft run a user is
setting up (and what is wrong with it), and the command line that reproduces a run.

No Streamlit here: pages turn these values into widgets and messages.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path

from .config import TrainConfig

RUNS_DIR_ENV = "ICBPL_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
DEFAULT_DATASET = "digits"
# Datasets that are a user's own files: chosen through "folder" / "upload", not the registry list.
OWN_DATA = ("folder", "zip")


def runs_dir() -> Path:
    """Where run folders go: $ICBPL_RUNS_DIR, else ./runs (relative to the working directory)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR).expanduser().absolute()


def uploads_dir() -> Path:
    """Uploaded zip archives are kept beside the runs that use them."""
    return runs_dir() / ".uploads"


def train_defaults(dataset: str) -> dict:
    """TrainConfig's defaults with the dataset's own recipe on top (what `train` would use)."""
    try:
        return TrainConfig.for_dataset(dataset).to_dict()
    except (AttributeError, ValueError, KeyError):     # an unknown dataset: the plain defaults
        return TrainConfig().to_dict()


@dataclass
class Draft:
    """A run being set up on the Data & model page (all plain values, kept in session state)."""

    dataset: str = DEFAULT_DATASET
    data_root: str | None = None
    limit: int | None = None
    backbone: str | None = None         # None: the dataset's default
    mode: str = "auto"
    pretrained: bool = True
    image_size: int | None = None
    augment: str = "auto"
    n_views: int = 4
    average_views: bool = True
    neighbours_from: str = "auto"
    download: bool = False
    train: dict = field(default_factory=lambda: train_defaults(DEFAULT_DATASET))

    @classmethod
    def from_dict(cls, data: dict | None) -> "Draft":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        draft = cls(**{k: v for k, v in data.items() if k in known})
        draft.train = {**train_defaults(draft.dataset), **(data.get("train") or {})}
        return draft

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def spec(self):
        """The RunSpec this draft asks for (not yet resolved or checked)."""
        from .pipeline import RunSpec

        return RunSpec(dataset=self.dataset, data_root=self.data_root or None, download=self.download,
                       limit=self.limit or None, backbone=self.backbone or None, pretrained=self.pretrained,
                       mode=self.mode, image_size=self.image_size or None, augment=self.augment,
                       n_views=int(self.n_views), average_views=bool(self.average_views),
                       neighbours_from=self.neighbours_from or "auto", train=TrainConfig.from_dict(self.train))


def problems(draft: Draft, n_images: int | None = None) -> list[str]:
    """Everything that stops this draft from training, in plain words (empty: good to go).

    n_images: the size of the (limited) dataset when it could be opened, to check the
    number of clusters against it."""
    from .backbones import BACKBONES
    from .datasets import DatasetError, get_entry
    from .pipeline import SCRATCH_BACKBONES, ConfigError

    out: list[str] = []
    try:
        entry = get_entry(draft.dataset)
    except DatasetError as exc:
        return [str(exc)]
    if entry.needs_root and not draft.data_root:
        out.append("Choose a folder of images or upload a zip archive first.")
    try:
        spec = draft.spec().resolved()
    except (ConfigError, ValueError) as exc:
        return out + [str(exc)]
    try:
        spec.train.validate()
    except ValueError as exc:
        out.append(_capital(str(exc)) + ".")
    if spec.backbone not in BACKBONES:
        out.append(f"Unknown backbone {spec.backbone!r}.")
    elif spec.mode == "head" and (spec.backbone in SCRATCH_BACKBONES or not spec.pretrained
                                  or not BACKBONES[spec.backbone].has_pretrained):
        out.append(f"Head-only training needs a pretrained backbone, and {spec.backbone} "
                   + ("is set to random weights" if not spec.pretrained else "has no pretrained weights")
                   + ": choose mode 'finetune' (or 'auto') or another backbone.")
    if draft.limit is not None and draft.limit < 0:
        out.append("The image limit must be 0 (all images) or a positive number.")
    if n_images is not None:
        if n_images < 2:
            out.append(f"The dataset has {n_images} image(s); clustering needs at least 2.")
        elif spec.train.n_clusters > n_images:
            out.append(f"{spec.train.n_clusters} clusters is more than the {n_images} images: "
                       f"choose {n_images} clusters or fewer.")
    if spec.n_views < 0:
        out.append("The number of augmented views must be 0 or more.")
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- the command line that reproduces a run ---------------------------------------------------

def train_command(config: dict, runs_dir: str | Path = DEFAULT_RUNS_DIR, threads: int | None = None) -> str:
    """`python -m icbpl_core train ...` with every setting of a run's config.json; with `threads`
    (metrics.json's), prefixed by OMP_NUM_THREADS, since the thread count changes float sums
    and so the last digits of a result."""
    d_train = TrainConfig()
    train = {**d_train.to_dict(), **(config.get("train") or {})}
    args = ["python", "-m", "icbpl_core", "train", "--dataset", str(config.get("dataset", DEFAULT_DATASET))]
    if config.get("data_root"):
        args += ["--data-root", str(config["data_root"])]
    if config.get("download"):
        args.append("--download")
    if config.get("limit"):
        args += ["--limit", str(config["limit"])]
    if config.get("backbone"):
        args += ["--backbone", str(config["backbone"])]
    if config.get("pretrained") is False:
        args.append("--no-pretrained")
    if config.get("weights"):
        args += ["--weights", str(config["weights"])]
    if config.get("mode"):
        args += ["--mode", str(config["mode"])]
    if config.get("image_size"):
        args += ["--image-size", str(config["image_size"])]
    if config.get("augment"):
        args += ["--augment", str(config["augment"])]
    if config.get("n_views") is not None:
        args += ["--views", str(config["n_views"])]
    if config.get("average_views") is False:
        args.append("--no-average-views")
    if config.get("precision"):
        args += ["--precision", str(config["precision"])]
    if config.get("neighbours_from"):
        args += ["--neighbours-from", str(config["neighbours_from"])]
    for key, flag in (("n_clusters", "--clusters"), ("epochs", "--epochs"), ("batch_size", "--batch-size"),
                      ("lr", "--lr"), ("latent_dim", "--latent-dim"), ("hidden_dim", "--hidden-dim"),
                      ("w_mmd", "--w-mmd"), ("w_aug", "--w-aug"), ("w_knn", "--w-knn"), ("w_cos", "--w-cos"),
                      ("n_neighbors", "--neighbors"), ("refresh_every", "--refresh-every"), ("n_heads", "--heads"),
                      ("select_head_after", "--select-head-after"), ("seed", "--seed")):
        if key in train:
            args += [flag, _num(train[key])]
    args += ["--runs-dir", str(runs_dir)]
    if threads:
        args.insert(0, f"OMP_NUM_THREADS={int(threads)}")
    return " ".join(shlex.quote(a) for a in args)


def _num(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)
