"""ROT-Reg against transcriptions of the tightness paper's Eq. 9 and of the released code.

The oracles below are written from the equations (and, for ``normalization="released"``, from
what ``ICLR25_OT.py`` computes), with their own textbook Sinkhorn loop: they share no code with
``beyondmse.functional.sinkhorn`` or ``ROTReg``.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from beyondmse.regularizers import ROTReg

torch.set_num_threads(1)


def _points(n=30, d=5, m=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.rand(n, m, generator=g, dtype=torch.float64))


def _textbook_sinkhorn(cost, gamma, iters=4000, zero_diagonal=True):
    """u, v scalings of K = exp(-C / gamma), uniform marginals; autograd records every step."""
    n = cost.shape[0]
    k = torch.exp(-cost / gamma)
    if zero_diagonal:
        k = k * (1 - torch.eye(n, dtype=cost.dtype))
    v = torch.ones(n, dtype=cost.dtype)
    for _ in range(iters):
        u = (1.0 / n) / (k @ v)
        v = (1.0 / n) / (k.T @ u)
    return u[:, None] * k * v[None, :]


def _euclid(x):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return d2.clamp_min(1e-12).sqrt() * (1 - torch.eye(len(x), dtype=x.dtype))


def _eq9_mean_normalised(z, y, gamma, through_tz=False):
    """Eq. 9 with both costs divided by their mean off-diagonal entry; returns (loss, raw)."""
    n = len(z)
    cz = _euclid(z)
    cz = cz / (cz.sum() / (n * (n - 1)))
    cy = _euclid(y)
    cy = cy / (cy.sum() / (n * (n - 1)))
    ty = _textbook_sinkhorn(cy, gamma)
    tz = _textbook_sinkhorn(cz if through_tz else cz.detach(), gamma)
    raw = (cz * ty).sum() - (cz * tz).sum()
    return raw.abs(), raw


def _released_transcription(z, y, gamma=0.1):
    """What ICLR25_OT.py's TOT computes on (N, d) features and (N, m) targets (no subsampling):
    features over their mean norm, Euclidean costs, the target cost over its maximum, 999 on
    both diagonals, plain Sinkhorn with gradients through the feature plan, |<C^Z, T^Y - T^Z>|."""
    n = len(z)
    big = 999.0 * torch.eye(n, dtype=z.dtype)
    zs = z / z.norm(dim=1).mean()
    cz = ((zs[:, None] - zs[None]) ** 2).sum(-1).clamp_min(1e-12).sqrt() + big
    cy = ((y[:, None] - y[None]) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    cy = cy / cy.max() + big
    ty = _textbook_sinkhorn(cy, gamma, zero_diagonal=False)
    tz = _textbook_sinkhorn(cz, gamma, zero_diagonal=False)
    return ((cz * ty).sum() - (cz * tz).sum()).abs()


# --------------------------------------------------------------------------- Eq. 9 (ours)
def test_value_and_gradient_match_the_transcription_of_eq_9():
    # features that warp the targets monotonically (same neighbours, other spacings) make
    # <C^Z, T^Y> - <C^Z, T^Z> negative here: the absolute value of Eq. 9 matters
    _, y = _points(30, 5, 1, seed=0)
    z = (3.0 * y).exp()
    oracle, raw = _eq9_mean_normalised(z.clone().requires_grad_(), y, 0.1)
    assert float(raw.detach()) < -1e-3
    zg = z.clone().requires_grad_()
    reg = ROTReg(2.0, gamma=0.1, tol=1e-12)
    value = reg(zg, y)
    torch.testing.assert_close(value, 2.0 * oracle.detach(), atol=1e-9, rtol=1e-7)
    # gradient with T^Z constant: through C^Z in both terms (and its normalisation)
    zo = z.clone().requires_grad_()
    _eq9_mean_normalised(zo, y, 0.1)[0].backward()
    value.backward()
    torch.testing.assert_close(zg.grad, 2.0 * zo.grad, atol=1e-8, rtol=1e-6)


def test_plans_have_a_zero_diagonal_and_uniform_marginals():
    z, y = _points(25, 4, 2, seed=1)
    _, tz, ty = ROTReg(1.0, gamma=0.05).plans(z, y)
    for t in (tz, ty):
        assert float(t.diagonal().abs().max()) == 0.0
        torch.testing.assert_close(t.sum(0), torch.full((25,), 1 / 25, dtype=t.dtype), atol=1e-6, rtol=0)


def test_zero_when_features_equal_targets_up_to_scale_and_rotation():
    y = torch.rand(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    reg = ROTReg(1.0, gamma=0.1, tol=1e-10)
    for z in (y, 5.0 * y, 0.01 * y @ q + 2.0):
        assert float(reg(z, y)) < 1e-7
    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(reg(z, y)) > 1e-3


def test_targets_get_no_gradient():
    z, y = _points(16, 4, 1)
    z.requires_grad_()
    y.requires_grad_()
    ROTReg(1.0)(z, y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert y.grad is None


# --------------------------------------------------------------------------- gradient through T^Z
@pytest.mark.parametrize("plan_grad", ["implicit", "unrolled"])
def test_gradient_through_the_feature_plan_matches_autograd_through_sinkhorn(plan_grad):
    z, y = _points(20, 3, 1, seed=4)
    zo = z.clone().requires_grad_()
    _eq9_mean_normalised(zo, y, 0.2, through_tz=True)[0].backward()
    zg = z.clone().requires_grad_()
    ROTReg(1.0, gamma=0.2, tol=1e-12, n_iter=100000, plan_grad=plan_grad)(zg, y).backward()
    torch.testing.assert_close(zg.grad, zo.grad, atol=1e-8, rtol=1e-6)
    # and it is a different gradient from the constant-plan one
    zn = z.clone().requires_grad_()
    ROTReg(1.0, gamma=0.2, tol=1e-12)(zn, y).backward()
    assert float((zn.grad - zg.grad).norm()) > 0.05 * float(zg.grad.norm())


# --------------------------------------------------------------------------- the released formulation
def test_released_formulation_equals_the_transcription():
    z, y = _points(40, 6, 1, seed=5)
    z = z + 0.7  # features off the origin: the uncentred mean norm matters
    zo = z.clone().requires_grad_()
    oracle = _released_transcription(zo, y)
    oracle.backward()
    zg = z.clone().requires_grad_()
    reg = ROTReg.released(1.0, max_points=None, tol=1e-12, n_iter=100000)
    value = reg(zg, y)
    torch.testing.assert_close(value, oracle.detach(), atol=1e-6, rtol=0)
    value.backward()
    torch.testing.assert_close(zg.grad, zo.grad, atol=1e-6, rtol=1e-5)
    # and it is not the mean-normalised loss
    assert abs(float(ROTReg(1.0, tol=1e-12)(z, y)) - float(value)) > 1e-3


def test_released_formulation_equals_pot_on_tensors():
    # the released code's own solver: POT's ot.sinkhorn on torch tensors, autograd through it
    ot = pytest.importorskip("ot")
    z, y = _points(30, 4, 2, seed=6)
    n = len(z)
    zo = z.clone().requires_grad_()
    zs = zo / zo.norm(dim=1).mean()
    big = 999.0 * torch.eye(n, dtype=z.dtype)
    cz = ((zs[:, None] - zs[None]) ** 2).sum(-1).clamp_min(1e-12).sqrt() + big
    cy = ((y[:, None] - y[None]) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    cy = cy / cy.max() + big
    p = torch.full((n,), 1.0 / n, dtype=z.dtype)
    loss = ((cz * ot.sinkhorn(p, p, cy, 0.1)).sum() - (cz * ot.sinkhorn(p, p, cz, 0.1)).sum()).abs()
    loss.backward()
    zg = z.clone().requires_grad_()
    value = ROTReg.released(1.0, max_points=None)(zg, y)
    value.backward()
    torch.testing.assert_close(value, loss.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(zg.grad, zo.grad, atol=1e-5, rtol=1e-4)


def test_released_configuration():
    reg = ROTReg.released(100.0)
    assert (reg.weight, reg.gamma, reg.normalization, reg.plan_grad, reg.max_points) == \
        (100.0, 0.1, "released", "unrolled", 200)
    assert ROTReg.released(1.0, plan_grad="implicit").plan_grad == "implicit"
    assert ROTReg(1.0, plan_grad=None).plan_grad == "none"  # how suite files spell "none"


def test_unrolled_falls_back_to_implicit_with_a_warning_when_the_kernel_would_underflow():
    z, y = _points(20, 3, 1, seed=7)
    z[0] += 50.0  # one far outlier: released-normalised cost spread / gamma > 700
    reg = ROTReg(1.0, gamma=0.005, normalization="released", plan_grad="unrolled")
    with pytest.warns(RuntimeWarning, match="implicit"):
        out = reg(z.requires_grad_(), y)
    out.backward()
    assert torch.isfinite(z.grad).all()


# --------------------------------------------------------------------------- caching, diagnostics
def test_target_plan_cache_gives_the_same_values_as_a_fresh_solve():
    z, y = _points(30, 4, 1, seed=8)
    y2 = torch.rand(30, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    reg = ROTReg(1.0, gamma=0.1, tol=1e-12)
    first = reg(z, y)
    torch.testing.assert_close(reg(1.3 * z + 0.1 * z ** 2, y), ROTReg(1.0, gamma=0.1, tol=1e-12)(1.3 * z + 0.1 * z ** 2, y))
    torch.testing.assert_close(reg(z, y2), ROTReg(1.0, gamma=0.1, tol=1e-12)(z, y2))  # new targets: re-solved
    torch.testing.assert_close(reg(z, y), first)


def test_diagnostics_report_plan_mismatch_and_loss():
    y = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reg = ROTReg(5.0, gamma=0.1, tol=1e-10)
    same = reg.diagnostics(3.0 * y, y)
    assert same["rot_plan_l1"] < 1e-6 and same["rot_loss"] < 1e-8
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    other = reg.diagnostics(z, y)
    assert 0.5 < other["rot_plan_l1"] <= 2.0
    assert other["rot_loss"] == pytest.approx(float(reg(z, y)) / 5.0, rel=1e-6)


def test_warns_once_and_counts_unconverged_solves():
    z, y = _points(20, 3, 1)
    reg = ROTReg(1.0, gamma=0.1, tol=1e-30, n_iter=10)
    with pytest.warns(RuntimeWarning, match="warned once") as rec:
        reg(z, y)
        reg(z + 1.0, y + 1.0)
    assert sum("ROTReg" in str(w.message) for w in rec) == 1
    assert reg.unconverged_ == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"normalization": "max"}, "normalization"),
    ({"plan_grad": "autograd"}, "plan_grad"),
    ({"objective": "wasserstein"}, "objective"),
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": math.nan}, "gamma"),
    ({"tol": -1.0}, "tol"),
    ({"n_iter": 0}, "n_iter"),
    ({"max_points": 2}, "max_points"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ROTReg(1.0, **kwargs)


def test_batch_subsampling_is_seeded():
    z, y = _points(80, 3, 1)
    torch.manual_seed(0)
    a = ROTReg(1.0, max_points=20)(z, y)
    torch.manual_seed(0)
    b = ROTReg(1.0, max_points=20)(z, y)
    torch.manual_seed(1)
    c = ROTReg(1.0, max_points=20)(z, y)
    assert float(a) == float(b) and float(a) != float(c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(float(c))


def test_kl_objective_is_gamma_kl_with_the_constant_plan_gradient():
    z, y = _points(25, 4, 1, seed=10)
    gamma = 0.1
    zg = z.clone().requires_grad_()
    reg = ROTReg(1.0, gamma=gamma, tol=1e-12, objective="kl")
    value = reg(zg, y)
    # oracle: gamma * sum T^Y log(T^Y / T^Z) with textbook plans, over the off-diagonal entries
    n = len(z)
    cz = _euclid(z)
    cz = cz / (cz.sum() / (n * (n - 1)))
    cy = _euclid(y)
    cy = cy / (cy.sum() / (n * (n - 1)))
    ty, tz = _textbook_sinkhorn(cy, gamma), _textbook_sinkhorn(cz, gamma)
    off = ~torch.eye(n, dtype=torch.bool)
    kl = (ty[off] * (ty[off] / tz[off]).log()).sum()
    torch.testing.assert_close(value.detach(), gamma * kl, atol=1e-9, rtol=1e-7)
    assert float(value) > 0
    # gradient: T^Y - T^Z pulled back through the normalised C^Z (envelope theorem)
    value.backward()
    zo = z.clone().requires_grad_()
    czo = _euclid(zo)
    czo = czo / (czo.sum() / (n * (n - 1)))
    (czo * (ty - tz)).sum().backward()
    torch.testing.assert_close(zg.grad, zo.grad, atol=1e-8, rtol=1e-6)
    # zero when the plans match
    assert float(ROTReg(1.0, gamma=gamma, tol=1e-12, objective="kl")(2.0 * y, y)) < 1e-9


def test_eq9_can_vanish_while_the_plans_differ():
    # the identity behind objective="kl": <C, T^Y - T^Z> = gamma [KL(T^Y|T^Z) - (H(T^Z) - H(T^Y))]
    _, y = _points(30, 5, 1, seed=0)
    z = (3.0 * y).exp()  # the warp of test 1: Eq. 9's difference is negative there
    reg = ROTReg(1.0, gamma=0.1, tol=1e-12)
    cz, tz, ty = reg.plans(z, y)
    off = ~torch.eye(30, dtype=torch.bool)
    kl = float((ty[off] * (ty[off] / tz[off]).log()).sum())
    ent = lambda t: float(-(t[off] * t[off].log()).sum())  # noqa: E731
    raw = float((cz * (ty - tz)).sum())
    assert raw == pytest.approx(0.1 * (kl - (ent(tz) - ent(ty))), rel=1e-6)
    assert kl > 0.05 and raw < 0  # plans differ, yet the signed Eq. 9 difference has crossed zero
