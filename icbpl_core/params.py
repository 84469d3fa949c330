"""Every run parameter, declared once.

Each entry gives a parameter's name (the same in config.json, the code, the estimator, the
command line's --flag and the app's form), type, default, range or choices, help, the
training modes it applies to and whether it is part of the feature-cache key. Everything
else is derived from this table:

  config.TrainConfig / config.RunSpec   their fields and checks (level "train" / "spec")
  estimator.ICBPL                       its parameters and their checks (level "train", "estimator")
  cli                                   the train command's options
  icbpl_app.form                        the Data & model page's fields

Adding a parameter is one entry here plus the code that uses it. This module imports no
torch: `icbpl --help` and argument errors answer from it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import ParamError

MODES = ("head", "finetune")       # what a parameter can apply to (the mode parameter's concrete values)
SURFACES_BY_LEVEL = {"spec": ("cli", "form"), "train": ("cli", "estimator", "form"), "estimator": ("estimator",),
                     "launch": ("cli", "form")}


@dataclass(frozen=True)
class Param:
    name: str
    type: type                          # int, float, str or bool
    default: Any
    help: str
    level: str                          # "spec": a RunSpec field; "train": a TrainConfig field; "estimator": ICBPL's
                                        # own; "launch": how the run is started (processes), not part of it
    label: str = ""                     # the app's field label (default: the name)
    group: str = "training"             # data, model or training: CLI option group and form section
    low: float | None = None            # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None
    open_prefix: str | None = None      # besides the choices, any value with this prefix (timm:<model>)
    optional: bool = False              # None allowed: not given, the dataset's or backbone's choice
    modes: tuple[str, ...] = MODES      # the training modes it affects
    cache_key: str | None = None        # its key in the feature-cache key (the resolved value is hashed)
    surfaces: tuple[str, ...] | None = None   # cli, estimator, form (default: by level)
    aliases: tuple[str, ...] = ()       # older command-line flags, still accepted
    old_names: tuple[str, ...] = ()     # older config.json keys, read as this one
    estimator_name: str | None = None   # the scikit-learn name where convention differs (seed: random_state)
    advanced: bool = True               # in the form's "Advanced" section
    step: float | None = None           # the form's step
    metavar: str | None = None          # the command line's placeholder (default: by type)
    runs_anywhere: bool = False         # where or how it runs, not what it computes: a run resumes with another

    @property
    def flag(self) -> str:
        if self.type is bool and self.default is True:
            return "--no-" + self.name.replace("_", "-")
        return "--" + self.name.replace("_", "-")

    @property
    def where(self) -> tuple[str, ...]:
        return self.surfaces if self.surfaces is not None else SURFACES_BY_LEVEL[self.level]

    def options(self) -> list[str]:
        """The choices, resolved (registries are read when asked, not at import)."""
        if self.choices is None:
            return []
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe_range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {_num(self.low)} and {_num(self.high)}"
        if self.low is not None:
            return f"at least {_num(self.low)}"
        return ""

    def check(self, value: Any) -> Any:
        """`value` as this parameter's type, or ParamError saying what is wrong."""
        if value is None:
            if self.optional:
                return None
            raise ParamError(self.name, "must be given")
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParamError(self.name, f"must be true or false, got {value!r}")
            return value
        if self.type in (int, float):
            return self._check_number(value)
        if not isinstance(value, str):
            raise ParamError(self.name, f"must be text, got {value!r}")
        choices = self.options()
        if choices and value not in choices and not (self.open_prefix and value.startswith(self.open_prefix)
                                                     and len(value) > len(self.open_prefix)):
            extra = f" or {self.open_prefix}<name>" if self.open_prefix else ""
            raise ParamError(self.name, f"must be one of {', '.join(choices)}{extra}; got {value!r}")
        return value

    def _check_number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParamError(self.name, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ParamError(self.name, f"must be a finite number, got {value!r}")
        if self.type is int:
            if not isinstance(value, numbers.Integral) and not float(value).is_integer():
                raise ParamError(self.name, f"must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ParamError(self.name, f"must be {self.describe_range()}, got {_num(value)}")
        return value


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def _recipes() -> dict:
    from .recipes import RECIPES
    return RECIPES


def _dataset_names() -> list[str]:
    from .datasets import dataset_names
    return dataset_names()


def _backbone_names() -> list[str]:
    from .backbones import backbone_names
    return backbone_names()


def _neighbour_sources() -> list[str]:
    from .backbones import pretrained_names
    return ["auto", "backbone", "pixels", *pretrained_names()]


MAX_SEED = 2 ** 31 - 1
RETRAIN = ("cli", "estimator")      # set where a retrain is started (its own tab in the app), not on the Data page

PARAMS: tuple[Param, ...] = (
    # -- data --------------------------------------------------------------------------------------
    Param("dataset", str, "digits", "the dataset's registry name (digits ships with scikit-learn)", "spec",
          label="Dataset", group="data", choices=_dataset_names, cache_key="dataset", advanced=False),
    Param("data_root", str, None, "folder (or zip) holding the dataset's files; named sets default to ./data",
          "spec", label="Data folder", group="data", optional=True, cache_key="root", advanced=False),
    Param("download", bool, False, "download a missing public dataset (needs internet)", "spec",
          label="Download it when training starts", group="data", advanced=False),
    Param("limit", int, None, "a seeded, class-balanced subset of at most this many images", "spec",
          label="Use at most this many images", group="data", low=1, optional=True, advanced=False, step=100),
    Param("recipe", str, None, "a named preset of several settings, under the ones given: auto (chosen from "
          "your images before training, without labels), dataset (its measured recipe) or paper (self-supervised "
          "ResNet-50, layer3+layer4 fine-tuned at 224 px, batch 512); not given: auto for a folder or zip, else "
          "dataset", "spec", label="Recipe", group="data", choices=lambda: list(_recipes()), optional=True,
          advanced=False),
    # -- model -------------------------------------------------------------------------------------
    Param("backbone", str, None, "the feature extractor (default: the dataset's)", "spec", label="Backbone",
          group="model", choices=_backbone_names, open_prefix="timm:", optional=True, cache_key="backbone",
          advanced=False),
    Param("pretrained", bool, True, "start the backbone from its pretrained weights, not random ones",
          "spec", label="Use pretrained weights", group="model"),
    Param("weights", str, None, "a local weights file for the backbone (MoCo, SimCLR, DINO, ... layouts)", "spec",
          label="Weights file", group="model", optional=True, cache_key="weights", surfaces=("cli",),
          metavar="FILE"),
    Param("mode", str, "auto", "head: train the projection head on cached backbone features; finetune: train "
          "on the images, the backbone's last blocks too; auto: head with a pretrained backbone, else finetune",
          "spec", label="Training mode", group="model", choices=("auto", "head", "finetune"), advanced=False),
    Param("image_size", int, None, "backbone input side in pixels (default: the dataset's; 96 for grey images of "
          "32 px or less; else the backbone's own)", "spec", label="Image size", group="model", low=8, high=1024,
          optional=True, cache_key="size", step=16),
    Param("augment", str, "auto", "augmentation of the views (auto: grey for small grey images, simclr "
          "otherwise)", "spec", label="Augmentation", group="model", choices=("auto", "grey", "simclr", "none"),
          cache_key="augment"),
    Param("n_views", int, 4, "augmented views per image: cached features in head mode, and the copies the "
          "prediction averages over in both modes", "spec", label="Augmented views", group="model", low=0,
          high=32, aliases=("--views",)),
    Param("average_views", bool, True, "predict from the mean latent over the image and its views (off: the "
          "image's own latent)", "spec", label="Predict from the mean over the views", group="model"),
    Param("precision", str, "auto", "feature extraction arithmetic; auto: bf16 on GPUs and CPUs with bf16 instructions, "
          "else fp32", "spec", label="Extraction precision", group="model", choices=("auto", "fp32", "bf16"),
          cache_key="precision"),
    Param("neighbours_from", str, "auto", "features the kNN loss's neighbours are mined in: backbone (a "
          "pretrained encoder's own), pixels, or a pretrained backbone's name; auto: backbone, or for a scratch "
          "encoder the dataset's choice", "spec", label="Neighbours mined in", group="model",
          choices=_neighbour_sources, open_prefix="timm:"),
    # -- training ----------------------------------------------------------------------------------
    Param("n_clusters", int, 10, "number of clusters K (one PEDCC point each)", "train",
          label="Number of clusters K", low=2, high=1000, aliases=("--clusters",), advanced=False),
    Param("epochs", int, 60, "passes over the data", "train", label="Epochs", low=1, high=5000, advanced=False,
          step=5),
    Param("batch_size", int, 256, "images per step", "train", label="Batch size", low=2, high=8192, step=32),
    Param("lr", float, 1e-3, "Adam learning rate", "train", label="Learning rate", low=1e-6, high=1.0, step=1e-4),
    Param("weight_decay", float, 0.0, "Adam weight decay", "train", label="Weight decay", low=0.0, high=1.0,
          step=1e-4),
    Param("latent_dim", int, 100, "dimension d of the unit sphere holding the PEDCC points (paper: 100)", "train",
          label="Latent dimension d", low=2, high=4096, step=10),
    Param("hidden_dim", int, 512, "hidden width of the projection head", "train", label="Head hidden size",
          low=1, high=8192, step=64),
    Param("w_mmd", float, 20.0, "weight of the MMD-to-PEDCC loss (keeps every cluster in use)", "train",
          label="MMD to PEDCC", low=0.0, high=1000.0, step=0.5),
    Param("w_aug", float, 1.0, "weight of the augmentation-consistency loss", "train",
          label="Augmentation consistency", low=0.0, high=1000.0, step=0.5),
    Param("w_knn", float, 5.0, "weight of the nearest-neighbour loss", "train", label="Nearest neighbour",
          low=0.0, high=1000.0, step=0.5),
    Param("w_cos", float, 1.0, "weight of the minimum-cosine-to-PEDCC loss", "train", label="Min. cosine to PEDCC",
          low=0.0, high=1000.0, step=0.5),
    Param("guide", str, "anchor", "how a retrained run uses a person's corrections (icbpl retrain): anchor "
          "(decided images pulled to their cluster's PEDCC point), must-link (their neighbours are the other "
          "decided images of their cluster) or both; no effect without corrections", "train",
          label="Corrections guide by", choices=("anchor", "must-link", "both"), surfaces=RETRAIN),
    Param("w_guide", float, 1.0, "weight of the anchor loss on the images a person decided (icbpl retrain)",
          "train", label="Corrections' anchor weight", low=0.0, high=1000.0, step=0.5, surfaces=RETRAIN),
    Param("warm_start", bool, False, "icbpl retrain: start from the curated run's model rather than from scratch",
          "train", label="Start from the curated run's model", surfaces=("cli",)),
    Param("n_neighbours", int, 20, "k of the neighbour loss (SCAN: 20 on 10-class sets)", "train",
          label="Neighbours k", low=1, high=500, aliases=("--neighbors", "--n-neighbors"), old_names=("n_neighbors",)),
    Param("refresh_every", int, 0, "re-mine neighbours in latent space every R epochs (0: never)", "train",
          label="Re-mine neighbours every R epochs", low=0, high=1000),
    Param("n_heads", int, 1, "projection heads trained together; the lowest-loss one predicts", "train",
          label="Heads", low=1, high=64, aliases=("--heads",)),
    Param("select_head_after", int, 10, "with several independent heads (head mode), only the lowest-loss one "
          "trains on after this many epochs (0: never)", "train", label="Keep the best head after epoch",
          low=0, high=5000, modes=("head",)),
    Param("device", str, "auto", "where every stage runs: cpu, cuda, cuda:N or mps; auto: CUDA, then MPS, then "
          "the CPU (a run resumes on any device)", "train", label="Device", group="training",
          choices=("auto", "cpu", "cuda", "mps"), open_prefix="cuda:", runs_anywhere=True),
    Param("knn_backend", str, "auto", "nearest-neighbour search: exact (blocked matrix products), faiss (faiss "
          "index, approximate above a million points); auto: faiss when installed and the set is large",
          "train", label="Neighbour search", choices=("auto", "exact", "faiss"), runs_anywhere=True),
    Param("seed", int, 0, "fixes the subset, the PEDCC points and the training randomness", "train",
          label="Seed", low=0, high=MAX_SEED, estimator_name="random_state", advanced=False),
    # -- how the run is started ---------------------------------------------------------------------
    Param("num_workers", int, None, "DataLoader worker processes feeding image training (default: none on the CPU, up to 8 per GPU "
          "process; 0: in the training process)", "spec", label="Data loader workers", group="training",
          low=0, high=64, optional=True, runs_anywhere=True),
    Param("gpus", int, 1, "processes to train with, one per GPU (or per CPU process with gloo): above 1 the "
          "run is launched under torchrun on this machine", "launch", label="GPUs (processes)",
          group="training", low=1, high=64),
    # -- the estimator's own -----------------------------------------------------------------------
    Param("view_noise", float, 0.1, "without `views`, the augmented view is the feature plus Gaussian noise of "
          "this many standard deviations", "estimator", low=0.0, high=10.0, modes=("head",)),
    Param("verbose", bool, False, "print a line per epoch", "estimator"),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def param(name: str) -> Param:
    return BY_NAME[name]


def at_level(level: str) -> list[Param]:
    return [p for p in PARAMS if p.level == level]


def on(surface: str) -> list[Param]:
    return [p for p in PARAMS if surface in p.where]


def defaults(level: str) -> dict[str, Any]:
    return {p.name: p.default for p in at_level(level)}


def renamed(data: dict, level: str) -> dict:
    """`data` (a config.json section) with older keys read as today's names."""
    out = dict(data)
    for p in at_level(level):
        for old in p.old_names:
            if old in out and p.name not in out:
                out[p.name] = out.pop(old)
    return out


def check_all(values: dict, level: str) -> dict:
    """Every parameter of `level` in `values` checked (ParamError on the first bad one)."""
    return {p.name: p.check(values[p.name]) for p in at_level(level) if p.name in values}
