"""Backbone registry: every backbone is looked up by name; adding one is one `register` call.

    backbone = create_backbone("mobilenet_v2", pretrained=True)
    backbone = create_backbone("timm:convnext_tiny.fb_in1k")   # any timm model, by its timm name
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Backbone


class BackboneError(ValueError):
    """A backbone that cannot be built; the message says what is missing and what to do."""


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    build: Callable[..., Backbone]  # build(pretrained: bool, in_channels: int, weights: str | None)
    description: str
    has_pretrained: bool


BACKBONES: dict[str, BackboneEntry] = {}


def register(name: str, description: str, has_pretrained: bool):
    def wrap(build: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = BackboneEntry(name, build, description, has_pretrained)
        return build
    return wrap


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(name: str, pretrained: bool = True, in_channels: int = 3,
                    weights: str | None = None) -> Backbone:
    """Build a registered backbone, or any timm model as 'timm:<model name>';
    `weights` is a local file that overrides the default weights."""
    if name.startswith("timm:"):
        from .timm_models import build_timm_name

        backbone = build_timm_name(name, pretrained=pretrained, in_channels=in_channels, weights=weights)
    elif name in BACKBONES:
        entry = BACKBONES[name]
        backbone = entry.build(pretrained=pretrained and entry.has_pretrained, in_channels=in_channels,
                               weights=weights)
    else:
        raise BackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}, "
                            f"or timm:<any timm model name>")
    backbone.name = name
    backbone.eval()
    return backbone


from . import scratch, timm_models, torchvision_models  # noqa: E402,F401  (each registers its backbones)

__all__ = ["Backbone", "BackboneError", "BACKBONES", "register", "create_backbone", "backbone_names"]
