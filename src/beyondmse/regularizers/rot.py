"""ROT-Reg: the self entropic optimal-transport regularizer of "Improving deep regression with
tightness" (Zhang, Yan, Yao, ICLR 2025)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..checks import check_batch, check_positive
from ..functional.distances import pairwise_distances
from ..functional.sinkhorn import KERNEL_SPACE_MAX_RATIO, self_entropic_ot
from .base import Regularizer

__all__ = ["ROTReg"]

_NORMALIZATIONS = ("mean", "released")
_PLAN_GRADS = ("none", "implicit", "unrolled")
_OBJECTIVES = ("eq9", "kl")


def _neg_entropy(t: Tensor) -> Tensor:
    r""":math:`\sum_{ij} T_{ij} \log T_{ij}` with :math:`0 \log 0 = 0` (the forbidden diagonal)."""
    return (t * t.clamp_min(torch.finfo(t.dtype).tiny).log()).sum()


def _mean_off_diagonal(c: Tensor) -> Tensor:
    n = c.shape[-1]
    return c.sum(dim=(-2, -1)) / (n * (n - 1))


class ROTReg(Regularizer):
    r"""ROT-Reg: align the self entropic OT plans of the embeddings and the targets (Eq. 9).

    For a batch of embeddings ``z`` (N, d) and targets ``y`` (N, m), with Euclidean cost
    matrices :math:`C^Z` and :math:`C^Y` (normalised, see below), the plans
    :math:`T^Z = T(C^Z)` and :math:`T^Y = T(C^Y)` of :func:`~beyondmse.functional.self_entropic_ot`
    (Eqs. 7-8: uniform marginals, zero diagonal, entropic strength ``gamma``) enter

    .. math::

        L_{ot} = \big|\langle C^Z, T^Y\rangle - \langle C^Z, T^Z\rangle\big| .

    The loss is small when moving the feature manifold's mass along the *target* manifold's
    plan costs as little as along its own plan, i.e. when the local neighbourhood structure of
    the features follows the targets (tightness). :math:`T^Y` is a constant.

    **Gradient path** (``plan_grad``). The paper says only that ROT-Reg "updates :math:`C^Z`
    through gradient backpropagation". ``"none"`` (default) treats :math:`T^Z` as a constant:
    the gradient is :math:`\pm(T^Y - T^Z)` pulled back through :math:`C^Z`. The released code
    calls POT's ``ot.sinkhorn`` on tensors that carry gradients, so its gradient also flows
    through :math:`T^Z` (autograd through the Sinkhorn iterations): ``"unrolled"`` reproduces
    that, ``"implicit"`` gives the exact derivative of the converged plan instead (the two
    agree once the iterations converge; implicit costs one O(N^3) solve per backward).

    **Cost normalisation** (``normalization``). The entropic plan depends on ``gamma`` only
    through ``gamma / scale(C)``, and the paper does not say how the costs are scaled.

    * ``"mean"`` (default): :math:`C^Z_{ij} = \|z_i - z_j\| / \overline{\|z_k - z_l\|}` and the
      same for :math:`C^Y`: each cost divided by the mean of its off-diagonal entries (the
      gradient flows through the normalisation, making :math:`L_{ot}` invariant to rescaling
      ``z``). ``gamma`` is then the same relative temperature for both plans: ``0.1`` is a
      tenth of the average distance, whatever the units of ``y`` or the scale of ``z``, and
      :math:`L_{ot} = 0` exactly when ``z`` equals ``y`` up to scale and rigid motions.
    * ``"released"``: the authors' released code (``ICLR25_OT.py``). The features are divided
      by their mean *uncentred* norm, :math:`\tilde z_i = z_i / \frac1N\sum_k \|z_k\|`, and
      :math:`C^Z_{ij} = \|\tilde z_i - \tilde z_j\|`; the target cost is
      :math:`C^Y_{ij} = \|y_i - y_j\| / \max_{kl} \|y_k - y_l\|`. The same ``gamma`` is thus a
      different relative temperature for each plan (and depends on where the features sit
      relative to the origin). The released code also puts 999 on both diagonals instead of
      forbidding them; with ``gamma = 0.1`` that is the same plan (:math:`e^{-9990}` is 0).

    Other differences from the released code: it solves with POT's plain ``ot.sinkhorn``
    (at most 1,000 iterations, stopping at a 1e-9 L2 column error, no warning when it stops
    early); this solver runs to ``tol`` and warns otherwise. It samples 200 points per step
    (``max_points=200``). :meth:`released` builds that configuration.

    Parameters
    ----------
    weight : float, default 1.0
        :math:`\lambda` of Eq. 10 (paper: 100 for age estimation, 10 for depth, with raw-unit
        targets and L1 losses; the released comment says "set a large weight").
    gamma : float, default 0.1
        Entropic strength, > 0, in the normalised cost units above.
    n_iter : int, default 1000
        Sinkhorn iteration cap per solve (the solver adds Newton steps when Sinkhorn is slow).
    tol : float, default 1e-6
        L1 marginal error at which a plan counts as converged.
    max_points : int or None, default 512
        Subsample the batch to this many points (uniformly, with torch's global RNG) to bound
        the O(N^2) memory and O(N^2)-O(N^3) time; the released code samples 200. ``None``
        uses the whole batch. A batch of 1,024 therefore works on 512 points by default.
    normalization : {"mean", "released"}, default "mean"
    plan_grad : {"none", "implicit", "unrolled"}, default "none"
        (None means "none".)
    objective : {"eq9", "kl"}, default "eq9"
        ``"eq9"`` is the paper's loss. ``"kl"`` (not in the paper) is
        :math:`\gamma\,\mathrm{KL}(T^Y \| T^Z) = \langle C^Z, T^Y - T^Z\rangle
        + \gamma \sum (T^Y \log T^Y - T^Z \log T^Z)`, which is zero only when the plans
        match; see Notes. Its exact gradient in :math:`C^Z` is :math:`T^Y - T^Z` (``plan_grad``
        does not apply).

    Attributes
    ----------
    unconverged_ : int
        Number of calls whose plans did not reach ``tol`` (the first one warns).

    Notes
    -----
    **Why Eq. 9 can vanish while the plans differ.** Since :math:`T^Z` minimises
    :math:`F(T) = \langle C^Z, T\rangle - \gamma H(T)` (with :math:`H(T) = -\sum T\log T`)
    under the same constraints that :math:`T^Y` satisfies,
    :math:`F(T^Y) - F(T^Z) = \gamma\,\mathrm{KL}(T^Y \| T^Z)`, hence

    .. math::

        \langle C^Z, T^Y\rangle - \langle C^Z, T^Z\rangle
        = \gamma\,\big[\mathrm{KL}(T^Y \| T^Z) - \big(H(T^Z) - H(T^Y)\big)\big].

    When the target plan is sharper than the feature plan (:math:`H(T^Y) < H(T^Z)`, e.g.
    features that are not yet tight), this is zero at :math:`\mathrm{KL} = H(T^Z) - H(T^Y) > 0`:
    Eq. 9 is minimised on a surface of plans that do not match, and on its far side the sign
    flips and the constant-plan gradient :math:`\pm(T^Y - T^Z)` points away from matching.
    ``objective="kl"`` drops the entropy term.

    Needs at least 3 samples in the batch (2 points have a unique zero-diagonal plan);
    raises ``ValueError`` otherwise. Works for any target dimension m. When the targets of a
    call equal those of the previous call (full-batch training), :math:`T^Y` is reused and
    the solve of :math:`T^Z` starts from the previous call's dual potentials (same plan to
    ``tol``, several times fewer iterations).

    References
    ----------
    S. Zhang, Y. Yan, A. Yao. "Improving deep regression with tightness", ICLR 2025.
    https://github.com/needylove/Regression_tightness

    Examples
    --------
    >>> y = torch.randn(32, 3)
    >>> reg = ROTReg(weight=1.0, gamma=0.1)
    >>> float(reg(2 * y, y)) < 1e-4
    True
    """

    name = "rot"

    def __init__(self, weight: float = 1.0, gamma: float = 0.1, n_iter: int = 1000, tol: float = 1e-6,
                 max_points: int | None = 512, normalization: str = "mean", plan_grad: str = "none",
                 objective: str = "eq9"):
        super().__init__(weight)
        check_positive("gamma", gamma)
        check_positive("tol", tol)
        if not (isinstance(n_iter, int) and n_iter >= 1):
            raise ValueError(f"n_iter must be an int >= 1, got {n_iter!r}")
        if max_points is not None and not (isinstance(max_points, int) and max_points >= 3):
            raise ValueError(f"max_points must be an int >= 3 or None, got {max_points!r}")
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        if plan_grad is None:  # suite files spell "none" as None
            plan_grad = "none"
        if plan_grad not in _PLAN_GRADS:
            raise ValueError(f"plan_grad must be one of {_PLAN_GRADS}, got {plan_grad!r}")
        if objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
        self.objective = objective
        self.gamma, self.n_iter, self.tol, self.max_points = float(gamma), n_iter, float(tol), max_points
        self.normalization, self.plan_grad = normalization, plan_grad
        self.unconverged_ = 0
        self._target_plan: tuple[Tensor, Tensor] | None = None  # (y, T^Y) of the last call
        self._unconverged_call = False
        self._feature_potentials: dict = {}  # dual potentials of the last T^Z (warm start)

    @classmethod
    def released(cls, weight: float = 1.0, gamma: float = 0.1, **kwargs) -> ROTReg:
        """The configuration of the authors' released code: ``normalization="released"``,
        ``plan_grad="unrolled"``, 200 points per call (any of them can be overridden)."""
        kwargs = {"normalization": "released", "plan_grad": "unrolled", "max_points": 200, **kwargs}
        return cls(weight, gamma, **kwargs)

    # ------------------------------------------------------------------ costs and plans
    def costs(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised costs ``(C^Z, C^Y)``, both (N, N) with a zero diagonal; ``C^Z`` carries
        the gradient of ``z``, ``C^Y`` none."""
        tiny = torch.finfo(z.dtype).tiny
        y = y.detach().to(z.dtype)
        if self.normalization == "mean":
            cz = pairwise_distances(z)
            cz = cz / _mean_off_diagonal(cz).clamp_min(tiny)
            cy = pairwise_distances(y)
            cy = cy / _mean_off_diagonal(cy).clamp_min(tiny)
        else:
            cz = pairwise_distances(z / z.norm(dim=1).mean().clamp_min(tiny))
            cy = pairwise_distances(y)
            cy = cy / cy.max().clamp_min(tiny)
        return cz, cy

    def plans(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(C^Z, T^Z, T^Y)`` for a batch: the normalised feature cost (with gradient), the
        feature plan (with gradient unless ``plan_grad="none"``) and the constant target plan."""
        cz, cy = self.costs(z, y)
        # T^Y is solved on its own (not batched with T^Z), so that reusing it gives exactly the
        # values a fresh solve would
        ty = self._cached_target_plan(y, cz.dtype)
        if ty is None:
            ty = self._solve(cy, "none")
            self._target_plan = (y.detach().clone(), ty)
            self._feature_potentials = {}  # other points: the last T^Z's potentials do not apply
        grad = self._grad_mode(cz)
        tz = self._solve(cz if grad != "none" else cz.detach(), grad, warm_start=self._feature_potentials)
        self._count_unconverged()
        return cz, tz, ty

    def _cached_target_plan(self, y: Tensor, dtype: torch.dtype) -> Tensor | None:
        if self._target_plan is None:
            return None
        y_old, ty = self._target_plan
        same = y_old.shape == y.shape and y_old.device == y.device and ty.dtype == dtype
        return ty if same and torch.equal(y_old, y.detach()) else None

    def _grad_mode(self, cz: Tensor) -> str:
        if self.plan_grad != "unrolled":
            return self.plan_grad
        spread = float(cz.detach().amax())  # the off-diagonal minimum is >= 0
        if spread / self.gamma <= KERNEL_SPACE_MAX_RATIO:
            return "unrolled"
        if self.unconverged_ == 0:
            warnings.warn(f"ROTReg: plan_grad='unrolled' would underflow at gamma={self.gamma:g} "
                          f"(cost spread {spread:.3g}); using the implicit gradient for this call",
                          RuntimeWarning, stacklevel=4)
        return "implicit"

    def _solve(self, costs: Tensor, grad: str, warm_start: dict | None = None) -> Tensor:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = self_entropic_ot(costs, self.gamma, n_iter=self.n_iter, tol=self.tol, grad=grad,
                                 warm_start=warm_start)
        if any(issubclass(w.category, RuntimeWarning) for w in caught):
            self._unconverged_call = True
        return t

    def _count_unconverged(self) -> None:
        if self._unconverged_call:
            if self.unconverged_ == 0:
                warnings.warn(f"ROTReg: Sinkhorn did not reach tol={self.tol:g} with n_iter={self.n_iter} "
                              f"and gamma={self.gamma:g}; the plans are approximate (warned once; "
                              "see unconverged_)", RuntimeWarning, stacklevel=4)
            self.unconverged_ += 1
        self._unconverged_call = False

    # ------------------------------------------------------------------ loss
    def penalty(self, z: Tensor, y: Tensor) -> Tensor:
        check_batch("ROTReg", z, y)
        if self.max_points is not None and len(z) > self.max_points:
            idx = torch.randperm(len(z)).to(z.device)[: self.max_points]
            z, y = z[idx], y[idx]
        cz, tz, ty = self.plans(z, y)
        if self.objective == "kl":
            # gamma KL(T^Y | T^Z) = F(T^Y) - F(T^Z) with F(T) = <C^Z, T> + gamma sum T log T; its
            # gradient in C^Z is exactly T^Y - T^Z (envelope theorem: T^Z minimises F)
            tz = tz.detach()
            return (cz * (ty - tz)).sum() + self.gamma * (_neg_entropy(ty) - _neg_entropy(tz))
        return ((cz * ty).sum() - (cz * tz).sum()).abs()

    @torch.no_grad()
    def diagnostics(self, z: Tensor, y: Tensor) -> dict[str, float]:
        """How far the plans are from matching, on a held-out set (e.g. the validation split).

        Returns ``rot_plan_l1`` :math:`= \\|T^Y - T^Z\\|_1` (0 when the plans match, at most 2)
        and ``rot_loss`` (the unweighted :math:`L_{ot}`), on at most ``max_points`` points (the
        first ones: deterministic). Eq. 9 can be near 0 while the plans still differ, which is
        why both are reported.
        """
        check_batch("ROTReg", z, y)
        if self.max_points is not None and len(z) > self.max_points:
            z, y = z[: self.max_points], y[: self.max_points]
        cz, cy = self.costs(z, y)
        t = self._solve(torch.stack([cz, cy]), "none")
        self._count_unconverged()
        return {"rot_plan_l1": float((t[1] - t[0]).abs().sum()),
                "rot_loss": float(((cz * t[1]).sum() - (cz * t[0]).sum()).abs())}

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, gamma={self.gamma}, normalization={self.normalization!r}, "
                f"plan_grad={self.plan_grad!r}, objective={self.objective!r}, max_points={self.max_points}")
