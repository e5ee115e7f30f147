"""Pure tensor functions (no nn.Module state); custom autograd where needed."""

from .softstep import softstep
from .soft_rank import soft_rank
from .sinkhorn import self_entropic_ot

__all__ = ["softstep", "soft_rank", "self_entropic_ot"]
