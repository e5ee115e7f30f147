"""SoftStep: a learnable, sparse, step-like map of similarities (Susman et al., 2025, Eq. 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .distances import no_graph

__all__ = ["softstep", "softstep_logits"]


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


# --------------------------------------------------------------------------- fused NCA logits
def _softstep_bounds(lo: Tensor, hi: Tensor, top: Tensor, l0: Tensor, u0: Tensor, eps: float, min_gap: float):
    """Algorithm 2's per-row quantities from the row min ``lo``, max ``hi`` and best neighbor
    ``top`` (all (Q, 1)): ``1 / range``, ``l = min(l0, s_top) - eps``, ``u = l + max(u0 (1 - l), min_gap)``."""
    floor = math.sqrt(torch.finfo(lo.dtype).eps)  # keeps 0/0 away from a row of equal similarities
    inv_rng = 1.0 / (hi - lo).clamp_min(floor)
    l = torch.minimum(l0, (top - lo) * inv_rng) - eps
    u = l + torch.clamp_min(u0 * (1.0 - l), min_gap)
    return inv_rng, l, u


# Masks here are float 0/1 tensors written by comparisons with ``out=`` and applied by
# multiplication: torch's CPU ``where`` and ``masked_fill`` branch on every element, and on the
# irregular inside/outside pattern of a SoftStep row they mispredict often enough to cost 10-15x a
# vectorised pass (16-20 ms against 1.5 ms on a 2048 x 2048 block, one core); a bool mask turned
# into floats with ``.to`` costs 4x a pass as well.
def _float_mask(compare, x: Tensor, value: float) -> Tensor:
    """``compare(x, value)`` as a 0/1 tensor of ``x``'s dtype, in one vectorised pass."""
    return compare(x, value, out=torch.empty_like(x))


def _ratio_logit(ratio: Tensor, t, inside: Tensor) -> Tensor:
    """``x = log(ratio) / t`` inside the transition (the ratio ``a / b`` capped to [tiny, 1/tiny]),
    0 elsewhere, in ``ratio``'s storage. Outside, ``a / b`` is <= 0 or +-inf (never NaN: ``a`` and
    ``b`` are not both <= 0), and the cap keeps its log finite before the mask zeroes it."""
    tiny = torch.finfo(ratio.dtype).tiny
    return ratio.clamp_(tiny, 1.0 / tiny).log_().div_(t).mul_(inside)


def _logsigmoid(x: Tensor, consume: bool = False) -> Tensor:
    """``logsigmoid(x)`` as ``-softplus(-x)`` with softplus's linear branch where ``exp(x)`` is
    below the rounding of ``x``: torch's CPU ``logsigmoid`` forms ``exp(-|x|)`` everywhere, which is
    subnormal for ``x < -87`` in float32 and then 10x slower (75 ms against 11 ms on 2048 x 2048).
    ``consume``: negate ``x`` in place (one temporary fewer)."""
    linear_from = 40.0 if x.dtype == torch.float64 else 20.0  # e^-40 < ulp(40) / 2 in float64
    return F.softplus(x.neg_() if consume else x.neg(), threshold=linear_from).neg_()


def _masked_logits(log_w: Tensor, sim: Tensor, inside: Tensor, keep: Tensor, consume: bool = False) -> Tensor:
    """``sim + log w`` inside, ``sim`` above ``u``, ``finfo.min`` below ``l`` (``keep`` is 0 there),
    in ``log_w``'s storage (``consume``: ``keep`` is overwritten too). The same arithmetic in the
    autograd and the no-graph path, so they agree bit for bit."""
    logits = log_w.mul_(inside).add_(sim).mul_(keep)
    below = keep.sub_(1.0) if consume else keep - 1.0
    return logits.add_(below, alpha=torch.finfo(sim.dtype).max)  # 0 or -max added


def _step_logits(a: Tensor, b: Tensor, t, sim: Tensor):
    """The elementwise core shared by SoftStep's logits and DiffKNN's (``knn_step_logits``).

    ``a`` is the distance past the transition's dead end (weight 0 at ``a <= 0``), ``b`` the
    distance to its full end (weight 1 at ``b <= 0``); never both <= 0. Inside (``a, b > 0``)
    ``w = sigmoid(x)``, ``x = log(a / b) / t``, and the logit is ``sim + log w`` (``logsigmoid(x)``:
    finite where ``w`` itself would underflow to 0); ``sim`` where ``b <= 0``; ``finfo.min``
    where ``a <= 0``. Consumes ``a``. Returns ``logits``, ``ab = a b`` (clamped at
    ``finfo.tiny``, so ``tiny`` outside), ``x`` (0 outside), ``1 - w`` (0 outside) and ``keep``
    (0 where ``a <= 0``: no weight, no gradient; 1 elsewhere).
    """
    keep = _float_mask(torch.gt, a, 0.0)
    inside = _float_mask(torch.gt, b, 0.0).mul_(keep)
    ab = (a * b).clamp_min_(torch.finfo(sim.dtype).tiny)  # > 0 inside; q / ab is then 0 outside
    x = _ratio_logit(a.div_(b), t, inside)
    log_w = _logsigmoid(x)
    # 1 - w = exp(log w - x) = d log w / dx, 0 outside; values below sqrt(finfo.tiny) are set to 0,
    # so that no subnormal float reaches backward (torch's sigmoid(-x) also branches on the sign)
    floor = math.log(torch.finfo(sim.dtype).tiny) / 2
    one_minus_w = F.threshold(log_w - x, floor, -math.inf).exp_().mul_(inside)
    logits = _masked_logits(log_w, sim, inside, keep)
    return logits, ab, x, one_minus_w, keep


