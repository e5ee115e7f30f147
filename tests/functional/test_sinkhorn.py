"""Tests of ``beyondmse.functional.self_entropic_ot``."""

import math
import warnings

import numpy as np
import pytest
import torch

from beyondmse.functional import self_entropic_ot

torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine


def _cost(n=24, dim=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=dtype)
    c = torch.cdist(x, x)
    return c / (c.sum() / (n * (n - 1)))  # mean off-diagonal cost 1


def _check_plan(t, n, atol):
    p = torch.full(t.shape[:-1], 1.0 / n, dtype=t.dtype)
    torch.testing.assert_close(t.sum(-1), p, atol=atol, rtol=0)
    torch.testing.assert_close(t.sum(-2), p, atol=atol, rtol=0)
    assert float(t.diagonal(dim1=-2, dim2=-1).abs().max()) == 0.0
    assert (t >= 0).all()


@pytest.mark.parametrize("gamma", [1e-3, 1e-2, 0.1, 1.0])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_finite_and_marginals_over_gamma_and_cost_scale(gamma, scale):
    # every relative gamma, down to 1e-3 of the mean cost, reaches a 1e-7 marginal error
    tol = 1e-7
    n = 16
    c = _cost(n) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # converged: no warning
        t = self_entropic_ot(c, gamma * scale, tol=tol)
    assert torch.isfinite(t).all()
    _check_plan(t, n, atol=tol)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
@pytest.mark.parametrize("gamma", [1e-3, 1e-2, 0.1, 1.0])
def test_finite_when_gamma_is_not_rescaled_with_the_cost(scale, gamma):
    # an absolute gamma on badly scaled costs: the extreme ratios (1e-6, 1e3) must stay finite
    c = _cost(12, dtype=torch.float32) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = self_entropic_ot(c, gamma, n_iter=300, tol=1e-5)
    assert torch.isfinite(t).all()
    assert float(t.diagonal().abs().max()) == 0.0
    torch.testing.assert_close(t.sum(-2), torch.full((12,), 1 / 12), atol=1e-5, rtol=0)


def test_matches_pot_with_a_forbidden_diagonal():
    ot = pytest.importorskip("ot")
    c = _cost(20)
    big = c.clone()
    big.fill_diagonal_(1e4)  # exp(-1e4 / 0.1) underflows to 0: the diagonal is forbidden
    p = np.full(20, 1 / 20)
    ref = ot.sinkhorn(p, p, big.numpy(), 0.1, numItermax=3000, stopThr=1e-13)
    t = self_entropic_ot(c, 0.1, n_iter=20000, tol=1e-13)
    np.testing.assert_allclose(t.numpy(), ref, atol=1e-10)


def test_optimality_against_perturbations():
    # the entropic objective at the solution is below that of feasible perturbations of it
    c = _cost(10)
    gamma = 0.1
    t = self_entropic_ot(c, gamma, tol=1e-12, n_iter=10000)

    def objective(plan):
        mask = plan > 0
        return float((c * plan).sum() + gamma * (plan[mask] * plan[mask].log()).sum())

    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        i, j, k, l = torch.randperm(10, generator=g)[:4].tolist()
        step = 0.5 * float(torch.minimum(t[i, l], t[j, k]))  # keeps the plan positive
        d = torch.zeros_like(t)
        d[i, k] += step
        d[i, l] -= step
        d[j, k] -= step
        d[j, l] += step  # keeps both marginals and the zero diagonal
        assert objective(t) <= objective(t + d) + 1e-12


def test_batched_equals_individual_solves():
    c = torch.stack([_cost(15, seed=s) for s in range(3)])
    tb = self_entropic_ot(c, 0.05, tol=1e-10, n_iter=5000)
    for b in range(3):
        torch.testing.assert_close(tb[b], self_entropic_ot(c[b], 0.05, tol=1e-10, n_iter=5000))


def test_symmetric_cost_gives_symmetric_plan_and_permutation_equivariance():
    c = _cost(14)
    t = self_entropic_ot(c, 0.1, tol=1e-12, n_iter=5000)
    torch.testing.assert_close(t, t.T, atol=1e-10, rtol=0)
    perm = torch.randperm(14, generator=torch.Generator().manual_seed(0))
    tp = self_entropic_ot(c[perm][:, perm], 0.1, tol=1e-12, n_iter=5000)
    torch.testing.assert_close(tp, t[perm][:, perm], atol=1e-10, rtol=0)


