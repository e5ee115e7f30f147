"""Trunks (feature extractors) and the trunk + head + regularizers model."""

from .regression_model import RegressionModel
from .trunks import MLP, Identity, SmallCNN

__all__ = ["MLP", "SmallCNN", "Identity", "RegressionModel"]
