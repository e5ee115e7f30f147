"""SoftStep (Eq. 1 of Susman et al. 2025): values, boundaries, gradients, gradcheck."""

import pytest
import torch

from beyondmse.functional import softstep


def ratio_formula(s, l, u, t):
    """The paper's Eq. (1) written literally (oracle; valid strictly inside (l, u))."""
    a = (s - l) ** (1 / t)
    b = (u - s) ** (1 / t)
    return a / (a + b)


def test_values_match_equation_and_ends():
    torch.manual_seed(0)
    l, u, t = 0.2, 0.7, 0.6
    s = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    out = softstep(s, l, u, t)
    inside = (s > l) & (s < u)
    torch.testing.assert_close(out[inside], ratio_formula(s[inside], l, u, t))
    assert (out[s <= l] == 0).all()
    assert (out[s >= u] == 1).all()
    # midpoint is 1/2 for any t
    for tt in (0.05, 0.5, 1.0):
        mid = softstep(torch.tensor([0.45], dtype=torch.float64), l, u, tt)
        torch.testing.assert_close(mid, torch.tensor([0.5], dtype=torch.float64))


def test_t_to_zero_is_hard_step():
    s = torch.tensor([0.1, 0.3, 0.44, 0.46, 0.6, 0.9])
    out = softstep(s, 0.2, 0.7, 1e-3)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))


def test_t_one_is_linear_ramp():
    s = torch.tensor([0.3, 0.5, 0.6], dtype=torch.float64)
    torch.testing.assert_close(softstep(s, 0.2, 0.7, 1.0), (s - 0.2) / 0.5)


@pytest.mark.parametrize("t", [0.2, 0.6, 0.9, 1.0])
def test_gradcheck_interior(t):
    torch.manual_seed(1)
    s = (0.21 + 0.48 * torch.rand(16, dtype=torch.float64)).requires_grad_()
    l = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    u = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softstep, (s, l, u, tt))


@pytest.mark.parametrize("t", [0.1, 0.3])
def test_gradcheck_at_boundaries(t):
    # at s = l and s = u the map is C^1 with zero slope; finite differences only resolve that
    # when the one-sided slope h^(1/t - 1) is small, i.e. for t well below 1 (for t near 1 the
    # finite-gradient test below covers the ends)
    torch.manual_seed(1)
    s = torch.cat([torch.rand(12, dtype=torch.float64),
                   torch.tensor([0.0, 0.2, 0.7, 1.0], dtype=torch.float64)]).requires_grad_()
    l = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    u = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softstep, (s, l, u, tt))


