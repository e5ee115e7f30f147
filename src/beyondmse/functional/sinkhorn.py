"""Self entropic optimal transport: the plan of a point set onto itself with a zero diagonal.

The solver runs Sinkhorn iterations on the dual potentials in the log domain, with
epsilon-scaling (annealing the entropic strength from the cost diameter down to ``gamma``)
so that it stays finite and converges for small ``gamma`` and for costs of any scale. Easy
problems (cost spread at most 700 ``gamma``, which covers ROT-Reg's defaults) take the
cheaper kernel-space iterations in float64 instead; both reach the same plan.

Written here rather than calling POT: ``ot.sinkhorn`` solves one problem at a time, has no
zero-diagonal constraint (the released ROT code adds 999 to the diagonal instead), and its
log-domain variant has no epsilon-scaling, which is what keeps ``gamma = 1e-3`` finite and fast.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

__all__ = ["self_entropic_ot"]


def self_entropic_ot(cost: Tensor, gamma: float, n_iter: int = 1000, tol: float = 1e-6,
                     warn: bool = True) -> Tensor:
    r"""Entropic OT plan of a uniform point set onto itself, with no mass on the diagonal.

    Solves (Eqs. 7-8 of Zhang et al., "Improving deep regression with tightness" [1]_)

    .. math::

        T^\star = \operatorname*{arg\,min}_{T \ge 0}\; \langle C, T\rangle
                  + \gamma \sum_{ij} T_{ij} \log T_{ij}
        \quad\text{s.t.}\quad T\mathbf 1 = p,\; T^\top \mathbf 1 = p,\; T_{ii} = 0,

    with :math:`p = \mathbf 1 / n`. The zero diagonal is imposed by setting the log kernel
    :math:`-C_{ii}/\gamma` to :math:`-\infty`. The solution is
    :math:`T_{ij} = \exp((f_i + g_j - C_{ij})/\gamma)` for :math:`i \ne j`; the potentials
    :math:`f, g` are found by alternating log-domain Sinkhorn updates [2]_

    .. math::

        f_i \leftarrow \varepsilon \log p_i - \varepsilon \operatorname{LSE}_{j \ne i}
        \big((g_j - C_{ij})/\varepsilon\big),\qquad
        g_j \leftarrow \varepsilon \log p_j - \varepsilon \operatorname{LSE}_{i \ne j}
        \big((f_i - C_{ij})/\varepsilon\big),

    first with :math:`\varepsilon` annealed geometrically from the largest cost down to
    ``gamma`` (epsilon-scaling, halving at each stage with one update pair per stage, ten
    once :math:`\varepsilon` is below 1/64 of the cost spread; it gives a warm start and is
    what keeps small ``gamma`` cheap), then at :math:`\varepsilon = \gamma` until the row
    marginal error :math:`\|T\mathbf 1 - p\|_1` is below ``tol`` (the column marginal is
    exact after each ``g`` update) or ``n_iter`` updates have run. When the cost spread is at
    most ``KERNEL_SPACE_MAX_RATIO * gamma`` the same updates run on the scalings
    :math:`u = e^{f/\gamma}, v = e^{g/\gamma}` in float64 (:math:`u = p / Kv`,
    :math:`v = p / K^\top u` with :math:`K = e^{-C/\gamma}`), without annealing.

    The plan is returned **without gradient**: ROT-Reg uses plans as constants
    (no backpropagation through Sinkhorn), so the solver runs under ``torch.no_grad``.

    Parameters
    ----------
    cost : Tensor, shape (n, n) or (B, n, n)
        Finite cost matrices (a leading batch dimension solves B independent problems);
        the diagonal is ignored. n >= 2.
    gamma : float
        Entropic regularisation strength, > 0, in the units of ``cost``. What matters is
        ``gamma`` relative to the cost scale: normalise costs (e.g. by their mean) to make a
        single ``gamma`` meaningful across problems. Problems whose cost spread exceeds
        ``1e4 * gamma`` are solved in float64 internally (single precision would lose the
        plan there); the result is cast back to ``cost.dtype``. Sinkhorn needs roughly
        ``spread / gamma`` sweeps on hard instances, so very small ratios are slow.
    n_iter : int, default 1000
        Maximum number of Sinkhorn update pairs at ``gamma`` (after the annealing steps).
    tol : float, default 1e-6
        Tolerance on the L1 error of the row marginal (the marginals sum to 1).
    warn : bool, default True
        Emit a ``RuntimeWarning`` if ``tol`` is not reached within ``n_iter`` updates.

    Returns
    -------
    Tensor, shape like ``cost``
        The plan T (rows and columns sum to 1/n, zero diagonal), same dtype and device as
        ``cost``, detached.

    References
    ----------
    .. [1] S. Zhang, Y. Yan, A. Yao. "Improving deep regression with tightness", ICLR 2025.
       https://github.com/needylove/Regression_tightness
    .. [2] B. Schmitzer. "Stabilized sparse scaling algorithms for entropy regularized transport
       problems", SIAM J. Sci. Comput. 2019. https://arxiv.org/abs/1610.06519

    Examples
    --------
    >>> c = torch.tensor([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> t = self_entropic_ot(c, gamma=0.1)
    >>> torch.allclose(t.sum(-1), torch.full((3,), 1 / 3), atol=1e-5), float(t.diagonal().abs().max())
    (True, 0.0)
    """
    if not isinstance(cost, Tensor):
        raise ValueError(f"cost must be a torch.Tensor, got {type(cost).__name__}")
    if cost.dim() not in (2, 3) or cost.shape[-1] != cost.shape[-2]:
        raise ValueError(f"cost must have shape (n, n) or (B, n, n), got {tuple(cost.shape)}")
    if not cost.is_floating_point():
        raise ValueError(f"cost must be a floating-point tensor, got {cost.dtype}")
    n = cost.shape[-1]
    if n < 2:
        raise ValueError(f"self entropic OT needs n >= 2 points (the diagonal is forbidden), got n={n}")
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    if not (isinstance(n_iter, int) and n_iter >= 1):
        raise ValueError(f"n_iter must be an int >= 1, got {n_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    with torch.no_grad():
        if not torch.isfinite(cost).all():
            raise ValueError("cost contains NaN or inf values")
        squeeze = cost.dim() == 2
        c = cost.detach()
        if squeeze:
            c = c.unsqueeze(0)
        # the exponent arguments reach spread/gamma: past ~1e4 single precision loses the
        # plan (relative error ~ eps * spread / gamma), so such problems are solved in float64
        spread = float(c.amax() - c.amin())
        work = c.double() if c.dtype != torch.float64 and spread / gamma > 1e4 else c
        plan = _solve(work, float(gamma), n_iter, float(tol), warn).to(c.dtype)
        return plan.squeeze(0) if squeeze else plan


#: largest cost spread / gamma solved by the kernel-space iterations: every kernel entry is then
#: at least exp(-700) ~ 1e-304, still a normal float64 (the smallest is 2.2e-308); if the
#: scalings overflow anyway, the solver falls back to the log domain
KERNEL_SPACE_MAX_RATIO = 700.0


def _solve(c: Tensor, gamma: float, n_iter: int, tol: float, warn: bool) -> Tensor:
    b, n, _ = c.shape
    eye = torch.eye(n, dtype=torch.bool, device=c.device)
    # a constant shift of the costs does not change the plan; shifting to a zero minimum
    # keeps the potentials (and hence the exponent arguments) on the scale of the cost spread
    off = c.masked_fill(eye, math.inf)
    c = c - off.amin(dim=(-2, -1), keepdim=True)
    c = c.masked_fill(eye, math.inf)  # log kernel -C/eps = -inf on the diagonal: T_ii = 0
    spread = c.masked_fill(eye, 0.0).amax(dim=(-2, -1))  # (B,)
    if float(spread.max()) / gamma <= KERNEL_SPACE_MAX_RATIO:
        plan = _solve_kernel(c, gamma, n_iter, tol, warn)
        if plan is not None:
            return plan
    log_p = -math.log(n)
    # potentials in cost units (f, g); the updates work on the scaled a = f/eps, b = g/eps
    f = torch.zeros(b, n, 1, dtype=c.dtype, device=c.device)
    g = torch.zeros(b, 1, n, dtype=c.dtype, device=c.device)

    def sweep(f: Tensor, g: Tensor, eps: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        log_k = -c / eps
        a, bb = f / eps, g / eps
        for _ in range(steps):
            a = log_p - torch.logsumexp(log_k + bb, dim=-1, keepdim=True)
            bb = log_p - torch.logsumexp(log_k + a, dim=-2, keepdim=True)
        return a * eps, bb * eps

    # epsilon-scaling: from the cost spread down to gamma, about halving at each step
    top = torch.clamp(spread, min=gamma)[:, None, None]
    n_steps = int(math.ceil(math.log2(float(top.max()) / gamma))) if float(top.max()) > gamma else 0
    for k in range(n_steps):
        frac = k / n_steps
        eps = torch.exp((1 - frac) * torch.log(top) + frac * math.log(gamma))
        # coarse stages need one sweep; fine ones (eps well below the spread) need a few to
        # track the solution, which is what makes gamma ~ 1e-3 converge quickly
        steps = 1 if float((eps / top).min()) > 1 / 64 else 10
        f, g = sweep(f, g, eps, steps)
    log_k = -c / gamma
    a, bb = f / gamma, g / gamma
    check_every = 10
    err = math.inf
    done = 0
    while done < n_iter:
        steps = min(check_every, n_iter - done)
        for _ in range(steps):
            a = log_p - torch.logsumexp(log_k + bb, dim=-1, keepdim=True)
            bb = log_p - torch.logsumexp(log_k + a, dim=-2, keepdim=True)
        done += steps
        plan = torch.exp(log_k + a + bb)
        err = float((plan.sum(-1) - 1.0 / n).abs().sum(-1).max())
        if not math.isfinite(err):
            break
        if err < tol:
            return plan
    plan = torch.exp(log_k + a + bb)
    if warn:
        _warn_unconverged(err, tol, n_iter, gamma)
    return plan


def _solve_kernel(c: Tensor, gamma: float, n_iter: int, tol: float, warn: bool) -> Tensor | None:
    """Plain Sinkhorn scaling ``T = diag(u) K diag(v)`` with ``K = exp(-C / gamma)`` in float64.

    Same fixed point as the log-domain updates, but each update is a batched matrix-vector
    product instead of a log-sum-exp over the whole matrix: several times cheaper on ROT-Reg's
    usual problems (costs normalised by their mean, gamma = 0.1). Only used when the cost
    spread is at most ``KERNEL_SPACE_MAX_RATIO * gamma``, where no kernel entry underflows;
    returns ``None`` if the scalings still over- or underflow (the caller then switches to the
    log domain). (POT's ``ot.sinkhorn`` runs the same iterations, one problem at a time.)
    """
    n = c.shape[-1]
    kernel = torch.exp(-c.double() / gamma)  # exp(-inf) = 0 on the diagonal: T_ii = 0
    # scalings kept as row vectors (B, 1, n): a row vector times a contiguous matrix is several
    # times faster in torch on CPU than a matrix times a column vector
    kernel_t = kernel.transpose(-2, -1).contiguous()
    p = 1.0 / n
    v = torch.ones(c.shape[0], 1, n, dtype=torch.float64, device=c.device)
    check_every, done, err = 10, 0, math.inf
    while done < n_iter:
        for _ in range(min(check_every, n_iter - done)):
            u = p / (v @ kernel_t)  # u_i = p / sum_j K_ij v_j
            v = p / (u @ kernel)  # v_j = p / sum_i u_i K_ij
        done += check_every
        # the column marginal is exact after the v update; measure the row marginal
        err = float((u * (v @ kernel_t) - p).abs().sum(dim=(-2, -1)).max())
        if not math.isfinite(err):
            return None
        if err < tol:
            break
    plan = u.transpose(-2, -1) * kernel * v
    if warn and not err < tol:
        _warn_unconverged(err, tol, n_iter, gamma)
    return plan.to(c.dtype)


def _warn_unconverged(err: float, tol: float, n_iter: int, gamma: float) -> None:
    # stacklevel 4: this helper, the solver, self_entropic_ot, then its caller
    warnings.warn(
        f"self_entropic_ot did not converge: marginal L1 error {err:.3g} > tol={tol:g} after "
        f"n_iter={n_iter} iterations (gamma={gamma:g}); increase n_iter or gamma",
        RuntimeWarning, stacklevel=4,
    )
