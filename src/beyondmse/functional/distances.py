r"""The one home of pairwise (squared) Euclidean distances and cosine similarities.

Every head, regularizer and codec that needs a distance matrix calls these functions, so that the
numerical choices (the Gram-matrix form, the clamp that keeps gradients finite for duplicated
points, the centring that limits cancellation) are made once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch import Tensor

__all__ = ["squared_distances", "pairwise_distances", "cosine_similarity"]


def _check_pair(a: Tensor, b: Tensor) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise ValueError(f"expected tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"expected points (Na, d) and (Nb, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point dimensions differ: (Na, {a.shape[1]}) vs (Nb, {b.shape[1]})")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"expected floating-point points, got {a.dtype} and {b.dtype}")


def squared_distances(a: Tensor, b: Tensor | None = None) -> Tensor:
    r"""Squared Euclidean distances :math:`D_{ij} = \|a_i - b_j\|_2^2`, shape (Na, Nb).

    Computed in the Gram form :math:`\|a_i\|^2 + \|b_j\|^2 - 2 a_i^\top b_j` (one matrix product,
    fast on accelerators) and clamped at 0 (rounding can make the Gram form slightly negative).
    No square root is taken, so the gradient is finite everywhere, also at zero distance.

    Parameters
    ----------
    a : Tensor, shape (Na, d)
    b : Tensor, shape (Nb, d), optional
        Defaults to ``a`` (distances within one set; the diagonal is then ~0, not exactly 0).

    Returns
    -------
    Tensor, shape (Na, Nb), dtype of ``a``.

    Examples
    --------
    >>> squared_distances(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
    tensor([[25.]])
    """
    if b is None:
        b = a
    _check_pair(a, b)
    if no_graph(a, b):  # the same values, in place: fewer (Na, Nb) temporaries (inference)
        d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :]
        return d2.sub_((2.0 * a) @ b.T).clamp_min_(0.0)
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def no_graph(*tensors: Tensor) -> bool:
    """True when no autograd graph is being recorded for these tensors (in-place steps are safe)."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def pairwise_distances(a: Tensor, b: Tensor | None = None, eps: float | None = None) -> Tensor:
    r"""Euclidean distances :math:`D_{ij} = \|a_i - b_j\|_2`, shape (Na, Nb).

    Computed as :math:`\sqrt{\max(D^2_{ij}, \epsilon)}` from :func:`squared_distances` on
    centred points: both sets are shifted by the same vector (the mean of ``a``, or of both sets),
    which leaves distances unchanged and limits the cancellation error of the Gram form. The clamp
    at :math:`\epsilon` keeps the gradient finite when two points coincide (the derivative of
    :math:`\sqrt{\cdot}` at 0 is infinite): entries below :math:`\epsilon` get zero gradient.
    With ``b`` omitted the diagonal is exactly 0.

    Parameters
    ----------
    a : Tensor, shape (Na, d)
    b : Tensor, shape (Nb, d), optional
        Defaults to ``a``.
    eps : float, optional
        Floor of the squared distance; default ``1e-12`` for float32/float64 and the machine
        epsilon of lower precisions (where ``1e-12`` underflows).

    Returns
    -------
    Tensor, shape (Na, Nb), dtype of ``a``.

    Examples
    --------
    >>> pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    tensor([[0., 5.],
            [5., 0.]])
    """
    _check_pair(a, a if b is None else b)
    if eps is None:
        eps = 1e-12 if a.dtype in (torch.float32, torch.float64) else float(torch.finfo(a.dtype).eps)
    elif not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if b is None:
        if no_graph(a):
            return _self_distances(_centred(a), eps)
        return _SelfDistances.apply(a, eps)
    shift = torch.cat([a, b.to(a.dtype)]).mean(dim=0, keepdim=True)
    if no_graph(a, b):
        return squared_distances(a - shift, b - shift).clamp_min_(eps).sqrt_()
    return squared_distances(a - shift, b - shift).clamp_min(eps).sqrt()


def _centred(a: Tensor) -> Tensor:
    """``a`` minus its mean row: distances do not change, and the Gram form cancels less."""
    return a - a.mean(dim=0, keepdim=True)


def _self_distances(a: Tensor, eps: float) -> Tensor:
    """Distances within the centred points ``a`` (N, d): Gram form, clamped at ``eps``, zero
    diagonal. In place on one (N, N) buffer: one matrix product and three passes."""
    n2 = (a * a).sum(1)
    d = torch.addmm(n2[:, None], a, a.T, alpha=-2.0).add_(n2).clamp_min_(eps).sqrt_()
    d.diagonal().zero_()
    return d


class _SelfDistances(torch.autograd.Function):
    r"""Distances within one set with a closed-form backward (the autograd graph of the Gram
    form costs about ten (N, N) passes more, and its transposes are slow on CPUs).

    With :math:`G = \partial L / \partial D` and :math:`W_{ij} = G_{ij} / D_{ij}` where
    :math:`D_{ij}^2 > \epsilon` (0 elsewhere: on the diagonal and at the clamp, as the clamp's
    own gradient), :math:`\partial D_{ij} / \partial a_i = (a_i - a_j) / D_{ij}` gives

    .. math::

        \frac{\partial L}{\partial a} = \operatorname{diag}(W\mathbf 1 + W^\top \mathbf 1)\, a
        - W a - W^\top a .

    The centring needs no term: distances do not change under a shift, so this gradient sums
    to zero over the rows. First order only.
    """

    @staticmethod
    def forward(ctx, a, eps):
        a = _centred(a)
        d = _self_distances(a, eps)
        ctx.save_for_backward(a, d)  # the centred points: the backward's products are shift-invariant
        ctx.eps = eps
        return d

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, d = ctx.saved_tensors
        # W = G / D where D^2 > eps; D reads as inf at the clamp and on the diagonal, so W = 0 there
        w = grad / F.threshold(d, math.sqrt(ctx.eps) * (1 + 1e-4), math.inf)
        out = torch.addmm(a * (w.sum(1) + w.sum(0))[:, None], w, a, alpha=-1.0)
        return out.addmm_(w.T, a, alpha=-1.0), None


def cosine_similarity(a: Tensor, b: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    r"""Cosine similarities :math:`a_i^\top b_j / (\|a_i\| \|b_j\|)` in [-1, 1], shape (Na, Nb).

    Norms are clamped at ``eps``, so a zero vector counts as orthogonal to everything.

    Parameters
    ----------
    a : Tensor, shape (Na, d)
    b : Tensor, shape (Nb, d), optional
        Defaults to ``a``.
    eps : float, default 1e-8
    """
    if b is None:
        b = a
    _check_pair(a, b)
    return F.normalize(a, dim=1, eps=eps) @ F.normalize(b, dim=1, eps=eps).T
