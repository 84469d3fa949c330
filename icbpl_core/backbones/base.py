"""The interface every backbone implements."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Backbone(nn.Module):
    """A feature extractor: images in [0, 1] -> (B, feature_dim) features.

    Attributes every backbone sets:
      feature_dim        size of the feature vector
      input_size         side of the square input it expects (None: any size, native)
      in_channels        1 or 3
      mean, std          per-channel normalisation
      pretrained         whether the weights come from pretraining
      weights_id         identifies the weights (file hash, "random", ...) for cache keys
      trainable_blocks   names of submodules that fine-tuning trains by default ("" = all)
      name               the registry name it was created under (set by create_backbone)
      source             where the weights came from (a file path, "imagenet", "random", ...)
    """

    feature_dim: int
    input_size: int | None = None
    in_channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    pretrained: bool = False
    weights_id: str = "random"
    trainable_blocks: tuple[str, ...] = ("",)
    name: str = ""
    source: str = "random"
    load_report: dict | None = None   # set when weights came from a checkpoint file (see checkpoints.py)

    def prepare(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Float images (B, C, H, W) in [0, 1] -> normalised input of this backbone."""
        repeat = 1
        if images.shape[1] != self.in_channels:
            if images.shape[1] == 1:   # grey into a colour backbone: repeated after resizing (3x less work)
                repeat = self.in_channels
            else:  # RGB into a grey backbone: ITU-R 601 luma
                weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                images = (images * weights).sum(dim=1, keepdim=True)
        size = size or self.input_size
        if size is not None and images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        if repeat > 1:
            images = images.expand(-1, repeat, -1, -1)
        mean = images.new_tensor(self.mean).view(1, -1, 1, 1)
        std = images.new_tensor(self.std).view(1, -1, 1, 1)
        return (images - mean) / std

    def set_trainable(self, blocks: tuple[str, ...] | None = None) -> list[str]:
        """Freeze everything but `blocks` (default: trainable_blocks); returns the trained names."""
        blocks = self.trainable_blocks if blocks is None else tuple(blocks)
        for name, param in self.named_parameters():
            param.requires_grad = _in_blocks(name, blocks)
        return list(blocks)

    def describe(self) -> dict:
        """What a run records about its backbone: sizes, normalisation, where the weights came from
        (and what a checkpoint file provided), what fine-tuning trains."""
        blocks = tuple(self.trainable_blocks)
        n_params = sum(p.numel() for p in self.parameters())
        n_trainable = sum(p.numel() for name, p in self.named_parameters() if _in_blocks(name, blocks))
        info = {"name": self.name, "class": type(self).__name__, "feature_dim": int(self.feature_dim),
                "input_size": self.input_size, "in_channels": self.in_channels,
                "mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "pretrained": bool(self.pretrained), "weights_id": self.weights_id, "source": self.source,
                "trainable_blocks": list(blocks), "n_params": n_params, "n_trainable_params": n_trainable}
        if self.load_report is not None:
            info["load_report"] = self.load_report
        return info


def _in_blocks(name: str, blocks: tuple[str, ...]) -> bool:
    """Whether parameter `name` lies in one of the named submodules ("" is the whole network)."""
    return any(b == "" or name == b or name.startswith(b + ".") for b in blocks)