def _logits_forward(sim, lo, inv_rng, l, u, t):
    """The elementwise part of SoftStep's logits, no autograd: :func:`_step_logits` with
    ``a = s - l``, ``b = u - s``, and ``s`` for backward: ``logits, s, ab, x, 1 - w, keep``
    (``keep`` 0 below ``l``)."""
    s = (sim - lo).mul_(inv_rng)
    logits, ab, x, one_minus_w, keep = _step_logits(s - l, torch.sub(u, s), t, sim)
    return logits, s, ab, x, one_minus_w, keep


def _logits_only(sim, lo, inv_rng, l, u, t):
    """:func:`_logits_forward`'s logits alone, the same values in fewer passes over (Q, n):
    nothing is kept for backward (no ``1 - w`` or ``(s - l)(u - s)``), and every (Q, n) buffer
    is reused in place once its value is spent: four of them besides ``sim``. Inference over a
    memory bank spends most of its time here."""
    s = (sim - lo).mul_(inv_rng)
    a = s - l
    b = torch.sub(u, s, out=s)  # u - s, in s's storage
    keep = _float_mask(torch.gt, a, 0.0)
    ratio = a.div_(b)
    inside = torch.gt(b, 0.0, out=b).mul_(keep)  # in b's storage, once the ratio is formed
    log_w = _logsigmoid(_ratio_logit(ratio, t, inside), consume=True)
    return _masked_logits(log_w, sim, inside, keep, consume=True)


class _SoftStepLogitsFunction(torch.autograd.Function):
    """``sim + log SoftStep(s; l, u, t)`` with Algorithm 2's row normalisation, in one node.

    The (Q, n) work is elementwise with a closed-form backward (no autograd temporaries); the
    per-row quantities (``1/range``, ``l``, ``u``) are re-derived in backward on a small graph of
    (Q, 1) leaves, and their gradients reach ``sim`` through the row min / max / best-neighbor
    entries, added in place at those indices (training) or returned (given values).

    Backward, with ``G`` the incoming gradient, ``x = log((s-l)/(u-s)) / t`` and
    ``h = G (1 - w) / ((s-l)(u-s))`` inside: ``dL/dl = -sum_j h (u-s) / t``,
    ``dL/du = -sum_j h (s-l) / t``, ``dL/dt = -sum_j G (1-w) x / t`` and
    ``dL/ds = h (u - l) / t``, since ``1/(s-l) + 1/(u-s) = (u-l) / ((s-l)(u-s))``.
    """

    @staticmethod
    def forward(ctx, sim, lo, hi, top, l0, u0, t, index, eps, min_gap, exclude_diagonal):
        inv_rng, l, u = _softstep_bounds(lo, hi, top, l0, u0, eps, min_gap)
        logits, s, ab, x, one_minus_w, keep = _logits_forward(sim, lo, inv_rng, l, u, t)
        if exclude_diagonal:
            logits.diagonal().fill_(torch.finfo(sim.dtype).min)
            one_minus_w.diagonal().fill_(0.0)
            keep.diagonal().fill_(0.0)
        ctx.save_for_backward(s, ab, x, one_minus_w, keep, lo, hi, top, l0, u0, t, *(index or ()))
        ctx.has_index = index is not None
        ctx.eps, ctx.min_gap = eps, min_gap
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        s, ab, x, one_minus_w, keep, lo, hi, top, l0, u0, t, *index = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [v.detach().requires_grad_() for v in (lo, hi, top, l0, u0)]
            inv_rng, l, u = _softstep_bounds(*leaves, ctx.eps, ctx.min_gap)
        inv, span = inv_rng.detach(), (u - l).detach()
        q = one_minus_w * grad  # G (1 - w), 0 outside (l, u)
        h = q / ab  # 0 outside (q = 0, ab = tiny there)

        def rowdot(p_, q_):
            return (p_ * q_).sum(1, keepdim=True)

        # sum h (s - l) and sum h (u - s) from the two sums sum h s and sum h
        h_sum, hs_sum = h.sum(1, keepdim=True), rowdot(h, s)
        g_l = -(u.detach() * h_sum - hs_sum) / t
        g_u = -(hs_sum - l.detach() * h_sum) / t
        g_t = -rowdot(q, x) / t
        del q
        row_s = span / t  # dL/ds = h (u - l) / t
        g_inv = hs_sum * row_s / inv
        g_lo_direct = -h_sum * row_s * inv
        # sim enters directly (inside or above) and through s = (sim - lo) / range
        grad_sim = (grad * keep).addcmul_(h, row_s * inv)
        need = [True, True, True, ctx.needs_input_grad[4], ctx.needs_input_grad[5]]
        wrt = [v for v, k in zip(leaves, need) if k]
        got = iter(torch.autograd.grad([inv_rng, l, u], wrt, [g_inv, g_l, g_u], allow_unused=True))
        g_lo, g_hi, g_top, g_l0, g_u0 = [next(got) if k else None for k in need]
        g_lo = g_lo_direct if g_lo is None else g_lo + g_lo_direct
        g_t = g_t.sum_to_size(t.shape) if ctx.needs_input_grad[6] else None
        g_row = [g_lo, g_hi, g_top]
        if ctx.has_index:  # lo, hi, top are entries of sim: their gradients go back there
            rows = torch.arange(grad.shape[0], device=grad.device)
            for g, idx in zip(g_row, index):
                if g is not None:
                    grad_sim.index_put_((rows, idx), g[:, 0], accumulate=True)
            g_row = [None, None, None]
        return (grad_sim, *g_row, g_l0, g_u0, g_t, None, None, None, None)


