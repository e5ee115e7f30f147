"""Trunks (feature extractors), the trunk factory and the trunk + head + regularizers model."""

from .factory import DEFAULT_MLP, make_trunk
from .regression_model import RegressionModel
from .trunks import MLP, Identity, SmallCNN, init_weights_
from .backbones import BACKBONES, BackboneTrunk, PretrainedBackbone
from .user_trunk import embedding_width
from . import embedding_cache  # noqa: E402,F401  (registers the frozen-feature datasets, e.g. retinamnist-lite0)

__all__ = ["MLP", "SmallCNN", "Identity", "RegressionModel", "init_weights_", "make_trunk", "DEFAULT_MLP",
           "BACKBONES", "BackboneTrunk", "PretrainedBackbone", "embedding_width"]
