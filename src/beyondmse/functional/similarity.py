"""Swappable similarity objects and chunked helpers for neighbor heads.

A similarity maps query embeddings ``a`` (Na, d) and neighbor embeddings ``b`` (Nb, d) to a
matrix (Na, Nb), larger meaning closer (in the style of pytorch-metric-learning's distances).
They are small ``nn.Module`` objects so that a kernel bandwidth can be learned.

The chunked helpers stream over the neighbor set in blocks so that only
(query chunk) x (neighbor chunk) similarity blocks ever exist: peak memory does not grow with
the number of stored neighbors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Similarity", "NegSquaredL2", "Cosine", "RBF", "make_similarity", "SIMILARITIES",
           "chunk_ranges", "streaming_softmax_average", "streaming_row_min_max", "streaming_kth_largest",
           "streaming_topk", "float_order_keys"]


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"expected embeddings (Na, d) and (Nb, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding dimensions differ: {a.shape[1]} vs {b.shape[1]}")


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    # ||a||^2 + ||b||^2 - 2 a.b, clamped at 0: no sqrt, so duplicated points (distance 0) have
    # finite gradients.
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def _register_log_positive(module: nn.Module, attr: str, label: str, value: float, learnable: bool) -> None:
    """Store ``log(value)`` (value > 0) on ``module`` as a Parameter if learnable, else a buffer."""
    if not value > 0:
        raise ValueError(f"{label} must be > 0, got {value}")
    log_value = torch.tensor(math.log(value))
    if learnable:
        setattr(module, attr, nn.Parameter(log_value))
    else:
        module.register_buffer(attr, log_value)


class Similarity(nn.Module):
    """Base class: ``forward(a (Na, d), b (Nb, d)) -> (Na, Nb)``, larger is closer."""

    #: True when the similarity is bounded to [0, 1] (kernels); informational.
    bounded: bool = False

    def forward(self, a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class NegSquaredL2(Similarity):
    r"""Negative squared Euclidean distance, :math:`s(a, b) = -\gamma \|a - b\|_2^2` (NCA).

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
        _check_pair(a, b)
        # exp(0) == 1 exactly, so the default scale returns -d2 unchanged (no host sync needed)
        return -_squared_distances(a, b) * torch.exp(self.log_scale).to(a.dtype)


class Cosine(Similarity):
    r"""Cosine similarity :math:`a^\top b / (\|a\| \|b\|)` in [-1, 1] (zero vectors count as
    orthogonal: norms are clamped at ``eps``)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        return F.normalize(a, dim=1, eps=self.eps) @ F.normalize(b, dim=1, eps=self.eps).T


class RBF(Similarity):
    r"""Gaussian kernel :math:`\exp(-\|a - b\|^2 / (2 \sigma^2))` in (0, 1].

    Parameters
    ----------
    bandwidth : float, default 1.0
        :math:`\sigma > 0`.
    learnable : bool, default False
        Learn :math:`\log \sigma` with the rest of the model.

    Notes
    -----
    Being bounded, the kernel makes a softmax over it nearly uniform; it is meant for the
    SoftStep heads, where the learned step does the selecting.
    """

    bounded = True

    def __init__(self, bandwidth: float = 1.0, learnable: bool = False):
        super().__init__()
        _register_log_positive(self, "log_bandwidth", "bandwidth", bandwidth, learnable)

    @property
    def bandwidth(self) -> Tensor:
        return self.log_bandwidth.exp()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        inv = torch.exp(-2.0 * self.log_bandwidth).to(a.dtype) / 2.0
        return torch.exp(-_squared_distances(a, b) * inv)


SIMILARITIES: dict[str, Callable[..., Similarity]] = {"l2": NegSquaredL2, "cosine": Cosine, "rbf": RBF}


def make_similarity(name: str, **kwargs) -> Similarity:
    """Build a similarity from its registry name (``"l2"``, ``"cosine"``, ``"rbf"``)."""
    if name not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; expected one of {sorted(SIMILARITIES)}")
    return SIMILARITIES[name](**kwargs)


# --------------------------------------------------------------------------- chunked helpers
def chunk_ranges(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(n)`` in blocks of ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield start, min(start + size, n)


ScoreFn = Callable[[int, int], Tensor]


def streaming_row_min_max(scores: ScoreFn, n: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Row-wise min and max of a (Q, n) score matrix given block-wise by ``scores(start, stop)``."""
    lo = hi = None
    for start, stop in chunk_ranges(n, chunk):
        s = scores(start, stop)
        cmin, cmax = s.min(1).values, s.max(1).values
        lo = cmin if lo is None else torch.minimum(lo, cmin)
        hi = cmax if hi is None else torch.maximum(hi, cmax)
    return lo, hi


