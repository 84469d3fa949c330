"""ICBPL: image clustering with a pretrained encoder pulled onto Predefined Evenly-Distributed
Class Centroids (PEDCC); docs/METHOD.md describes the method as implemented.

The engine: no user-interface libraries. `import icbpl_core` is light; the estimator and
the maths (torch) load when first used.
"""
from __future__ import annotations

import importlib

__all__ = ["ICBPL", "TrainConfig", "RunSpec", "make_pedcc"]
__version__ = "0.2.0"

_LAZY = {"ICBPL": "estimator", "TrainConfig": "config", "RunSpec": "config", "make_pedcc": "method.pedcc"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
