"""Where a run computes: the `device` parameter resolved to a torch.device, and the arithmetic
used there.

    auto    CUDA when present, then Apple's MPS, then the CPU
    cuda    the current CUDA device (under torchrun: the process's LOCAL_RANK)
    cuda:N  that one;  mps;  cpu

Training on a GPU runs the model's forward pass under autocast: bfloat16 where the GPU has it
(Ampere and later), else float16 with a GradScaler (fp16 gradients underflow without one).
The losses are computed in float32 on the autocast outputs. On the CPU training stays float32,
so a CPU run gives exactly the numbers it always has (feature extraction keeps its own
`precision` parameter).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    amp_dtype: torch.dtype | None       # autocast dtype of the training forward pass, None: float32

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    @property
    def needs_scaler(self) -> bool:
        return self.amp_dtype is torch.float16

    def describe(self) -> dict:
        """What config.json and metrics.json record."""
        return {"device": str(self.device), "device_name": device_name(self.device),
                "training_precision": self.precision}


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch.device `name` means here; ConfigError when it is not available."""
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise ConfigError("this machine has no MPS device (Apple GPU); choose cpu or auto", setting="device")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("this machine has no CUDA GPU that torch can use; choose cpu or auto "
                              "(or install a CUDA build of torch)", setting="device")
        count = torch.cuda.device_count()
        if name == "cuda":
            return torch.device("cuda", local_rank % count)
        index = name.split(":", 1)[1]
        if not index.isdigit() or int(index) >= count:
            raise ConfigError(f"there is no GPU {name}: this machine has {count} (cuda:0 to cuda:{count - 1})",
                              setting="device")
        return torch.device("cuda", int(index))
    raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps", setting="device")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def placement(name: str = "auto") -> Placement:
    device = resolve_device(name)
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Placement(device, dtype)
    return Placement(device, None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "cpu"