def streaming_softmax_average(logits: ScoreFn, values: Tensor, chunk: int) -> Tensor:
    r"""``softmax(L) @ values`` for a (Q, n) logit matrix ``L`` given block-wise.

    Uses the online (running max) softmax: for each block the running numerator and denominator
    are rescaled by :math:`\exp(m_{old} - m_{new})`. Masked entries must be large negative
    finite numbers (``finfo.min``), not ``-inf``, so that ``m_old - m_new`` is never
    ``-inf - (-inf)``.

    Parameters
    ----------
    logits : callable ``(start, stop) -> Tensor (Q, stop - start)``
    values : Tensor, shape (n, m)
    chunk : int

    Returns
    -------
    Tensor, shape (Q, m)
    """
    n = values.shape[0]
    run_max = den = num = None
    for start, stop in chunk_ranges(n, chunk):
        L = logits(start, stop)
        cmax = L.max(1).values
        new_max = cmax if run_max is None else torch.maximum(run_max, cmax)
        e = torch.exp(L - new_max[:, None])
        if run_max is None:
            den, num = e.sum(1), e @ values[start:stop]
        else:
            scale = torch.exp(run_max - new_max)
            den = den * scale + e.sum(1)
            num = num * scale[:, None] + e @ values[start:stop]
        run_max = new_max
    return num / den[:, None]


def streaming_topk(scores: ScoreFn, n: int, k: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Largest ``k`` scores per row (values and column indices, descending) of a (Q, n) matrix
    given block-wise; memory O(Q (k + chunk))."""
    k = min(k, n)
    best_v = best_i = None
    for start, stop in chunk_ranges(n, chunk):
        s = scores(start, stop)
        idx = torch.arange(start, stop, device=s.device).expand_as(s)
        if best_v is not None:
            s, idx = torch.cat([best_v, s], 1), torch.cat([best_i, idx], 1)
        kk = min(k, s.shape[1])
        best_v, pos = s.topk(kk, dim=1)
        best_i = idx.gather(1, pos)
    return best_v, best_i


def float_order_keys(x: Tensor) -> Tensor:
    """Map float32 values to int64 keys in [0, 2^32) with the same order (for radix selection)."""
    x = x.to(torch.float32).contiguous() + 0.0  # turns -0.0 into +0.0
    bits = x.view(torch.int32)
    # negative floats are sign-magnitude: flipping their magnitude bits makes the int32 order
    # agree with the float order
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits.to(torch.int64) + 2**31


def streaming_kth_largest(scores: ScoreFn, n: int, k: Tensor, chunk: int) -> Tensor:
    """Order keys (see :func:`float_order_keys`) of the ``k``-th largest score per row (0-based).

    An exact radix select on the 32-bit keys: four passes over the blocks, each building a
    256-bin histogram of one byte among the entries that match the prefix found so far. Memory
    is O(Q (256 + chunk)), independent of ``n``. Entries whose key is ``>=`` the result are the
    top ``k + 1`` (more when tied).

    Parameters
    ----------
    scores : callable ``(start, stop) -> Tensor (Q, stop - start)``
        Must return the same values on every call (it is evaluated four times).
    n : int
    k : Tensor of int64, shape (Q,), with ``0 <= k < n``
    chunk : int
    """
    k = k.to(torch.int64)
    prefix = None
    remaining = k.clone()
    for shift in (24, 16, 8, 0):
        hist = None
        for start, stop in chunk_ranges(n, chunk):
            keys = float_order_keys(scores(start, stop))
            if hist is None:
                hist = torch.zeros(keys.shape[0], 256, dtype=torch.int64, device=keys.device)
                if prefix is None:
                    prefix = torch.zeros(keys.shape[0], dtype=torch.int64, device=keys.device)
            digit = (keys >> shift) & 255
            if shift == 24:
                w = torch.ones_like(digit)
            else:
                w = ((keys >> (shift + 8)) == (prefix >> (shift + 8))[:, None]).to(torch.int64)
            hist.scatter_add_(1, digit, w)
        desc = hist.flip(1).cumsum(1)  # desc[:, j]: entries whose byte is >= 255 - j
        j = (desc <= remaining[:, None]).sum(1).clamp_max(255)
        before = torch.where(j > 0, desc.gather(1, (j - 1).clamp_min(0)[:, None])[:, 0], torch.zeros_like(j))
        remaining = remaining - before
        prefix = prefix | ((255 - j) << shift)
    return prefix