def softstep_logits(sim: Tensor, params, *, eps: float, min_gap: float, row_stats=None,
                    exclude_diagonal: bool = False) -> Tensor:
    r"""NCA + SoftStep logits (Algorithm 2 of Susman et al. 2025), fused:
    ``sim + log SoftStep(s; l, u, t)`` where SoftStep is not 0, ``finfo.min`` where it is.

    With ``lo``, ``hi`` each row's min and max similarity (self included) and ``top`` its best
    neighbor (self excluded): :math:`s = (sim - lo) / \max(hi - lo, \sqrt{\epsilon_{mach}})`,
    :math:`l = \min(l_0, s_{top}) - \epsilon`, :math:`u = l + \max(u_0 (1 - l), \text{min\_gap})`;
    the log weight is ``logsigmoid((log(s - l) - log(u - s)) / t)`` inside ``(l, u)``, 0 above
    ``u``. The same values as ``sim + log(softstep(s, l, u, t))`` with a masked zero weight,
    in one autograd node whose backward is closed-form (no (Q, n) temporaries of autograd).

    Parameters
    ----------
    sim : Tensor (Q, n)
    params : (l0, u0, t), each (Q, 1) or (1, 1)
    eps, min_gap : float
    row_stats : None or (lo, hi, top), each (Q,)
        None: ``sim`` is a batch against itself (Q = n, self on the diagonal): the row min, max
        and best off-diagonal entry are found here and their gradients flow back into ``sim``.
        Given: values computed elsewhere (inference over a memory bank); they get gradients.
    exclude_diagonal : bool
        Mask the diagonal (self) to ``finfo.min``.

    Returns
    -------
    Tensor (Q, n)
    """
    l0, u0, t = (_as_tensor_like(v, sim) for v in params)
    if row_stats is None:
        n = sim.shape[0]
        with torch.no_grad():
            lo_idx = sim.min(1).indices  # values and indices: ~3x faster than argmin on CPU
            vals, top2 = sim.topk(min(2, sim.shape[1]), dim=1)
            rows = torch.arange(n, device=sim.device)
            hi_idx = top2[:, 0]
            # the best neighbor: the largest entry unless it is self, else the second largest
            top_idx = torch.where(hi_idx == rows, top2[:, -1], hi_idx) if exclude_diagonal else hi_idx
            lo, hi, top = (sim.detach().gather(1, i[:, None]) for i in (lo_idx, hi_idx, top_idx))
        index = (lo_idx, hi_idx, top_idx)
    else:
        lo, hi, top = (v[:, None] for v in row_stats)
        index = None
    if no_graph(sim, lo, hi, top, l0, u0, t):
        inv_rng, l, u = _softstep_bounds(lo, hi, top, l0, u0, float(eps), float(min_gap))
        logits = _logits_only(sim, lo, inv_rng, l, u, t)  # no graph to build: the logits alone
        if exclude_diagonal:
            logits.diagonal().fill_(torch.finfo(sim.dtype).min)
        return logits
    return _SoftStepLogitsFunction.apply(sim, lo, hi, top, l0, u0, t, index, float(eps), float(min_gap),
                                         bool(exclude_diagonal))
