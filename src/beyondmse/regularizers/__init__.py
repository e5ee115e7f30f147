"""Representation regularizers R(z, y), each returning an already weighted scalar."""

from .base import Regularizer
from .ordinal_entropy import OrdinalEntropy
from .ranksim import RankSim
from .rot import ROTReg
from .topology import PHReg

__all__ = ["Regularizer", "ROTReg", "RankSim", "OrdinalEntropy", "PHReg"]