def test_small_gamma_concentrates_on_nearest_neighbours():
    # points on a line: as gamma -> 0 the mass goes to the cheapest off-diagonal partners
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]], dtype=torch.float64)
    c = torch.cdist(x, x)
    t = self_entropic_ot(c, 1e-2, tol=1e-10, n_iter=5000)
    expected = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float64) / 4
    torch.testing.assert_close(t, expected, atol=1e-6, rtol=0)


def test_keeps_dtype_and_device_and_returns_no_gradient():
    for dtype in (torch.float32, torch.float64):
        c = _cost(8, dtype=dtype).requires_grad_()
        t = self_entropic_ot(c, 0.1)
        assert t.dtype == dtype and t.device == c.device
        assert not t.requires_grad


def test_warns_on_non_convergence():
    # a tolerance below float64 round-off cannot be met, by Sinkhorn or by Newton
    c = _cost(30)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        t = self_entropic_ot(c, 1e-3, n_iter=20, tol=1e-30)
    _check_plan(t, 30, atol=1e-9)  # still the (converged to round-off) plan


def test_two_points():
    c = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    torch.testing.assert_close(self_entropic_ot(c, 0.1), torch.tensor([[0.0, 0.5], [0.5, 0.0]]))


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 4), "shape"),
    (torch.zeros(1, 1), "n >= 2"),
    (torch.zeros(2, 2, 2, 2), "shape"),
    (torch.tensor([[0.0, math.nan], [1.0, 0.0]]), "NaN"),
    (torch.zeros(3, 3, dtype=torch.long), "floating"),
])
def test_bad_cost(bad, match):
    with pytest.raises(ValueError, match=match):
        self_entropic_ot(bad, 0.1)


@pytest.mark.parametrize("gamma", [0.0, -0.1, math.inf, math.nan])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        self_entropic_ot(_cost(4), gamma)


def test_bad_iterations_and_tolerance():
    with pytest.raises(ValueError, match="n_iter"):
        self_entropic_ot(_cost(4), 0.1, n_iter=0)
    with pytest.raises(ValueError, match="tol"):
        self_entropic_ot(_cost(4), 0.1, tol=0.0)


@pytest.mark.parametrize("gamma", [0.02, 0.15, 1.0])
def test_epsilon_scaling_and_direct_paths_agree(gamma, monkeypatch):
    # below SCALING_START_RATIO the solver starts at gamma directly; forcing the ratio to 1
    # sends the same problems through epsilon scaling (and Newton): the same plan must come out
    from beyondmse.functional import sinkhorn

    c = torch.stack([_cost(20, seed=1), _cost(20, seed=2) * 1.5])
    direct = self_entropic_ot(c, gamma, tol=1e-12)
    monkeypatch.setattr(sinkhorn, "SCALING_START_RATIO", 1.0)
    scaled = self_entropic_ot(c, gamma, tol=1e-12)
    torch.testing.assert_close(direct, scaled, atol=1e-11, rtol=0)
    _check_plan(direct, 20, atol=1e-12)


def _separability_gap(t, c, gamma):
    """Optimality oracle from the first-order conditions: on the off-diagonal support
    gamma * log T + C = f_i + g_j is additively separable, so every 2x2 'rectangle'
    M_ij - M_ib - M_aj + M_ab vanishes (with a = 0, b = 1). Returns its largest absolute value."""
    m = gamma * t.log() + c
    n = len(c)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ok = (i != j) & (i != 1) & (j != 0)
    rect = m - m[:, 1:2] - m[0:1, :] + m[0, 1]
    return float(rect[ok].abs().max())


@pytest.mark.parametrize("gamma", [0.05, 0.01, 4e-3])
def test_plan_satisfies_the_optimality_conditions(gamma):
    # marginals + separability of gamma log T + C are the KKT conditions of Eqs. 7-8: together
    # they certify the plan without any reference solver (small gamma runs the Newton steps)
    c = _cost(60, seed=3)
    t = self_entropic_ot(c, gamma, tol=1e-12)
    _check_plan(t, 60, atol=1e-12)
    assert _separability_gap(t, c, gamma) < 1e-9


