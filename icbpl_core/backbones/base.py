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
    """

    feature_dim: int
    input_size: int | None = None
    in_channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    pretrained: bool = False
    weights_id: str = "random"
    trainable_blocks: tuple[str, ...] = ("",)

    def prepare(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Float images (B, C, H, W) in [0, 1] -> normalised input of this backbone."""
        if images.shape[1] != self.in_channels:
            if images.shape[1] == 1:
                images = images.expand(-1, self.in_channels, -1, -1)
            else:  # RGB into a grey backbone: ITU-R 601 luma
                weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                images = (images * weights).sum(dim=1, keepdim=True)
        size = size or self.input_size
        if size is not None and images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        mean = images.new_tensor(self.mean).view(1, -1, 1, 1)
        std = images.new_tensor(self.std).view(1, -1, 1, 1)
        return (images - mean) / std

    def set_trainable(self, blocks: tuple[str, ...] | None = None) -> list[str]:
        """Freeze everything but `blocks` (default: trainable_blocks); returns the trained names."""
        blocks = self.trainable_blocks if blocks is None else tuple(blocks)
        for name, param in self.named_parameters():
            param.requires_grad = any(name == b or name.startswith(b + ".") or b == "" for b in blocks)
        return list(blocks)
