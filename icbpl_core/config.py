"""What a run is: TrainConfig (the training hyper-parameters) inside RunSpec (data, backbone,
views and training), both built from the parameter table (params.py), so their fields,
defaults and checks are the table's. config.json holds RunSpec.to_dict().

`RunSpec.resolved()` fills in what "not given" and "auto" mean for this dataset and
backbone, and refuses combinations that cannot work, before anything is written.
"""
from __future__ import annotations

from dataclasses import asdict, field, fields, make_dataclass

from . import params
from .backbones import BACKBONES, from_scratch
from .datasets import get_entry
from .errors import ConfigError, ParamError

__all__ = ["TrainConfig", "RunSpec", "ConfigError", "ParamError"]


def _fields(level: str) -> list:
    return [(p.name, p.type if not p.optional else p.type | None, field(default=p.default))
            for p in params.at_level(level)]


class TrainConfig(make_dataclass("TrainFields", _fields("train"))):
    """Hyper-parameters of ICBPL training: every "train" entry of params.PARAMS, with its default
    (the measured ones, docs/BENCHMARKS.md#levers-that-helped)."""

    @property
    def loss_weights(self):
        from .method.losses import LossWeights
        return LossWeights(self.w_mmd, self.w_aug, self.w_knn, self.w_cos)

    def validate(self) -> None:
        params.check_all(self.to_dict(), "train")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = params.renamed(data, "train")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def for_dataset(cls, dataset: str, **given) -> "TrainConfig":
        """The table's defaults, then the dataset's recipe, then `given` (None = not given)."""
        recipe = dict(get_entry(dataset).train_defaults)
        return cls(**{**recipe, **{k: v for k, v in given.items() if v is not None}})


class RunSpec(make_dataclass("SpecFields", _fields("spec") + [
        ("train", TrainConfig, field(default_factory=TrainConfig))])):
    """Everything a run depends on: every "spec" entry of params.PARAMS, and `train`."""

    def validate(self) -> None:
        params.check_all({f.name: getattr(self, f.name) for f in fields(self)}, "spec")
        self.train.validate()

    def resolved(self) -> "RunSpec":
        """A checked copy with defaults filled in (backbone, mode, input size, precision, neighbour
        source), as stored in config.json; ConfigError when the combination cannot work."""
        spec = RunSpec.from_dict(self.to_dict())
        spec.validate()
        entry = get_entry(spec.dataset)
        if spec.recipe is None:
            from .recipes import default_recipe
            spec.recipe = default_recipe(spec.dataset)
        if spec.backbone is None:
            spec.backbone = entry.default_backbone
        spec._check_weights()
        pretrained = spec.pretrained and (bool(spec.weights) or spec.backbone not in BACKBONES
                                          or BACKBONES[spec.backbone].has_pretrained)
        if spec.mode == "auto":
            spec.mode = "head" if pretrained else "finetune"
        elif spec.mode == "head" and not pretrained:
            raise ConfigError(f"head-only training needs a pretrained backbone, and {spec.backbone} "
                              + ("is set to random weights" if not spec.pretrained else "has no pretrained weights")
                              + "; train on the images (mode finetune) or choose another backbone", setting="mode")
        from .features.extract import resolve_precision
        from .training.device import resolve_device
        device = resolve_device(spec.train.device)     # a device this machine lacks is refused now
        spec.precision = resolve_precision(spec.precision, device)
        if spec.image_size is None and pretrained:
            spec.image_size = entry.image_size
        spec.neighbours_from = _neighbour_source(spec.neighbours_from, entry.scratch_neighbours, pretrained)
        return spec

    def _check_weights(self) -> None:
        if self.weights and from_scratch(self.backbone):
            raise ConfigError(f"{self.backbone} is trained from scratch and takes no weights file; choose a "
                              "pretrained backbone to load it into", setting="weights")
        entry = BACKBONES.get(self.backbone)
        if entry is not None and entry.weights == "file" and self.pretrained and not self.weights:
            raise ConfigError(f"{self.backbone} has no weights of its own: give it a weights file (e.g. a SCAN "
                              "or SimCLR checkpoint), or turn pretrained weights off", setting="weights")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        """A spec from config.json, older ones included (they resolve to what they were trained with)."""
        data = params.renamed({"precision": "fp32", **data}, "spec")   # before the option: fp32
        if "neighbours_from" not in data and data.get("backbone"):      # resolved before the option existed
            data["neighbours_from"] = "pixels" if from_scratch(data["backbone"]) else "backbone"
        known = {f.name for f in fields(cls)} - {"train"}
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.train = TrainConfig.from_dict(data.get("train") or {})
        return spec


def _neighbour_source(source: str, scratch_neighbours: str, pretrained: bool) -> str:
    """Resolve neighbours_from. auto: a pretrained encoder's own features; for a scratch encoder,
    the dataset's recipe (digits: mobilenet_v2_mid features, purer neighbours than the pixels)."""
    if source == "auto":
        return "backbone" if pretrained else scratch_neighbours
    if source == "backbone" and not pretrained:
        raise ConfigError("a backbone without pretrained weights has no features to mine neighbours in; "
                          "mine them in the pixels or in a pretrained backbone's features instead",
                          setting="neighbours_from")
    return source
