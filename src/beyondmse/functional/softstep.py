"""SoftStep: a learnable, sparse, step-like map of similarities (Susman et al., 2025, Eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["softstep"]


def _as_tensor_like(v, ref: Tensor) -> Tensor:
    if isinstance(v, Tensor):
        return v.to(dtype=ref.dtype, device=ref.device) if v.dtype != ref.dtype or v.device != ref.device else v
    return torch.as_tensor(v, dtype=ref.dtype, device=ref.device)


def _logit_parts(s: Tensor, l: Tensor, u: Tensor, t: Tensor):
    """The inside mask and, on it, ``x = (log(s - l) - log(u - s)) / t`` (safe elsewhere).

    ``softstep = sigmoid(x)`` on ``l < s < u``: the ratio form of Eq. (1) divided through by
    ``(u - s)^(1/t)``. Outside the interval the logs are evaluated at a dummy point 1 so nothing
    infinite is ever formed (and so never multiplied by a zero mask in backward).
    """
    inside = (s > l) & (s < u)
    one = torch.ones((), dtype=s.dtype, device=s.device)
    log_a = torch.log(torch.where(inside, s - l, one))
    log_b = torch.log(torch.where(inside, u - s, one))
    x = (log_a - log_b) / t
    return inside, log_a, log_b, x


class _SoftStepFunction(torch.autograd.Function):
    """Eq. (1) with a closed-form VJP written in log space.

    With ``x = (log(s-l) - log(u-s)) / t`` and ``f = sigmoid(x)``:
    ``df/ds = f(1-f)/t * (1/(s-l) + 1/(u-s))``, ``df/dl = -f(1-f)/(t (s-l))``,
    ``df/du = -f(1-f)/(t (u-s))``, ``df/dt = -f(1-f) x / t``. Each ``f(1-f)/(s-l)`` is computed as
    ``exp(logsigmoid(x) + logsigmoid(-x) - log(s-l))`` so that near ``s = l`` (where ``f`` and
    ``s - l`` both vanish) no 0/0 or 0 * inf is formed; for ``t <= 1`` the limit is finite
    (0 for ``t < 1``, ``1/(u-l)`` for ``t = 1``). Outside ``(l, u)`` all gradients are 0.
    """

    @staticmethod
    def forward(ctx, s, l, u, t):
        s_b, l_b, u_b, t_b = torch.broadcast_tensors(s, l, u, t)
        inside, log_a, log_b, x = _logit_parts(s_b, l_b, u_b, t_b)
        out = torch.where(inside, torch.sigmoid(x), (s_b >= u_b).to(s_b.dtype))
        ctx.save_for_backward(inside, log_a, log_b, x, t_b)
        ctx.shapes = (s.shape, l.shape, u.shape, t.shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        inside, log_a, log_b, x, t = ctx.saved_tensors
        log_g = F.logsigmoid(x) + F.logsigmoid(-x)  # log f(1-f)
        zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
        # dl and du partials; where-masked so only finite values are ever selected
        gl = torch.where(inside, -torch.exp(log_g - log_a) / t, zero) * grad
        gu = torch.where(inside, -torch.exp(log_g - log_b) / t, zero) * grad
        s_shape, l_shape, u_shape, t_shape = ctx.shapes
        grads = [None, None, None, None]
        if ctx.needs_input_grad[0]:
            grads[0] = (-(gl + gu)).sum_to_size(s_shape)
        if ctx.needs_input_grad[1]:
            grads[1] = gl.sum_to_size(l_shape)
        if ctx.needs_input_grad[2]:
            grads[2] = gu.sum_to_size(u_shape)
        if ctx.needs_input_grad[3]:
            gt = torch.where(inside, -torch.exp(log_g) * x / t, zero) * grad
            grads[3] = gt.sum_to_size(t_shape)
        return tuple(grads)


def softstep(s: Tensor, l, u, t) -> Tensor:
    r"""The SoftStep map (Susman et al., 2025, Eq. 1).

    .. math::

        \mathrm{SoftStep}(s; l, u, t) =
        \begin{cases} 0 & s \le l \\
        \dfrac{(s-l)^{1/t}}{(s-l)^{1/t} + (u-s)^{1/t}} & l < s < u \\
        1 & s \ge u \end{cases}

    It is computed as ``sigmoid((log(s-l) - log(u-s)) / t)`` inside the interval, which is the
    same value without overflow for sharp ``t``. Values and gradients are finite everywhere,
    including at ``s = l``, ``s = u``, ``s`` in {0, 1} and for ``t`` near 0 or 1; gradients are
    zero outside ``(l, u)``. For ``0 < t < 1`` the map is continuously differentiable in ``s``;
    ``t = 1`` is the linear ramp (kinks at ``l`` and ``u``); ``t > 1`` is allowed but its
    slope is unbounded at the ends.

    Parameters
    ----------
    s : Tensor, any shape
        Inputs, usually similarities normalised to [0, 1] (any real values work).
    l, u : Tensor or float, broadcastable to ``s``
        Lower and upper ends of the transition, ``l < u`` elementwise.
    t : Tensor or float, broadcastable to ``s``
        Sharpness, ``t > 0``; ``t -> 0`` tends to the hard step at ``(l + u) / 2``.

    Returns
    -------
    Tensor, the broadcast shape of the inputs, the dtype and device of ``s``.

    Raises
    ------
    ValueError
        If ``t <= 0`` or ``u <= l`` anywhere, or if the shapes do not broadcast.

    References
    ----------
    1. A. Susman, B. Lin, M. Suárez-Fariñas, J. T. Colonel, "SoftStep: Learning Sparse
       Similarity Powers Deep Neighbor-Based Regression", arXiv:2506.08139, 2025.

    Examples
    --------
    >>> softstep(torch.tensor([0.0, 0.25, 0.5, 1.0]), 0.0, 0.5, 1.0)
    tensor([0.0000, 0.5000, 1.0000, 1.0000])
    """
    if not isinstance(s, Tensor):
        raise ValueError(f"s must be a tensor, got {type(s).__name__}")
    if not s.is_floating_point():
        raise ValueError(f"s must be a floating-point tensor, got dtype {s.dtype}")
    l, u, t = (_as_tensor_like(v, s) for v in (l, u, t))
    try:
        torch.broadcast_shapes(s.shape, l.shape, u.shape, t.shape)
    except RuntimeError as err:
        raise ValueError(f"shapes do not broadcast: s {tuple(s.shape)}, l {tuple(l.shape)}, "
                         f"u {tuple(u.shape)}, t {tuple(t.shape)}") from err
    with torch.no_grad():
        if not bool((t > 0).all()):
            raise ValueError("softstep needs t > 0 everywhere")
        if not bool((u > l).all()):
            raise ValueError("softstep needs u > l everywhere")
    return _SoftStepFunction.apply(s, l, u, t)
