"""functional.distances: the one pairwise (squared) distance, checked against a naive double loop."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from beyondmse.functional.distances import cosine_similarity, pairwise_distances, squared_distances


def _naive(a, b, fn):
    # the oracle never reuses the code under test: one Python loop over pairs
    return torch.tensor([[fn(a[i], b[j]) for j in range(len(b))] for i in range(len(a))], dtype=torch.float64)


def _sq(u, v):
    return sum((float(p) - float(q)) ** 2 for p, q in zip(u, v))


def _cos(u, v):
    nu = math.sqrt(sum(float(p) ** 2 for p in u))
    nv = math.sqrt(sum(float(q) ** 2 for q in v))
    return sum(float(p) * float(q) for p, q in zip(u, v)) / (nu * nv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("na, nb, d", [(1, 1, 1), (5, 3, 2), (7, 11, 4)])
def test_matches_a_naive_double_loop(dtype, na, nb, d):
    torch.manual_seed(0)
    a, b = torch.randn(na, d, dtype=dtype), torch.randn(nb, d, dtype=dtype) + 0.5
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    d2 = squared_distances(a, b)
    assert d2.shape == (na, nb) and d2.dtype == dtype
    torch.testing.assert_close(d2.double(), _naive(a, b, _sq), **tol)
    dist = pairwise_distances(a, b)
    assert dist.shape == (na, nb) and dist.dtype == dtype
    torch.testing.assert_close(dist.double(), _naive(a, b, lambda u, v: math.sqrt(_sq(u, v))), **tol)
    torch.testing.assert_close(cosine_similarity(a, b).double(), _naive(a, b, _cos), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_self_distances_match_the_loop_with_an_exact_zero_diagonal(dtype):
    torch.manual_seed(1)
    x = torch.randn(9, 3, dtype=dtype)
    d = pairwise_distances(x)
    assert torch.all(torch.diagonal(d) == 0)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(d.double(), _naive(x, x, lambda u, v: math.sqrt(_sq(u, v))), rtol=tol, atol=tol)
    torch.testing.assert_close(squared_distances(x).double(), _naive(x, x, _sq), rtol=tol, atol=tol)


def test_centring_keeps_far_away_points_accurate():
    # the Gram form cancels catastrophically for points far from the origin; the shared shift
    # (which leaves distances unchanged) keeps float32 accurate
    torch.manual_seed(2)
    a, b = torch.randn(6, 3), torch.randn(4, 3)
    ref = _naive(a, b, lambda u, v: math.sqrt(_sq(u, v)))
    far = torch.tensor([1e4, -2e4, 3e4])
    torch.testing.assert_close(pairwise_distances(a + far, b + far).double(), ref, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(pairwise_distances(a + far).double(),
                               _naive(a, a, lambda u, v: math.sqrt(_sq(u, v))), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cross", [False, True])
def test_gradient_is_finite_at_zero_distance(cross):
    torch.manual_seed(3)
    x = torch.randn(5, 3, dtype=torch.float64)
    x = torch.cat([x, x[:2]]).requires_grad_(True)  # two duplicated points: distance exactly 0
    d = pairwise_distances(x, x) if cross else pairwise_distances(x)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # squared distances need no clamp: the gradient of ||a - b||^2 at a == b is exactly 0
    a = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    squared_distances(a, torch.zeros(1, 2, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(a.grad, torch.zeros(1, 2, dtype=torch.float64))


def test_self_distance_gradient_matches_the_formula_with_coinciding_points():
    # dL/dx_i = sum_j (G_ij + G_ji) (x_i - x_j) / ||x_i - x_j|| over pairs at a non-zero distance;
    # pairs of coinciding points (and the diagonal) contribute nothing, as the clamp's gradient
    torch.manual_seed(6)
    x = torch.randn(6, 3, dtype=torch.float64)
    x = torch.cat([x, x[:2]])
    g = torch.randn(8, 8, dtype=torch.float64)
    ref = torch.zeros_like(x)
    for i in range(8):
        for j in range(8):
            diff = x[i] - x[j]
            dist = math.sqrt(float((diff * diff).sum()))
            if dist > 0:
                ref[i] += (g[i, j] + g[j, i]) * diff / dist
    xg = x.clone().requires_grad_()
    (pairwise_distances(xg) * g).sum().backward()
    torch.testing.assert_close(xg.grad, ref)


def test_gradcheck_away_from_zero():
    torch.manual_seed(4)
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda u, v: squared_distances(u, v), (a, b))
    assert gradcheck(lambda u, v: pairwise_distances(u, v), (a, b))
    assert gradcheck(lambda u: pairwise_distances(u), (a,))
    assert gradcheck(lambda u, v: cosine_similarity(u, v), (a, b))


@pytest.mark.parametrize("fn", [squared_distances, pairwise_distances, cosine_similarity])
def test_bad_inputs_raise(fn):
    with pytest.raises(ValueError, match=r"\(Na, d\) and \(Nb, d\)"):
        fn(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="dimensions differ"):
        fn(torch.zeros(3, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected tensors"):
        fn([[0.0]], torch.zeros(1, 1))


def test_bad_eps_raises():
    with pytest.raises(ValueError, match="eps must be > 0"):
        pairwise_distances(torch.zeros(3, 2), eps=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_graph_path_gives_the_same_values_bit_for_bit(dtype):
    # outside autograd the distances are formed in place (fewer temporaries); same numbers
    from beyondmse.similarity import NegL2

    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(37, 6, generator=g, dtype=dtype) + 3.0, torch.randn(53, 6, generator=g, dtype=dtype)
    b[:4] = a[:4]  # coinciding points: the clamps at 0 and eps are active
    sim = NegL2(scale=1.7).to(dtype)
    for fn in (squared_distances, pairwise_distances, sim):
        for cross in (True, False):
            with torch.no_grad():
                fast = fn(a, b) if cross else (fn(a, a) if fn is sim else fn(a))
            a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
            graph = fn(a2, b2) if cross else (fn(a2, a2) if fn is sim else fn(a2))
            assert graph.requires_grad and torch.equal(fast, graph.detach()), (fn, cross)
