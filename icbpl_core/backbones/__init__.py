"""Backbone registry: every backbone is looked up by name; adding one is one entry in
catalog.py (SCRATCH, TORCHVISION or TIMM).

    backbone = create_backbone("mobilenet_v2", pretrained=True)
    backbone = create_backbone("timm:convnext_tiny.fb_in1k")   # any timm model, by its timm name

Names, descriptions and weight kinds are read from the catalog without importing torch;
the builder's module is imported when a backbone is built.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..errors import BackboneError
from . import catalog

TIMM_PREFIX = "timm:"
_BUILDERS = {"scratch": "scratch:build_scratch", "torchvision": "torchvision_models:build_torchvision",
             "timm": "timm_models:build_alias"}


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    description: str
    weights: str                        # scratch, bundled, download or file (catalog.py's docstring)
    family: str                         # scratch, torchvision, timm, or custom (a registered function)
    build: Callable | None = None       # custom entries: build(pretrained, in_channels, weights) -> Backbone

    @property
    def has_pretrained(self) -> bool:
        """Pretrained weights come with the name (bundled or downloadable), no file needed."""
        return self.weights in ("bundled", "download")

    @property
    def from_scratch(self) -> bool:
        return self.weights == "scratch"


BACKBONES: dict[str, BackboneEntry] = {
    **{name: BackboneEntry(name, m.description, m.weights, "scratch") for name, m in catalog.SCRATCH.items()},
    **{name: BackboneEntry(name, m.description, m.weights, "torchvision") for name, m in catalog.TORCHVISION.items()},
    **{name: BackboneEntry(name, f"{m.description}; timm {m.model}", m.weights, "timm")
       for name, m in catalog.TIMM.items()},
}


def register(name: str, description: str, build: Callable, weights: str = "download") -> BackboneEntry:
    """Add a backbone built by `build(pretrained, in_channels, weights)` (a plug-in, a test's fixture)."""
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is registered twice")
    BACKBONES[name] = BackboneEntry(name, description, weights, "custom", build)
    return BACKBONES[name]


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def pretrained_names() -> list[str]:
    """Backbones whose pretrained weights come with their name (neighbour sources, for one)."""
    return sorted(n for n, e in BACKBONES.items() if e.has_pretrained)


def get_entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}, "
                            f"or {TIMM_PREFIX}<any timm model name>", setting="backbone")
    return BACKBONES[name]


def from_scratch(name: str) -> bool:
    """Whether `name` is an encoder trained from scratch (timm:<name> models never are)."""
    return name in BACKBONES and BACKBONES[name].from_scratch


def create_backbone(name: str, pretrained: bool = True, in_channels: int = 3, weights: str | None = None):
    """Build a registered backbone, or any timm model as 'timm:<model name>';
    `weights` is a local file that overrides the default weights."""
    if name.startswith(TIMM_PREFIX):
        from .timm_models import build_timm_name

        backbone = build_timm_name(name, pretrained=pretrained, in_channels=in_channels, weights=weights)
    else:
        entry = get_entry(name)
        if entry.weights == "file" and pretrained and not weights:
            raise BackboneError(f"{name} has no downloadable weights: it needs a checkpoint file, e.g. a SCAN "
                                "or SimCLR one", setting="weights")
        pretrained = pretrained and entry.has_pretrained
        if entry.build is not None:
            backbone = entry.build(pretrained=pretrained, in_channels=in_channels, weights=weights)
        else:
            module, _, function = _BUILDERS[entry.family].partition(":")
            build = getattr(importlib.import_module(f"{__name__}.{module}"), function)
            backbone = build(name, pretrained=pretrained, in_channels=in_channels, weights=weights)
    backbone.name = name
    backbone.eval()
    return backbone


__all__ = ["BackboneEntry", "BackboneError", "BACKBONES", "TIMM_PREFIX", "register", "create_backbone",
           "backbone_names", "pretrained_names", "get_entry", "from_scratch"]
