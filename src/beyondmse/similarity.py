"""Swappable similarity objects that neighbor heads take as ``similarity=``.

A similarity maps query embeddings ``a`` (Na, d) and neighbor embeddings ``b`` (Nb, d) to a
matrix (Na, Nb), larger meaning closer (in the style of pytorch-metric-learning's distances).
They are small ``nn.Module`` objects only so that a kernel bandwidth or scale can be learned; the
arithmetic lives in :mod:`beyondmse.functional.distances`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .configurable import Configurable
from .functional.distances import cosine_similarity, no_graph, pairwise_distances, squared_distances

__all__ = ["Similarity", "NegL2", "NegSquaredL2", "Cosine", "RBF", "make_similarity", "SIMILARITIES"]


def _register_log_positive(module: nn.Module, attr: str, label: str, value: float, learnable: bool) -> None:
    """Store ``log(value)`` (value > 0) on ``module`` as a Parameter if learnable, else a buffer."""
    if not value > 0:
        raise ValueError(f"{label} must be > 0, got {value}")
    log_value = torch.tensor(math.log(value))
    if learnable:
        setattr(module, attr, nn.Parameter(log_value))
    else:
        module.register_buffer(attr, log_value)


class Similarity(Configurable, nn.Module):
    """Base class: ``forward(a (Na, d), b (Nb, d)) -> (Na, Nb)``, larger is closer."""

    #: True when the similarity is bounded to [0, 1] (kernels); informational.
    bounded: bool = False

    def forward(self, a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class NegL2(Similarity):
    r"""Negative Euclidean distance, :math:`s(a, b) = -\gamma \|a - b\|_2`: the "negative
    :math:`\ell_2` distance" of the SoftStep paper (Susman et al. 2025, Sec. 3.2) and the heads'
    default. :class:`NegSquaredL2` is the squared variant.

    The distance is :func:`~beyondmse.functional.distances.pairwise_distances` (centred Gram
    form, square root of a value clamped at ``1e-12``): its gradient is finite everywhere and
    zero between coinciding points; ``forward(a, a)`` has an exactly zero diagonal.

    Parameters
    ----------
    scale : float, default 1.0
        :math:`\gamma > 0`, an inverse temperature of the softmax on top.
    learnable : bool, default False
        Learn :math:`\log \gamma`.
    """

    def __init__(self, scale: float = 1.0, learnable: bool = False):
        super().__init__()
        _register_log_positive(self, "log_scale", "scale", scale, learnable)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        # within one set (b is a) the diagonal is exactly 0, with a zero gradient
        d = pairwise_distances(a) if b is a else pairwise_distances(a, b)
        scale = torch.exp(self.log_scale).to(a.dtype)
        if no_graph(d, scale):
            return d.mul_(-scale)  # in place, the same values as -d * scale
        return -d * scale

    def of_squared_distances(self, d2: Tensor) -> Tensor:
        """The similarity of points at squared distances ``d2`` (any shape; a search index's output)."""
        return -d2.clamp_min(0).sqrt() * torch.exp(self.log_scale).to(d2.dtype)

    def squared_distance_within(self, sim: Tensor) -> Tensor:
        """The squared distance below which the similarity exceeds ``sim`` (the inverse map; 0 for ``sim >= 0``)."""
        d = (-sim / torch.exp(self.log_scale).to(sim.dtype)).clamp_min(0)
        return d * d


class NegSquaredL2(Similarity):
    r"""Negative squared Euclidean distance, :math:`s(a, b) = -\gamma \|a - b\|_2^2` (classical
    NCA, Goldberger et al. 2004; the registry's ``"l2sq"``).

    Parameters
    ----------
    scale : float, default 1.0
        :math:`\gamma > 0`; with a softmax on top it is an inverse kernel bandwidth
        (:math:`\gamma = 1 / (2 \sigma^2)`).
    learnable : bool, default False
        Learn :math:`\log \gamma` (useful when the embedding cannot rescale itself, e.g. with an
        identity trunk).
    """

    def __init__(self, scale: float = 1.0, learnable: bool = False):
        super().__init__()
        _register_log_positive(self, "log_scale", "scale", scale, learnable)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        # exp(0) == 1 exactly, so the default scale returns -d2 unchanged (no host sync needed)
        return self.of_squared_distances(squared_distances(a, b))

    def of_squared_distances(self, d2: Tensor) -> Tensor:
        """The similarity of points at squared distances ``d2`` (any shape; a search index's output)."""
        return -d2 * torch.exp(self.log_scale).to(d2.dtype)

    def squared_distance_within(self, sim: Tensor) -> Tensor:
        """The squared distance below which the similarity exceeds ``sim`` (the inverse map; 0 for ``sim >= 0``)."""
        return (-sim / torch.exp(self.log_scale).to(sim.dtype)).clamp_min(0)


class Cosine(Similarity):
    r"""Cosine similarity :math:`a^\top b / (\|a\| \|b\|)` in [-1, 1] (zero vectors count as
    orthogonal: norms are clamped at ``eps``)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return cosine_similarity(a, b, eps=self.eps)


class RBF(Similarity):
    r"""Gaussian kernel over a temperature, :math:`\exp(-\|a - b\|^2 / (2 \sigma^2)) / \tau`.

    The kernel alone lies in (0, 1], so softmax weights over it differ by at most a factor
    :math:`e` and plain NCA predicts about the neighbor mean (issue 14); the temperature
    :math:`\tau` (learned by default) lets the softmax become sharp, while SoftStep's min-max
    normalisation sees the kernel itself (it is invariant to :math:`\tau`). ``temperature=1``
    is the bare kernel.

    Parameters
    ----------
    bandwidth : float, default 1.0
        :math:`\sigma > 0`.
    learnable : bool, default False
        Learn :math:`\log \sigma` with the rest of the model.
    temperature : float, default 0.1
        :math:`\tau > 0`.
    learn_temperature : bool, default True
        Learn :math:`\log \tau`.
    """

    bounded = True

    def __init__(self, bandwidth: float = 1.0, learnable: bool = False, temperature: float = 0.1,
                 learn_temperature: bool = True):
        super().__init__()
        _register_log_positive(self, "log_bandwidth", "bandwidth", bandwidth, learnable)
        _register_log_positive(self, "log_temperature", "temperature", temperature, learn_temperature)

    @property
    def bandwidth(self) -> Tensor:
        return self.log_bandwidth.exp()

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        inv = torch.exp(-2.0 * self.log_bandwidth).to(a.dtype) / 2.0
        return torch.exp(-squared_distances(a, b) * inv - self.log_temperature.to(a.dtype))


SIMILARITIES: dict[str, Callable[..., Similarity]] = {"l2": NegL2, "l2sq": NegSquaredL2, "cosine": Cosine, "rbf": RBF}


def make_similarity(name: str, **kwargs) -> Similarity:
    """Build a similarity from its registry name (``"l2"``: negative distance, ``"l2sq"``:
    negative squared distance, ``"cosine"``, ``"rbf"``)."""
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; expected one of {sorted(SIMILARITIES)}")
    return SIMILARITIES[name](**kwargs)
