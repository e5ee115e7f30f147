"""Soft ranks (Blondel et al. 2020): hard limit, brute-force references, invariants, gradcheck."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from beyondmse.functional import soft_rank
from beyondmse.functional.rank import isotonic_decreasing


def hard_ranks(x):
    return (x.argsort(-1).argsort(-1) + 1).to(x.dtype)


def permutahedron_projection_slsqp(z, w):
    """Brute force: project z onto conv{permutations of w} with the 2^n - 2 subset inequalities."""
    n = len(z)
    ws = np.sort(w)[::-1]
    cons = [{"type": "eq", "fun": lambda m: m.sum() - w.sum()}]
    for k in range(1, n):
        for S in itertools.combinations(range(n), k):
            cons.append({"type": "ineq", "fun": lambda m, S=S, k=k: ws[:k].sum() - m[list(S)].sum()})
    res = minimize(lambda m: 0.5 * ((m - z) ** 2).sum(), x0=np.full(n, w.mean()), jac=lambda m: m - z,
                   constraints=cons, method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
    return res.x


def isotonic_brute_force(y):
    """Brute force: best non-increasing block-mean fit over all contiguous partitions."""
    n = len(y)
    best, best_val = None, np.inf
    for mask in range(2 ** (n - 1)):
        cuts = [i + 1 for i in range(n - 1) if mask >> i & 1]
        blocks = np.split(np.arange(n), cuts)
        means = [y[b].mean() for b in blocks]
        if any(means[i] < means[i + 1] for i in range(len(means) - 1)):
            continue
        v = np.concatenate([np.full(len(b), m) for b, m in zip(blocks, means)])
        val = ((v - y) ** 2).sum()
        if val < best_val:
            best, best_val = v, val
    return best


def test_hard_limit():
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(soft_rank(x, 1e-4), hard_ranks(x))


def test_large_strength_tends_to_mean_rank():
    x = torch.randn(3, 6, dtype=torch.float64)
    out = soft_rank(x, 1e6)
    torch.testing.assert_close(out, torch.full_like(x, 3.5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0, 3.0])
def test_matches_brute_force_projection(strength):
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.normal(size=4)
        ref = permutahedron_projection_slsqp(x / strength, np.arange(1.0, 5.0))
        out = soft_rank(torch.tensor(x[None]), strength)[0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-5)


def test_isotonic_matches_brute_force():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(20, 6))
    y[0] = [1, 1, 1, 1, 1, 1]  # ties
    y[1] = np.arange(6.0)  # fully pooled
    v, block = isotonic_decreasing(y, method="pav")
    for row in range(len(y)):
        np.testing.assert_allclose(v[row], isotonic_brute_force(y[row]), atol=1e-12)
        # positions in the same block share a value
        for b in np.unique(block[row]):
            assert np.ptp(v[row][block[row] == b]) < 1e-12


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_pav_and_minmax_agree(n):
    rng = np.random.default_rng(5)
    y = rng.normal(size=(30, n))
    y[0] = 1.0  # all tied
    y[1] = np.round(y[1])  # some ties
    v1, b1 = isotonic_decreasing(y, method="pav")
    v2, b2 = isotonic_decreasing(y, method="minmax")
    np.testing.assert_allclose(v1, v2, atol=1e-12)
    # blocks may differ only where adjacent blocks have equal means (a non-differentiable point)
    same = (b1 == b2).all(axis=1)
    assert same[2:].all()


def test_invariants_sum_translation_batching():
    torch.manual_seed(3)
    x = torch.randn(4, 9, dtype=torch.float64)
    r = soft_rank(x, 0.7)
    torch.testing.assert_close(r.sum(-1), torch.full((4,), 45.0, dtype=torch.float64))
    torch.testing.assert_close(soft_rank(x + 5.0, 0.7), r)
    rows = torch.stack([soft_rank(x[i:i + 1], 0.7)[0] for i in range(4)])
    torch.testing.assert_close(rows, r)
    # ascending and order-preserving: along x's ascending order the soft ranks never decrease
    # (entries pooled into one block share a rank, so the steps may be 0)
    steps = r.gather(-1, x.argsort(-1)).diff(dim=-1)
    assert (steps >= -1e-12).all()
    assert (steps > 1e-6).any()
    x3 = torch.randn(2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(soft_rank(x3, 0.5)[1, 2], soft_rank(x3[1, 2][None], 0.5)[0])


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("strength", [0.3, 1.0, 3.0])
def test_gradcheck(shape, strength):
    torch.manual_seed(4)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, strength), (x,))


@pytest.mark.parametrize("n", [64, 100])
def test_gradcheck_pav_path(n):
    # rows longer than 48 go through the pool-adjacent-violators loop instead of the min-max
    # formula; its blocks define the VJP, so check it too (strength 0.02: a mix of pooled blocks)
    torch.manual_seed(n)
    x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, 0.02), (x,))
    # the case exercises pooled blocks as well as single entries (the VJP averages over blocks)
    z = np.sort(x.detach().numpy() / 0.02, axis=1)[:, ::-1]
    _, block = isotonic_decreasing(z - np.arange(n, 0, -1.0)[None, :], method="pav")
    n_blocks = block.max(axis=1) + 1
    assert (n_blocks > 1).all() and (n_blocks < n).all()


def test_dtype_and_ties_are_finite():
    x = torch.tensor([[1.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    r = soft_rank(x, 0.5)
    assert r.dtype == torch.float32
    (r * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bad_input():
    with pytest.raises(ValueError, match="regularization_strength"):
        soft_rank(torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        soft_rank(torch.randn(2, 0))
    with pytest.raises(ValueError, match="NaN"):
        soft_rank(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="floating"):
        soft_rank(torch.tensor([[1, 2]]))
