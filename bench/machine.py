"""The machine line every benchmark prints: the CPU, its cores, whether it has bf16 instructions
(which decides what `--precision auto` extracts in), torch and its threads."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    import torch

    from icbpl_core.features.extract import native_bf16
    bf16 = native_bf16()
    return (f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, bf16 instructions "
            f"{'yes' if bf16 else 'no'} (--precision auto extracts in {'bf16' if bf16 else 'fp32'}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