@pytest.mark.parametrize("gamma", [0.01, 1e-3])
@pytest.mark.parametrize("kind", ["blob", "circle"])
def test_matches_pot_epsilon_scaling_at_small_gamma(gamma, kind):
    # n = 100 and gamma <= 0.01 of the mean cost: POT's log-domain epsilon scaling, run to its own
    # convergence, is the reference (its plain solver underflows or stalls here)
    ot = pytest.importorskip("ot")
    n = 100
    g = torch.Generator().manual_seed(1)
    if kind == "circle":
        a = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        x = torch.stack([a.cos(), a.sin()], 1)
    else:
        x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    c = torch.cdist(x, x)
    c = c / (c.sum() / (n * (n - 1)))
    big = c.clone().fill_diagonal_(999.0).numpy()  # the released code's forbidden diagonal
    p = np.full(n, 1 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.sinkhorn(p, p, big, gamma, method="sinkhorn_epsilon_scaling", numItermax=20000, stopThr=1e-12)
    ref_err = np.abs(ref.sum(0) - p).sum() + np.abs(ref.sum(1) - p).sum()
    assert ref_err < 1e-5  # POT got close enough to serve as a reference
    t = self_entropic_ot(c, gamma, tol=1e-12)
    _check_plan(t, n, atol=1e-12)
    # the plans agree to POT's own residual (entries of the plan are up to ~5e-3)
    np.testing.assert_allclose(t.numpy(), ref, atol=max(5 * ref_err, 1e-9), rtol=0)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("gamma", [0.5, 0.1, 0.01])
def test_implicit_gradient_gradcheck(gamma):
    torch.manual_seed(0)
    c = _cost(7, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: self_entropic_ot(c, gamma, tol=1e-13, grad="implicit"), (c,))


def test_implicit_gradient_gradcheck_batched_and_asymmetric():
    torch.manual_seed(0)
    c = torch.stack([_cost(6, seed=s) for s in range(2)])
    c = (c + 0.3 * torch.rand(2, 6, 6, dtype=torch.float64)).requires_grad_()  # not symmetric
    assert torch.autograd.gradcheck(lambda c: self_entropic_ot(c, 0.1, tol=1e-13, grad="implicit"), (c,))


def test_implicit_gradient_equals_unrolled_iterations_at_convergence():
    # two independent derivations of dT/dC: the implicit-function VJP and autograd through the
    # plain iterations (run to convergence) must agree
    c = _cost(12, seed=5).requires_grad_()
    w = torch.randn(12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gi, = torch.autograd.grad((self_entropic_ot(c, 0.05, tol=1e-13, n_iter=100000, grad="implicit") * w).sum(), c)
    gu, = torch.autograd.grad((self_entropic_ot(c, 0.05, tol=1e-13, n_iter=100000, grad="unrolled") * w).sum(), c)
    torch.testing.assert_close(gi, gu, atol=1e-10, rtol=0)
    assert float(gi.abs().max()) > 1e-2
    assert float(gi.diagonal().abs().max()) == 0.0  # the forbidden diagonal has no influence


def test_unrolled_matches_pot_plain_sinkhorn_value():
    ot = pytest.importorskip("ot")
    c = _cost(30, seed=6)
    big = c.clone().fill_diagonal_(999.0)
    p = np.full(30, 1 / 30)
    ref = ot.sinkhorn(p, p, big.numpy(), 0.1, numItermax=1000, stopThr=1e-12)
    t = self_entropic_ot(c, 0.1, n_iter=1000, tol=1e-12, grad="unrolled")
    np.testing.assert_allclose(t.detach().numpy(), ref, atol=1e-12)


def test_unrolled_refuses_an_underflowing_kernel():
    with pytest.raises(ValueError, match="unrolled"):
        self_entropic_ot(_cost(10), 1e-3, grad="unrolled")


def test_grad_none_is_detached_and_bad_grad_raises():
    c = _cost(8).requires_grad_()
    assert not self_entropic_ot(c, 0.1).requires_grad
    assert self_entropic_ot(c, 0.1, grad="implicit").requires_grad
    with pytest.raises(ValueError, match="grad"):
        self_entropic_ot(c, 0.1, grad="autograd")


def test_warm_start_gives_the_cold_plan_and_survives_stale_potentials():
    c = _cost(40, seed=7)
    state = {}
    first = self_entropic_ot(c, 0.03, tol=1e-10, warm_start=state)
    assert state["f"].shape == (1, 40, 1) and state["g"].shape == (1, 1, 40)
    torch.testing.assert_close(first, self_entropic_ot(c, 0.03, tol=1e-10), atol=1e-10, rtol=0)
    moved = c * (1 + 0.05 * torch.rand(40, 40, generator=torch.Generator().manual_seed(1), dtype=c.dtype))
    torch.testing.assert_close(self_entropic_ot(moved, 0.03, tol=1e-10, warm_start=state),
                               self_entropic_ot(moved, 0.03, tol=1e-10), atol=1e-10, rtol=0)
    stale = {"f": state["f"] + 1e3, "g": state["g"] + 1e3}  # overflowing kernel: solved cold instead
    torch.testing.assert_close(self_entropic_ot(moved, 0.03, tol=1e-10, warm_start=stale),
                               self_entropic_ot(moved, 0.03, tol=1e-10), atol=1e-10, rtol=0)


def _target_cost(n=256, seed=0):
    """ROT-Reg's 1-D target cost |y_i - y_j| over its mean: a chain-like plan, slow for plain Sinkhorn."""
    y = torch.rand(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    c = (y - y.T).abs()
    return c / (c.sum() / (n * (n - 1)))


@pytest.mark.parametrize("seed", [0, 1])
def test_over_relaxation_converges_where_plain_sinkhorn_is_slow(seed, monkeypatch):
    from beyondmse.functional import sinkhorn as sk

    c, _ = sk._prepare(_target_cost(seed=seed)[None])
    f, g = torch.zeros(1, 256, 1, dtype=c.dtype), torch.zeros(1, 1, 256, dtype=c.dtype)
    f1, g1, err = sk._sinkhorn(c, 0.1, f, g, max_iter=120, tol=1e-6)
    assert err < 1e-6
    plan = torch.exp((f1 + g1 - c) / 0.1)[0]
    _check_plan(plan, 256, atol=1e-6)
    # the plain iteration (omega held at 1) is several times slower on the same problem
    monkeypatch.setattr(sk, "OMEGA_MAX", 1.0)
    assert sk._sinkhorn(c, 0.1, f, g, max_iter=120, tol=1e-6)[2] > 1e-6


def test_over_relaxation_factor_follows_young():
    from beyondmse.functional.sinkhorn import OMEGA_MAX, _next_omega

    def optimal(mu2):  # Young: the best SOR factor for a plain iteration of rate mu2 per update pair
        return 2.0 / (1.0 + math.sqrt(1.0 - mu2))

    # plain updates (omega = 1) observed at rate 0.97 per pair over a check of 10 pairs
    assert _next_omega(1.0, 0.97 ** 10, 1.0, 1.0, 20) == pytest.approx(optimal(0.97))
    assert _next_omega(1.0, 0.97 ** 10, 1.0, 1.0, 10) == 1.0  # the first check is a transient
    # over-relaxed at omega 1.3 with rate lam: mu2 is recovered from (lam + w - 1)^2 = lam w^2 mu2
    w, mu2 = 1.3, 0.99
    lam = max(np.roots([1.0, 2 * (w - 1) - w * w * mu2, (w - 1) ** 2]).real)  # the slowest mode
    assert _next_omega(w, lam ** 10, 1.0, 1.0, 40) == pytest.approx(optimal(mu2))
    assert _next_omega(1.0, 0.9999 ** 10, 1.0, 1.0, 20) == OMEGA_MAX  # capped
    assert _next_omega(1.8, 0.5 ** 10, 1.0, 1.0, 40) == 1.8  # a faster rate never lowers omega
    assert _next_omega(1.8, 20.0, 1.0, 1.0, 40) == pytest.approx(1.4)  # error up tenfold: halved to 1
    assert _next_omega(1.8, 2.0, 1.0, 1.0, 40) == 1.8  # a transient rise is tolerated
