"""Small encoders trained from scratch, for small grey images (digits, MNIST-like)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Backbone
from .catalog import SCRATCH


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallConvNet(Backbone):
    """conv-conv-[pool]-conv-conv-pool-conv-GAP: 8x8 inputs pool once, larger ones twice."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mean = (0.5,) * in_channels
        self.std = (0.5,) * in_channels
        self.feature_dim = 4 * width
        self.stage1 = nn.Sequential(_conv(in_channels, width), _conv(width, width))
        self.stage2 = nn.Sequential(_conv(width, 2 * width), _conv(2 * width, 2 * width))
        self.stage3 = _conv(2 * width, 4 * width)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(x)
        if x.shape[-1] > 8:
            x = self.pool(x)
        x = self.pool(self.stage2(x))
        return self.stage3(x).mean(dim=(2, 3))



class SmallMLP(Backbone):
    """Flatten -> Linear-BN-ReLU x 2, for tiny images such as 8x8 digits.

    Width 1024: narrower ones lock early into partitions that split confusable classes
    (docs/BENCHMARKS.md#levers-that-helped).
    """

    def __init__(self, in_channels: int = 1, side: int = 8, width: int = 1024) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_size = side
        self.mean = (0.5,) * in_channels
        self.std = (0.5,) * in_channels
        self.feature_dim = width
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * side * side, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_scratch(name: str, pretrained: bool = False, in_channels: int = 1, weights: str | None = None) -> Backbone:
    """The encoder catalog.SCRATCH names by class, randomly initialised (there are no weights to load)."""
    return {"SmallConvNet": SmallConvNet, "SmallMLP": SmallMLP}[SCRATCH[name].cls](in_channels=in_channels)
