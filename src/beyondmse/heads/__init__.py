"""Prediction heads: embedding ``z`` (N, d) -> prediction (N, m)."""

from .base import Head, LossOutput
from .codec import Codec
from .linear import Linear, MultiTarget
from .neighbors import NCA, DiffKNN

__all__ = ["Head", "LossOutput", "Linear", "MultiTarget", "NCA", "DiffKNN", "Codec"]
