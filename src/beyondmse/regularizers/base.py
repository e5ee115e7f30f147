"""The regularizer contract: ``R(z, y)`` returns an already weighted scalar."""

from __future__ import annotations

from torch import Tensor, nn

from ..configurable import Configurable

__all__ = ["Regularizer"]


class Regularizer(Configurable, nn.Module):
    """Base class of representation regularizers.

    Subclasses implement :meth:`penalty` (unweighted, a scalar tensor); calling the module
    returns ``weight * penalty(z, y)``. ``z`` is ``(N, d)``, ``y`` is ``(N, m)``.
    """

    #: short name used in logged loss terms
    name: str = "reg"

    def __init__(self, weight: float = 1.0):
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"regularizer weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def penalty(self, z: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        if z.dim() != 2 or y.dim() != 2 or z.shape[0] != y.shape[0]:
            raise ValueError(
                f"expected z (N, d) and y (N, m) with the same N, got {tuple(z.shape)} and {tuple(y.shape)}"
            )
        return self.weight * self.penalty(z, y)
