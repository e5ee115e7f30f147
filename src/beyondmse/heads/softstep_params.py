"""The learned parameters of SoftStep: ``(l0, u0, t)`` for NCA and the kept fraction ``k / n`` for
differentiable kNN, either one set for the whole model (*global*) or a linear layer of the query
embedding (*instance-wise*), each squashed into (0, 1) by a sigmoid (Susman et al. 2025, Eq. 1,
Algorithms 1 and 2).

**One initialisation.** Every parameter starts at ``sigmoid(0) = 0.5`` unless told otherwise:
the value a zero-initialised logit gives, which is what the paper's "learnable parameters with a
sigmoid" start from when nothing else is said. The instance-wise layer starts with zero weights
and that bias, so it starts as the global version.

**Learning-rate multiplier.** These few scalars steer the sparsity of every prediction but see a
small, noisy gradient, and with Adam at the trunk's learning rate they barely move (0.50 to
0.53 in 4,100 steps on cpu_act, issue 14). ``lr_scale = c`` stores the logit as ``theta / c``
and uses ``c * theta``: with Adam, whose step is about ``lr`` per parameter whatever the
gradient's size, this multiplies their effective learning rate by ``c`` without a separate
optimizer parameter group.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..configurable import Configurable

__all__ = ["SoftStepParams", "GlobalSoftStep", "InstanceSoftStep", "KFraction", "make_softstep_params",
           "DEFAULT_INIT"]

#: the one initial value of (l0, u0, t) for heads and recipes alike: sigmoid(0)
DEFAULT_INIT = (0.5, 0.5, 0.5)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _check_init(init, size: int) -> tuple[float, ...]:
    init = tuple(float(v) for v in init)
    if len(init) != size:
        raise ValueError(f"softstep init needs {size} values, got {len(init)}")
    for v in init:
        if not 0.0 < v < 1.0:
            raise ValueError(f"softstep init values must be in (0, 1), got {init}")
    return init


def _check_lr_scale(lr_scale: float) -> float:
    if not (isinstance(lr_scale, (int, float)) and lr_scale > 0 and math.isfinite(lr_scale)):
        raise ValueError(f"lr_scale must be a finite number > 0, got {lr_scale!r}")
    return float(lr_scale)


class _SigmoidParams(Configurable, nn.Module):
    """``size`` numbers in (0, 1): ``sigmoid(c * theta)`` (global) or ``sigmoid(c * (W z + b))``
    (instance-wise, ``in_features`` given), ``c = lr_scale``."""

    def __init__(self, size: int, init, in_features: int | None, lr_scale: float):
        super().__init__()
        init = _check_init(init, size)
        self.lr_scale = _check_lr_scale(lr_scale)
        start = torch.tensor([_logit(v) for v in init]) / self.lr_scale
        if in_features is None:
            self.theta = nn.Parameter(start)
            self.linear = None
        else:
            if in_features < 1:
                raise ValueError(f"in_features must be >= 1, got {in_features}")
            self.theta = None
            self.linear = nn.Linear(in_features, size)
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.bias.copy_(start)

    @property
    def instance_wise(self) -> bool:
        return self.linear is not None

    def _probs(self, z: Tensor) -> Tensor:
        """(N, size) for instance-wise parameters, (1, size) for global ones."""
        raw = self.theta.to(z.dtype)[None, :] if self.linear is None else self.linear(z)
        return torch.sigmoid(self.lr_scale * raw)


class SoftStepParams(_SigmoidParams):
    """Query embeddings ``z`` (N, d) -> SoftStep parameters ``(l0, u0, t)``, each of shape (N, 1)
    (instance-wise) or (1, 1) (global), in (0, 1); ``t`` is kept >= ``t_min`` (Algorithm 2)."""

    t_min = 1e-3

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = self._probs(z)
        return p[:, 0:1], p[:, 1:2], p[:, 2:3].clamp_min(self.t_min)


class GlobalSoftStep(SoftStepParams):
    """One learnable ``(l0, u0, t)`` for the whole model (the paper's *global* SoftStep)."""

    def __init__(self, init=DEFAULT_INIT, lr_scale: float = 1.0):
        super().__init__(3, init, None, lr_scale)


class InstanceSoftStep(SoftStepParams):
    """A linear layer + sigmoid giving each query its own ``(l0, u0, t)`` (*instance-wise*)."""

    def __init__(self, in_features: int, init=DEFAULT_INIT, lr_scale: float = 1.0):
        super().__init__(3, init, in_features, lr_scale)


class KFraction(_SigmoidParams):
    """``k / n`` in (0, 1) for differentiable kNN (Algorithm 1's ``sigma(k_param)``): a global
    scalar (``in_features=None``) or a per-query linear layer; ``forward`` gives (N, 1) or (1, 1)."""

    def __init__(self, in_features: int | None = None, init: float = 0.5, lr_scale: float = 1.0):
        super().__init__(1, (init,), in_features, lr_scale)

    def forward(self, z: Tensor) -> Tensor:
        return self._probs(z)


def make_softstep_params(kind, in_features: int, init=DEFAULT_INIT, lr_scale: float = 1.0) -> SoftStepParams | None:
    """``None`` -> no SoftStep; ``"global"`` / ``"instance"`` -> the module; a module passes through."""
    if kind is None or isinstance(kind, SoftStepParams):
        return kind
    if kind == "global":
        return GlobalSoftStep(init, lr_scale)
    if kind == "instance":
        return InstanceSoftStep(in_features, init, lr_scale)
    raise ValueError(f"unknown softstep {kind!r}; expected None, 'global', 'instance' or a SoftStepParams module")
