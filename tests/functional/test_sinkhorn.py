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
    # small gamma converges slowly (about 1/gamma sweeps): a looser tolerance keeps this fast
    tol = 1e-4 if gamma < 0.1 else 1e-7
    n = 16
    c = _cost(n) * scale
    t = self_entropic_ot(c, gamma * scale, n_iter=20000, tol=tol)
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
    ref = ot.sinkhorn(p, p, big.numpy(), 0.1, numItermax=20000, stopThr=1e-13)
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
    c = _cost(30)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        self_entropic_ot(c, 1e-3, n_iter=2, tol=1e-12)


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


@pytest.mark.parametrize("gamma,tol", [(0.02, 1e-5), (0.15, 1e-12), (0.3, 1e-12), (1.0, 1e-12)])
def test_kernel_space_and_log_domain_paths_agree(gamma, tol, monkeypatch):
    # gamma = 0.02 here is a spread/gamma ratio of about 200 (kernel entries near 1e-90); small
    # relative gammas converge slowly, hence the looser tolerance there
    from beyondmse.functional import sinkhorn

    c = torch.stack([_cost(20, seed=1), _cost(20, seed=2) * 1.5])
    fast = self_entropic_ot(c, gamma, tol=tol, n_iter=50000)
    monkeypatch.setattr(sinkhorn, "KERNEL_SPACE_MAX_RATIO", 0.0)  # force the log-domain path
    slow = self_entropic_ot(c, gamma, tol=tol, n_iter=50000)
    torch.testing.assert_close(fast, slow, atol=10 * tol, rtol=0)
    _check_plan(fast, 20, atol=tol)
