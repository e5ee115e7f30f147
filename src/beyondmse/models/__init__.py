"""Trunks (feature extractors), the trunk factory and the trunk + head + regularizers model."""

from .factory import DEFAULT_MLP, make_trunk
from .regression_model import RegressionModel
from .trunks import MLP, Identity, SmallCNN, init_weights_

__all__ = ["MLP", "SmallCNN", "Identity", "RegressionModel", "init_weights_", "make_trunk", "DEFAULT_MLP"]
