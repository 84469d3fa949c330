"""torchvision backbones with ImageNet weights, built from their catalog entries (catalog.py).

Weights are looked up in the torch hub cache, then in a package that bundles them, and are
downloaded into the hub cache only when downloads are allowed (weights.py). `weights=FILE`
loads a local checkpoint instead, in any of the self-supervised layouts checkpoints.py knows.

The feature is the pooled pre-classifier feature: the classification layer is replaced
by an identity, everything before it (pooling, a ConvNeXt's final LayerNorm, a ViT's
final norm and class token) is kept. A model with a `tap` instead stops after a middle
block of its `features` and average-pools that map to a small grid, flattened: where
in the image each part sits survives, which global pooling discards.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import BackboneError
from .base import Backbone
from .catalog import TORCHVISION, TorchvisionModel
from .checkpoints import load_checkpoint
from .weights import bundled_file, find_weights, verify_hash_prefix


class TrunkBackbone(Backbone):
    """Wraps a network whose forward already returns pooled features (its classifier removed)."""

    def __init__(self, trunk: nn.Module, feature_dim: int, trainable_blocks: tuple[str, ...],
                 input_size: int | None = 224, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.input_size = input_size
        self.trainable_blocks = tuple(f"trunk.{b}" if b else "" for b in trainable_blocks)
        if mean is not None:
            self.mean = tuple(float(m) for m in mean)
        if std is not None:
            self.std = tuple(float(s) for s in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


class GridTap(nn.Module):
    """The first blocks of a network's `features`, their output average-pooled to grid x grid and
    flattened (block names stay `features.<i>`, so fine-tuning addresses them as in the full model)."""

    def __init__(self, features: nn.Sequential, grid: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def weights_enum(spec: TorchvisionModel):
    import torchvision.models as tvm

    enum_name, member = spec.weights_enum.split(".")
    return getattr(getattr(tvm, enum_name), member)


def build_trunk(spec: TorchvisionModel) -> nn.Module:
    """The torchvision network, randomly initialised, with its classifier still in place."""
    import torchvision.models as tvm

    model = getattr(tvm, spec.builder)()
    if spec.variant == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def drop_head(model: nn.Module, head: str) -> None:
    parent_name, _, child = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())


def build_torchvision(name: str, pretrained: bool = True, in_channels: int = 3,
                      weights: str | None = None) -> Backbone:
    """A registered torchvision model: ImageNet weights (pretrained), a local file (weights) or random."""
    spec = TORCHVISION[name]
    model = build_trunk(spec)
    weights_id, source, report = "random", "random", None
    if weights:
        drop_head(model, spec.head)
        report = load_checkpoint(model, weights, architecture=name)
        weights_id, source = report.sha256[:16], str(weights)
    elif pretrained and spec.weights_url:
        file_name = spec.weights_file or spec.weights_url.rsplit("/", 1)[-1]
        path = find_weights(file_name, None, spec.weights_url, check_hash=False)
        drop_head(model, spec.head)
        report = load_checkpoint(model, path, architecture=name)
        weights_id, source = report.sha256[:16], f"{name}:{file_name}"
    elif pretrained:
        if spec.weights_enum is None:
            raise BackboneError(f"{name} has no downloadable weights: it needs a checkpoint file, e.g. a SCAN "
                                f"or SimCLR one", setting="weights")
        url = weights_enum(spec).url
        file_name = url.rsplit("/", 1)[-1]
        path = find_weights(file_name, bundled_file(file_name) if spec.bundled_file else None, url)
        weights_id = verify_hash_prefix(path)[:16]
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        drop_head(model, spec.head)
        source = f"imagenet:{file_name}"
    else:
        drop_head(model, spec.head)
    if spec.tap is not None:
        block, grid = spec.tap
        model = GridTap(model.features[:block + 1], grid)
    backbone = TrunkBackbone(model, spec.feature_dim, spec.trainable, spec.input_size)
    backbone.pretrained = bool(weights) or pretrained
    backbone.weights_id, backbone.source = weights_id, source
    backbone.load_report = report.to_dict() if report is not None else None
    return backbone