def test_gradcheck_broadcast_per_row_parameters():
    torch.manual_seed(2)
    s = torch.rand(4, 6, dtype=torch.float64, requires_grad=True)
    l = (0.3 * torch.rand(4, 1, dtype=torch.float64)).requires_grad_()
    u = (0.6 + 0.3 * torch.rand(4, 1, dtype=torch.float64)).requires_grad_()
    t = (0.2 + 0.7 * torch.rand(4, 1, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(softstep, (s, l, u, t))
    out = softstep(s, l, u, t)
    out.sum().backward()
    assert l.grad.shape == (4, 1) and u.grad.shape == (4, 1) and t.grad.shape == (4, 1)


@pytest.mark.parametrize("t", [1e-3, 0.01, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_gradients_everywhere(t, dtype):
    # exactly at l and u, at 0 and 1, a hair inside the interval, and l = 0, u = 1
    pts = [0.0, 1e-30, 1e-12, 0.25, 0.5, 0.75, 1 - 1e-7, 1.0]
    s = torch.tensor(pts, dtype=dtype, requires_grad=True)
    l = torch.tensor(0.0, dtype=dtype, requires_grad=True)
    u = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    tt = torch.tensor(t, dtype=dtype, requires_grad=True)
    out = softstep(s, l, u, tt)
    assert out.dtype == dtype
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    (out * torch.arange(1.0, len(pts) + 1, dtype=dtype)).sum().backward()
    for g in (s.grad, l.grad, u.grad, tt.grad):
        assert torch.isfinite(g).all()


def test_log_of_softstep_has_no_nan_gradient_when_masked():
    # the heads take log(softstep) only where it is > 0; the other branch must not leak NaN
    s = torch.tensor([0.0, 0.1, 0.5, 0.9], requires_grad=True)
    w = softstep(s, 0.1, 0.8, 0.5)
    logw = torch.where(w > 0, torch.log(w.clamp_min(torch.finfo(w.dtype).tiny)), torch.zeros_like(w))
    logw.sum().backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[0] == 0 and s.grad[1] == 0


def test_bad_input():
    s = torch.rand(3)
    with pytest.raises(ValueError, match="t > 0"):
        softstep(s, 0.1, 0.5, 0.0)
    with pytest.raises(ValueError, match="u > l"):
        softstep(s, 0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="broadcast"):
        softstep(torch.rand(3, 4), torch.rand(5, 1), 1.0, 0.5)
    with pytest.raises(ValueError, match="floating"):
        softstep(torch.arange(3), 0.1, 0.5, 0.5)


# --------------------------------------------------------------------------- fused NCA logits
def nca_softstep_logits_reference(sim, l0, u0, t, eps=1e-3, min_gap=1e-3):
    """Algorithm 2 written step by step with autograd: min-max normalise each row (self
    included), l = min(l0, best neighbor) - eps, u = l + max(u0 (1 - l), min_gap), SoftStep, and
    sim + log w where w > 0 (self and zero weights masked)."""
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    lo, hi = sim.min(1, keepdim=True).values, sim.max(1, keepdim=True).values
    top = sim.masked_fill(eye, -float("inf")).max(1, keepdim=True).values
    rng = (hi - lo).clamp_min(torch.finfo(sim.dtype).eps ** 0.5)
    s = (sim - lo) / rng
    l = torch.minimum(l0, (top - lo) / rng) - eps
    u = l + torch.clamp_min(u0 * (1 - l), min_gap)
    w = softstep(s, l, u, t)
    keep = (w > 0) & ~eye
    return torch.where(keep, sim + torch.log(w.clamp_min(1e-300)), torch.full_like(sim, torch.finfo(sim.dtype).min))


@pytest.mark.parametrize("instance", [False, True])
def test_fused_logits_match_algorithm_2_and_gradcheck(instance):
    from beyondmse.functional.softstep import softstep_logits

    torch.manual_seed(7)
    n = 9
    z = torch.randn(n, 3, dtype=torch.float64)
    sim = (-torch.cdist(z, z)).requires_grad_()
    shape = (n, 1) if instance else (1, 1)
    l0 = (0.55 + 0.1 * torch.rand(shape, dtype=torch.float64)).requires_grad_()
    u0 = torch.full(shape, 0.4, dtype=torch.float64, requires_grad=True)
    t = torch.full(shape, 0.5, dtype=torch.float64, requires_grad=True)

    def fused(sim, l0, u0, t):
        return softstep_logits(sim, (l0, u0, t), eps=1e-3, min_gap=1e-3, exclude_diagonal=True)

    ref, out = nca_softstep_logits_reference(sim, l0, u0, t), fused(sim, l0, u0, t)
    assert ((ref > -1e300) & (ref < 0)).any() and (ref == torch.finfo(torch.float64).min).sum() > n
    torch.testing.assert_close(out, ref)
    g = torch.randn(n, n, dtype=torch.float64)
    keep = ref > torch.finfo(torch.float64).min
    grads_ref = torch.autograd.grad((ref * g * keep).sum(), (sim, l0, u0, t), retain_graph=True)
    grads = torch.autograd.grad((out * g * keep).sum(), (sim, l0, u0, t), retain_graph=True)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    # an upstream gradient on the masked (constant) logits too: none of it may pass through them
    grads_ref = torch.autograd.grad(ref, (sim, l0, u0, t), g)
    grads = torch.autograd.grad(out, (sim, l0, u0, t), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda *v: torch.softmax(fused(*v), 1), (sim, l0, u0, t))
    # given row statistics (inference over a memory bank): same logits, gradients to them too
    lo, hi = sim.min(1).values, sim.max(1).values
    top = sim.masked_fill(torch.eye(n, dtype=torch.bool), -1e300).max(1).values
    given = softstep_logits(sim, (l0, u0, t), eps=1e-3, min_gap=1e-3, row_stats=(lo, hi, top), exclude_diagonal=True)
    torch.testing.assert_close(given, ref)
    grads_given = torch.autograd.grad((given * g * keep).sum(), (sim, l0, u0, t))
    for a, b in zip(grads_given, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_without_graph_match_algorithm_2_and_the_autograd_path(dtype):
    """Under no_grad softstep_logits takes a shorter path (the logits alone); it must give the
    oracle's values and the autograd path's bit for bit: ties, sharp and soft t, both row-stat
    sources."""
    from beyondmse.functional.softstep import softstep_logits

    torch.manual_seed(3)
    n = 40
    for trial in range(6):
        z = torch.randn(n, 3, dtype=dtype)
        sim = -torch.cdist(z, z)
        if trial % 2:
            sim[:, :5] = sim[:, :1]  # ties, also at the row minimum
            sim.diagonal().zero_()
        l0 = 0.2 + 0.7 * torch.rand(n, 1, dtype=dtype)
        u0 = torch.rand(n, 1, dtype=dtype)
        sharp = trial < 3  # t so small that the oracle's w underflows to 0 inside (l, u)
        t = torch.rand(n, 1, dtype=dtype) * 0.02 + 1e-3 if sharp else 0.2 + 0.8 * torch.rand(n, 1, dtype=dtype)
        kw = dict(eps=1e-3, min_gap=1e-3, exclude_diagonal=True)
        with torch.no_grad():
            fast = softstep_logits(sim, (l0, u0, t), **kw)
        if not sharp:
            ref = nca_softstep_logits_reference(sim.double(), l0.double(), u0.double(), t.double())
            keep = ref > torch.finfo(torch.float64).min
            assert keep.any() and (~keep).sum() > n
            assert torch.equal(fast == torch.finfo(dtype).min, ~keep)
            tol = 1e-4 if dtype == torch.float32 else 1e-9
            torch.testing.assert_close(fast.double()[keep], ref[keep], rtol=tol, atol=tol)
        slow = softstep_logits(sim.clone().requires_grad_(), (l0, u0, t), **kw)
        assert torch.equal(fast, slow.detach())
        eye = torch.eye(n, dtype=torch.bool)
        stats = (sim.amin(1), sim.amax(1), sim.masked_fill(eye, -torch.inf).amax(1))
        with torch.no_grad():
            fast_given = softstep_logits(sim, (l0, u0, t), row_stats=stats, **kw)
        slow_given = softstep_logits(sim.clone().requires_grad_(), (l0, u0, t), row_stats=stats, **kw)
        assert torch.equal(fast_given, slow_given.detach())
