"""Batched, seeded image augmentations on float tensors (B, C, H, W) in [0, 1].

Everything draws from an explicit torch.Generator, so a run is reproducible from its seed. The
generator is a CPU one whatever the images' device: the few random numbers per image are drawn
on the CPU and moved to the images (a GPU warps the batch), so the draws, and a run's result,
do not depend on where it runs.

* "grey"   for small grey images: rotation +-15 deg, shift +-10 %, scale 0.9-1.1, shear +-10 deg.
* "simclr" SimCLR style: RandomResizedCrop(scale 0.2-1), horizontal flip, colour jitter
           (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale with p = 0.2.
* "none"   the identity (the consistency term then only sees identical views).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def grey_affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    angle = torch.deg2rad(_uniform(g, n, -15, 15))
    shear = torch.deg2rad(_uniform(g, n, -10, 10))
    scale = _uniform(g, n, 0.9, 1.1)
    shift = _uniform(g, 2 * n, -0.2, 0.2).view(n, 2)  # normalised coords span 2: +-10 % of the side
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (-sin + cos * tan) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (cos + sin * tan) / scale
    theta[:, :, 2] = shift
    return _warp(x, theta)


def simclr(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    # RandomResizedCrop(scale=(0.2, 1), ratio=(3/4, 4/3)) + horizontal flip as one affine warp.
    area = _uniform(g, n, 0.2, 1.0)
    log_ratio = _uniform(g, n, math.log(3 / 4), math.log(4 / 3))
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx = (1 - w) * _uniform(g, n, -1, 1)
    cy = (1 - h) * _uniform(g, n, -1, 1)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    x = _warp(x, theta)
    if x.shape[1] == 3:
        jitter = (torch.rand(n, generator=g) < 0.8).view(n, 1, 1, 1).to(x.device)
        x = torch.where(jitter, colour_jitter(x, g), x)
        grey = (torch.rand(n, generator=g) < 0.2).view(n, 1, 1, 1).to(x.device)
        x = torch.where(grey, _luma(x).expand_as(x), x)
    return x.clamp(0, 1)


def colour_jitter(x: torch.Tensor, g: torch.Generator, strength: float = 0.4, hue: float = 0.1) -> torch.Tensor:
    n = x.shape[0]

    def factor() -> torch.Tensor:
        return _uniform(g, n, 1 - strength, 1 + strength).view(n, 1, 1, 1).to(x.device)
    x = x * factor()                                            # brightness
    mean = _luma(x).mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * factor() + mean                            # contrast
    grey = _luma(x)
    x = (x - grey) * factor() + grey                            # saturation
    return _rotate_hue(x.clamp(0, 1), 2 * math.pi * _uniform(g, n, -hue, hue))


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Hue shift as a rotation of the chroma plane in YIQ space (batched, per-image angle)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = (torch.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ).to(x.device, x.dtype)   # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def identity(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x


AUGMENTATIONS: dict[str, Augment] = {"grey": grey_affine, "simclr": simclr, "none": identity}


def get_augmentation(name: str, channels: int, side: int) -> tuple[str, Augment]:
    """Resolve "auto" (grey for small 1-channel images, SimCLR otherwise) and look the policy up."""
    if name == "auto":
        name = "grey" if channels == 1 and side <= 64 else "simclr"
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of: auto, {', '.join(AUGMENTATIONS)}")
    return name, AUGMENTATIONS[name]
