"""Trunks (feature extractors), the trunk factory and the trunk + head + regularizers model."""

from .factory import make_trunk
from .regression_model import RegressionModel
from .trunks import MLP, Identity, SmallCNN

__all__ = ["MLP", "SmallCNN", "Identity", "RegressionModel", "make_trunk"]
