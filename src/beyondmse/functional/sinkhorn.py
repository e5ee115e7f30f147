"""Self entropic optimal transport: the plan of a point set onto itself with a zero diagonal.

One solver, three stages, all in float64 whatever the input dtype:

1. **Kernel-space Sinkhorn with absorbed potentials** (Schmitzer 2019): the updates are
   matrix-vector products with the stabilised kernel :math:`\\tilde K_{ij} = e^{(f_i + g_j -
   C_{ij})/\\varepsilon}`; whenever the scalings grow large they are absorbed into the dual
   potentials ``f, g`` and the kernel is rebuilt. This is as cheap per iteration as POT's plain
   ``ot.sinkhorn`` and never overflows.
   The updates are over-relaxed (Thibault et al. 2021): once the first 20 update pairs have
   measured plain Sinkhorn's rate, each potential moves ``omega`` times as far as the plain
   update would, with the ``omega`` that is optimal for a linear iteration of that rate. A
   1-D target plan at ``gamma = 0.1`` (ROT-Reg's default) then converges in 50-60 update
   pairs instead of 300.
2. **Epsilon scaling** when ``gamma`` is below 1/50 of the cost spread: at most 20
   iterations at each of a geometric sequence of strengths from ``spread / 25`` down to
   ``gamma`` give a warm start.
3. **Newton polish** at ``gamma`` (Brauer et al. 2017) once Sinkhorn converges slowly. With
   small ``gamma`` the self plan only links near neighbours, and Sinkhorn then balances mass the
   way a random walk on the neighbour graph mixes: thousands of sweeps for a 1e-6 marginal
   error. Newton's method on the dual solves one ``n x n`` positive-definite system per step
   (O(n^3)) and converges quadratically, typically in 3-8 steps.

The implicit gradient (``grad="implicit"``) reuses the Newton step's linear system: the plan's
derivative with respect to the cost follows from differentiating the optimality conditions
(no backpropagation through iterations).

Written here rather than calling POT: ``ot.sinkhorn`` solves one problem at a time, has no
zero-diagonal constraint (the released ROT code adds 999 to the diagonal instead), returns an
unconverged plan without error for small ``gamma`` (and NaN once whole kernel rows underflow),
and its log-domain solver needs seconds per problem at ``gamma = 0.01``.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["self_entropic_ot"]

#: largest cost spread / gamma solved without epsilon scaling (from uniform scalings, which
#: then range over at most e^50)
SCALING_START_RATIO = 50.0
#: largest cost spread / gamma of ``grad="unrolled"`` (plain kernel iterations): every kernel
#: entry is then at least exp(-700) ~ 1e-304, still a normal float64
KERNEL_SPACE_MAX_RATIO = 700.0
#: Newton steps allowed at ``gamma`` (each one O(n^3)) before giving up and warning
NEWTON_MAX_STEPS = 30
_CHECK_EVERY = 10
#: cap of :func:`_slow_after`
SLOW_AFTER_MAX = 64.0
#: largest over-relaxation factor of :func:`_sinkhorn` (the iteration converges locally for
#: 0 < omega < 2; near 2 it oscillates)
OMEGA_MAX = 1.9
#: smallest increase of omega acted on (so that it settles and the slow-rate test can run)
OMEGA_STEP = 0.05
_GRADS = ("none", "implicit", "unrolled")


def self_entropic_ot(cost: Tensor, gamma: float, n_iter: int = 1000, tol: float = 1e-6,
                     warn: bool = True, grad: str = "none", warm_start: dict | None = None) -> Tensor:
    r"""Entropic OT plan of a uniform point set onto itself, with no mass on the diagonal.

    Solves (Eqs. 7-8 of Zhang et al., "Improving deep regression with tightness" [1]_)

    .. math::

        T^\star = \operatorname*{arg\,min}_{T \ge 0}\; \langle C, T\rangle
                  + \gamma \sum_{ij} T_{ij} \log T_{ij}
        \quad\text{s.t.}\quad T\mathbf 1 = p,\; T^\top \mathbf 1 = p,\; T_{ii} = 0,

    with :math:`p = \mathbf 1 / n`. The solution is :math:`T_{ij} = \exp((f_i + g_j -
    C_{ij})/\gamma)` for :math:`i \ne j` and 0 on the diagonal; the dual potentials
    :math:`f, g` are found by Sinkhorn's alternating updates [2]_

    .. math::

        f_i \leftarrow -\gamma \log \sum_{j \ne i} e^{(g_j - C_{ij})/\gamma} + \gamma \log p_i,
        \qquad
        g_j \leftarrow -\gamma \log \sum_{i \ne j} e^{(f_i - C_{ij})/\gamma} + \gamma \log p_j,

    run as over-relaxed [4]_ matrix-vector products on an absorbed kernel (never overflowing),
    with epsilon scaling when ``gamma`` is below 1/50 of the cost spread, and finished by
    Newton steps on the dual [3]_ when the updates converge slowly (small ``gamma``), until the
    L1 error of the marginals, :math:`\|T\mathbf 1 - p\|_1 + \|T^\top\mathbf 1 - p\|_1`, is below ``tol``.
    Costs are handled in float64 internally; the plan is cast back to ``cost.dtype``.

    Parameters
    ----------
    cost : Tensor, shape (n, n) or (B, n, n)
        Finite cost matrices (a leading batch dimension solves B independent problems);
        the diagonal is ignored. n >= 2.
    gamma : float
        Entropic strength, > 0, in the units of ``cost``. Only ``gamma`` relative to the cost
        scale matters: normalise costs (e.g. by their mean) to make one ``gamma`` meaningful
        across problems. Any ratio solves to ``tol`` (at ``gamma`` = 1e-3 of the mean cost,
        n = 1,024: a few seconds on one CPU core, mostly in Newton steps).
    n_iter : int, default 1000
        Maximum number of Sinkhorn update pairs at ``gamma`` (Newton steps, at most
        ``NEWTON_MAX_STEPS``, are counted separately).
    tol : float, default 1e-6
        Tolerance on the L1 marginal error (both marginals together; they sum to 2).
    warn : bool, default True
        Emit a ``RuntimeWarning`` if ``tol`` is not reached.
    grad : {"none", "implicit", "unrolled"}, default "none"
        ``"none"``: the plan is returned detached (ROT-Reg's default treats it as a constant).
        ``"implicit"``: differentiable in ``cost`` through the optimality conditions of the
        converged plan (an O(n^3) solve in backward; exact at convergence).
        ``"unrolled"``: autograd through plain kernel Sinkhorn iterations started from uniform
        scalings, as the released ROT code does with POT (needs spread / gamma <= 700; memory
        grows with the number of iterations).
    warm_start : dict, optional
        A dict owned by the caller that carries the dual potentials from one call to the next:
        when it holds potentials of the same shape they are the starting point (no epsilon
        scaling), and the final potentials are written back into it. For a sequence of
        slowly changing costs over the same points (full-batch training) this cuts the
        iterations several-fold; the plan is the same to ``tol``. Ignored with
        ``grad="unrolled"`` (which always starts from uniform scalings, as POT does).

    Returns
    -------
    Tensor, shape like ``cost``
        The plan T (rows and columns sum to 1/n, zero diagonal), same dtype and device as
        ``cost``.

    References
    ----------
    .. [1] S. Zhang, Y. Yan, A. Yao. "Improving deep regression with tightness", ICLR 2025.
       https://github.com/needylove/Regression_tightness
    .. [2] B. Schmitzer. "Stabilized sparse scaling algorithms for entropy regularized transport
       problems", SIAM J. Sci. Comput. 2019. https://arxiv.org/abs/1610.06519
    .. [3] C. Brauer, C. Clason, D. Lorenz, B. Wirth. "A Sinkhorn-Newton method for entropic
       optimal transport", 2017. https://arxiv.org/abs/1710.06635
    .. [4] A. Thibault, L. Chizat, C. Dossal, N. Papadakis. "Overrelaxed Sinkhorn-Knopp algorithm
       for regularized optimal transport", Algorithms 14(5), 2021. https://arxiv.org/abs/1711.01851

    Examples
    --------
    >>> c = torch.tensor([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> t = self_entropic_ot(c, gamma=0.1)
    >>> torch.allclose(t.sum(-1), torch.full((3,), 1 / 3), atol=1e-6), float(t.diagonal().abs().max())
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
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    if grad not in _GRADS:
        raise ValueError(f"grad must be one of {_GRADS}, got {grad!r}")
    if not bool(torch.isfinite(cost.detach()).all()):
        raise ValueError("cost contains NaN or inf values")
    squeeze = cost.dim() == 2
    c = cost.unsqueeze(0) if squeeze else cost
    if grad == "unrolled":
        plan = _unrolled(c, float(gamma), n_iter, float(tol), warn)
    elif grad == "implicit" and c.requires_grad:
        plan = _ImplicitPlan.apply(c, float(gamma), n_iter, float(tol), warn, warm_start)
    else:
        with torch.no_grad():
            plan = _solve(c.detach(), float(gamma), n_iter, float(tol), warn, warm_start).to(c.dtype)
    return plan.squeeze(0) if squeeze else plan


# --------------------------------------------------------------------------- solver
def _prepare(c: Tensor) -> tuple[Tensor, Tensor]:
    """float64 costs shifted to a zero off-diagonal minimum (the plan does not change), with
    +inf on the diagonal (so the kernel is exactly 0 there); and each problem's spread (B,)."""
    n = c.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=c.device)
    c = c.double().masked_fill(eye, math.inf)
    c = c - c.amin(dim=(-2, -1), keepdim=True)
    spread = c.masked_fill(eye, 0.0).amax(dim=(-2, -1))
    return c, spread


def _solve(cost: Tensor, gamma: float, n_iter: int, tol: float, warn: bool,
           warm_start: dict | None = None) -> Tensor:
    """The plan (B, n, n) in float64."""
    c, spread = _prepare(cost)
    b, n, _ = c.shape
    f = torch.zeros(b, n, 1, dtype=c.dtype, device=c.device)
    g = torch.zeros(b, 1, n, dtype=c.dtype, device=c.device)
    top = float(spread.max())
    if warm_start is not None and warm_start.get("f") is not None and warm_start["f"].shape == f.shape:
        f, g, err = _polish(c, gamma, warm_start["f"].to(f), warm_start["g"].to(g), n_iter, tol)
        if math.isfinite(err):
            return _finish(c, gamma, f, g, err, n_iter, tol, warn, warm_start)
        f, g = torch.zeros_like(f), torch.zeros_like(g)  # stale potentials: start cold
    if top / gamma > SCALING_START_RATIO:
        # epsilon scaling: warm starts from strengths where the uniform start is a good guess
        eps = top / (SCALING_START_RATIO / 2.0)
        while eps > 2.0 * gamma:
            f, g, _ = _sinkhorn(c, eps, f, g, max_iter=20, tol=1e-2)
            eps /= 2.0
    f, g, err = _polish(c, gamma, f, g, n_iter, tol)
    return _finish(c, gamma, f, g, err, n_iter, tol, warn, warm_start)


def _polish(c: Tensor, gamma: float, f: Tensor, g: Tensor, n_iter: int, tol: float) -> tuple[Tensor, Tensor, float]:
    """Sinkhorn at ``gamma`` from potentials ``f, g``, then Newton steps if it is slow."""
    f, g, err = _sinkhorn(c, gamma, f, g, max_iter=n_iter, tol=tol, give_up_when_slow=True)
    if not err < tol:
        f, g, err = _newton(c, gamma, f, g, tol)
    if not math.isfinite(err):
        # Newton could not run (e.g. a plan graph that falls apart): spend the rest on Sinkhorn
        f, g, err = _sinkhorn(c, gamma, f, g, max_iter=n_iter, tol=tol)
    return f, g, err


def _finish(c: Tensor, gamma: float, f: Tensor, g: Tensor, err: float, n_iter: int, tol: float, warn: bool,
            warm_start: dict | None) -> Tensor:
    if warn and not err < tol:
        _warn_unconverged(err, tol, n_iter, gamma, stacklevel=5)
    if warm_start is not None and math.isfinite(err):
        warm_start["f"], warm_start["g"] = f, g
    return torch.exp((f + g - c) / gamma)


def _sinkhorn(c: Tensor, eps: float, f: Tensor, g: Tensor, max_iter: int, tol: float,
              give_up_when_slow: bool = False) -> tuple[Tensor, Tensor, float]:
    """Sinkhorn update pairs at strength ``eps`` on the absorbed kernel, from potentials
    ``f`` (B, n, 1) and ``g`` (B, 1, n). Returns the new potentials and the marginal error
    (``inf`` if the scalings could not be kept finite).

    Over-relaxed (Thibault et al. 2021): after the first two checks each scaling update is
    ``u <- u^(1 - omega) (p / K v)^omega``, a step ``omega`` times the plain one in log space
    (``f <- f + omega (f_plain - f)``), with ``omega`` from :func:`_next_omega`. The fixed point
    is the same.

    ``give_up_when_slow``: stop early once the observed rate predicts more than ~n further
    update pairs (Newton is then cheaper).
    """
    n = c.shape[-1]

    def scaled_kernels(f, g):
        # the kernel times n = 1 / p: a plain update is then u = 1 / (v K^T n), one reciprocal
        kernel = torch.exp((f + g - c) / eps).mul_(n)
        return kernel, kernel.transpose(-2, -1).contiguous()

    kernel, kernel_t = scaled_kernels(f, g)
    # scalings as row vectors (B, 1, n): a row vector times a contiguous matrix is several times
    # faster in torch on CPU than a matrix times a column vector
    u = v = torch.ones_like(g)
    good = (f, g, u, v)
    every, done, err, prev, best, omega = _CHECK_EVERY, 0, math.inf, math.inf, math.inf, 1.0
    while done < max_iter:
        for _ in range(min(every, max_iter - done)):
            if omega == 1.0:
                u = (v @ kernel_t).reciprocal_()  # u_i = p / sum_j K_ij v_j
                v = (u @ kernel).reciprocal_()  # v_j = p / sum_i u_i K_ij
            else:  # u^(1 - omega) (p / K v)^omega
                u = (v @ kernel_t).pow_(-omega).mul_(u.pow(1.0 - omega))
                v = (u @ kernel).pow_(-omega).mul_(v.pow(1.0 - omega))
        done += every
        # both marginals (plain updates leave the column one exact, over-relaxed ones do not);
        # with the kernel scaled by n, u (K v) n - 1 is n times the marginal's error
        err = float(((u * (v @ kernel_t) - 1.0).abs().sum(dim=(-2, -1))
                     + (v * (u @ kernel) - 1.0).abs().sum(dim=(-2, -1))).max()) / n
        logs = max(float(u.log().abs().max()), float(v.log().abs().max()))
        if not (math.isfinite(err) and math.isfinite(logs)):
            if every == 1:
                return good[0], good[1], math.inf
            # the scalings ran out of range between two checks: go back, absorb every update
            f, g, u, v = good
            kernel, kernel_t = scaled_kernels(f, g)
            every, err, omega = 1, math.inf, 1.0
            continue
        if err < tol:
            break
        if logs > 30.0:  # absorb the scalings into the potentials before they lose range
            f, g = f + eps * u.log().transpose(-2, -1), g + eps * v.log()
            kernel, kernel_t = scaled_kernels(f, g)
            u = v = torch.ones_like(g)
        good = (f, g, u, v)
        # over-relaxed updates fall non-monotonically and speed up after omega grows: judge the
        # rate only over a stretch run at an unchanged omega that has not just risen
        settled = not (omega > 1.0 and err >= prev)
        if every == _CHECK_EVERY and prev < math.inf:
            new_omega = _next_omega(omega, err, prev, best, done)
            settled = settled and new_omega <= omega
            omega = new_omega
        best = min(best, err)
        if give_up_when_slow and done >= 3 * _CHECK_EVERY and err < 1.0 and prev < math.inf and settled:
            rate = min(err / prev, 0.999) if every == _CHECK_EVERY else 0.999
            if rate > 0.0 and math.log(tol / err) / math.log(rate) * _CHECK_EVERY > _slow_after(n):
                break
        prev = err
    return f + eps * u.log().transpose(-2, -1), g + eps * v.log(), err


def _next_omega(omega: float, err: float, prev: float, best: float, done: int) -> float:
    """The over-relaxation factor after a check, from the error ``err`` now and ``prev`` one
    check (``_CHECK_EVERY`` update pairs) earlier, ``best`` the smallest error before this check.

    Near the solution Sinkhorn is a linear iteration; its plain error rate ``mu2`` per update
    pair gives the optimal factor ``2 / (1 + sqrt(1 - mu2))`` (Young's SOR theory, which
    Thibault et al. 2021, Sec. 3, carry over to Sinkhorn). ``mu2`` is measured from the second
    check on: directly while ``omega = 1``, and under over-relaxation from the observed rate
    ``lam`` through Young's relation ``(lam + omega - 1)^2 = lam omega^2 mu2``. Early checks see a
    faster transient rate than the asymptotic one, so ``omega`` only grows with new estimates
    (by more than ``OMEGA_STEP``, to at most ``OMEGA_MAX``); if the error climbs tenfold above
    its best, ``omega`` is halved towards 1. Written here: POT's Sinkhorn solvers have no
    over-relaxation.
    """
    if not 0.0 < err < prev:
        return 1.0 + (omega - 1.0) / 2.0 if omega > 1.0 and err > 10.0 * best else omega
    lam = (err / prev) ** (1.0 / _CHECK_EVERY)
    if omega == 1.0:
        if done < 2 * _CHECK_EVERY:
            return omega
        mu2 = lam
    else:
        mu2 = (lam + omega - 1.0) ** 2 / (lam * omega * omega)
    if not 0.0 < mu2 < 1.0:
        return omega
    target = min(OMEGA_MAX, 2.0 / (1.0 + math.sqrt(1.0 - mu2)))
    return target if target > omega + OMEGA_STEP else omega


def _slow_after(n: int) -> float:
    """Predicted further Sinkhorn update pairs beyond which Newton steps are cheaper: about n
    (one pair costs ~4 n^2 flops, a Newton step ~n^3 / 3 for its Cholesky plus n^3 for the
    Schur complement, and Newton takes a handful of steps), but at most SLOW_AFTER_MAX: at
    small n a pair costs a fixed ~50-100 us of per-operation overhead rather than flops."""
    return min(float(n), SLOW_AFTER_MAX)


def _schur_solve(t: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor] | None:
    """Solve ``[[diag(T 1), T], [T^T, diag(T^T 1)]] [x; y] = [a; b]`` for ``T`` (B, n, n),
    ``a, b`` (B, n) with ``sum(a) = sum(b)``.

    The matrix is the dual Hessian of the entropic problem (up to 1/gamma); it is singular along
    ``(1, -1)`` (shifting f up and g down leaves T unchanged), so the gauge ``sum(y) = 0`` is
    fixed by adding ``(mean(T^T 1) / n) 1 1^T`` to the Schur complement
    ``S = diag(T^T 1) - T^T diag(1 / T 1) T`` (positive semi-definite with null space 1).
    Returns ``(x, y)``, or None if the factorisation fails.
    """
    n = t.shape[-1]
    r = t.sum(-1)
    col = t.sum(-2)
    if not bool((r > 0).all()):
        return None
    t_r = t / r[..., :, None]
    schur = torch.diag_embed(col) - t.transpose(-2, -1) @ t_r
    schur = schur + (col.mean(-1) / n)[..., None, None]
    rhs = b - (a[..., None, :] @ t_r)[..., 0, :]
    chol, info = torch.linalg.cholesky_ex(schur)
    if bool((info != 0).any()):
        # a plan whose neighbour graph is (numerically) disconnected: damp the singular block
        scale = col.mean(-1)[..., None, None] * 1e-10
        chol, info = torch.linalg.cholesky_ex(schur + scale * torch.eye(n, dtype=t.dtype, device=t.device))
        if bool((info != 0).any()):
            return None
    y = torch.cholesky_solve(rhs[..., None], chol)[..., 0]
    x = (a - (t @ y[..., None])[..., 0]) / r
    return x, y


def _newton(c: Tensor, gamma: float, f: Tensor, g: Tensor, tol: float) -> tuple[Tensor, Tensor, float]:
    """Newton ascent on the dual :math:`D(f, g) = p^\\top f + p^\\top g - \\gamma \\sum_{ij} T_{ij}`
    with an Armijo backtracking line search; returns the potentials and the marginal error."""
    n = c.shape[-1]
    p = 1.0 / n

    def evaluate(f, g):
        t = torch.exp((f + g - c) / gamma)
        dual = p * (f.sum(dim=(-2, -1)) + g.sum(dim=(-2, -1))) - gamma * t.sum(dim=(-2, -1))
        return t, dual

    t, dual = evaluate(f, g)
    err = math.inf
    for _ in range(NEWTON_MAX_STEPS + 1):
        rf, rg = p - t.sum(-1), p - t.sum(-2)
        err = float((rf.abs().sum(-1) + rg.abs().sum(-1)).max())
        if not math.isfinite(err) or err < tol:
            break
        step = _schur_solve(t, gamma * rf, gamma * rg)
        if step is None:
            return f, g, math.inf
        df, dg = step[0][..., :, None], step[1][..., None, :]
        slope = (rf * step[0]).sum(-1) + (rg * step[1]).sum(-1)
        alpha = 1.0
        while alpha > 1e-6:
            t_new, dual_new = evaluate(f + alpha * df, g + alpha * dg)
            # Armijo on each problem; problems already converged keep their potentials
            if bool(torch.isfinite(dual_new).all()) and bool((dual_new >= dual + 1e-4 * alpha * slope
                                                                - 1e-13 * dual.abs()).all()):
                break
            alpha /= 2.0
        else:  # no ascent left: round-off level, or a bad direction; report where it stands
            return f, g, err
        f, g, t, dual = f + alpha * df, g + alpha * dg, t_new, dual_new
    return f, g, err


# --------------------------------------------------------------------------- gradients
class _ImplicitPlan(torch.autograd.Function):
    """The converged plan with the implicit-function-theorem VJP.

    Differentiating the marginal constraints of :math:`T_{ij} = e^{(f_i + g_j - C_{ij})/\\gamma}`
    gives, for an upstream gradient G,

    .. math::

        \\frac{\\partial L}{\\partial C_{ij}} = \\frac{T_{ij}}{\\gamma}(\\alpha_i + \\beta_j - G_{ij}),
        \\quad H \\begin{bmatrix}\\alpha\\\\ \\beta\\end{bmatrix}
        = \\begin{bmatrix}(G \\odot T)\\mathbf 1\\\\ (G \\odot T)^\\top \\mathbf 1\\end{bmatrix},

    with H the dual Hessian of :func:`_schur_solve` (zero on the forbidden diagonal).
    """

    @staticmethod
    def forward(ctx, cost, gamma, n_iter, tol, warn, warm_start):
        plan = _solve(cost.detach(), gamma, n_iter, tol, warn, warm_start)
        ctx.save_for_backward(plan)
        ctx.gamma = gamma
        return plan.to(cost.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_plan):
        (t,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        gt = grad_plan.double() * t
        sol = _schur_solve(t, gt.sum(-1), gt.sum(-2))
        if sol is None:
            raise FloatingPointError("self_entropic_ot: the implicit gradient's linear system is singular")
        alpha, beta = sol
        grad_cost = t * (alpha[..., :, None] + beta[..., None, :] - grad_plan.double()) / ctx.gamma
        return grad_cost.to(grad_plan.dtype), None, None, None, None, None


def _unrolled(cost: Tensor, gamma: float, n_iter: int, tol: float, warn: bool) -> Tensor:
    """Plain kernel Sinkhorn from uniform scalings, recorded by autograd (POT's ``ot.sinkhorn``
    as used by the released ROT code); float64 internally."""
    n = cost.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=cost.device)
    c = cost.double()
    c = c - c.masked_fill(eye, math.inf).amin(dim=(-2, -1), keepdim=True)
    spread = float(c.detach().masked_fill(eye, 0.0).amax())
    if spread / gamma > KERNEL_SPACE_MAX_RATIO:
        raise ValueError(f"grad='unrolled' runs plain kernel iterations, which underflow when the cost "
                         f"spread / gamma exceeds {KERNEL_SPACE_MAX_RATIO:g} (here {spread / gamma:.3g}); "
                         "use grad='implicit'")
    kernel = torch.exp(-c / gamma).masked_fill(eye, 0.0)
    p = 1.0 / n
    v = torch.ones(c.shape[0], 1, n, dtype=c.dtype, device=c.device)
    done, err = 0, math.inf
    while done < n_iter:
        for _ in range(min(_CHECK_EVERY, n_iter - done)):
            u = p / (v @ kernel.transpose(-2, -1))
            v = p / (u @ kernel)
        done += _CHECK_EVERY
        err = float((u * (v @ kernel.transpose(-2, -1)) - p).detach().abs().sum(dim=(-2, -1)).max())
        if err < tol:
            break
    if warn and not err < tol:
        _warn_unconverged(err, tol, n_iter, gamma)
    return (u.transpose(-2, -1) * kernel * v).to(cost.dtype)


def _warn_unconverged(err: float, tol: float, n_iter: int, gamma: float, stacklevel: int = 4) -> None:
    # stacklevel: the frames between this helper and self_entropic_ot's caller
    warnings.warn(
        f"self_entropic_ot did not converge: marginal L1 error {err:.3g} > tol={tol:g} after "
        f"n_iter={n_iter} Sinkhorn iterations and {NEWTON_MAX_STEPS} Newton steps (gamma={gamma:g}); "
        "the plan is approximate",
        RuntimeWarning, stacklevel=stacklevel,
    )
