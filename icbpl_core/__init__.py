"""ICBPL: image clustering with a pretrained encoder pulled onto Predefined
Evenly-Distributed Class Centroids (PEDCC). See METHOD in the docs."""
from .config import TrainConfig
from .estimator import ICBPL
from .pedcc import make_pedcc

__all__ = ["ICBPL", "TrainConfig", "make_pedcc"]
__version__ = "0.1.0"
