"""Soft ranks (Blondel et al. 2020): hard limit, brute-force references, invariants, gradcheck.

The torch implementation is checked against brute force (small n), the min-max formula and a
sequential NumPy pool-adjacent-violators written here from the textbook algorithm (any n)."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from beyondmse.functional import soft_rank
from beyondmse.functional import rank as rank_module
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


def pav_numpy(y):
    """Textbook PAV on one row (non-increasing fit): push each value, merge while the last two
    blocks violate the order. Returns the fit and the 0-based block index of each position."""
    sums, counts = [], []
    for v in y:
        sums.append(float(v))
        counts.append(1)
        while len(sums) >= 2 and sums[-2] / counts[-2] < sums[-1] / counts[-1]:
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    fit = np.concatenate([np.full(c, s / c) for s, c in zip(sums, counts)])
    block = np.repeat(np.arange(len(counts)), counts)
    return fit, block


def minmax_formula(y):
    """v_i = min_{j <= i} max_{k >= i} mean(y[j..k]) (the min-max characterisation)."""
    n = len(y)
    c = np.concatenate([[0.0], np.cumsum(y)])
    j, k = np.arange(n)[:, None], np.arange(n)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(k >= j, (c[1:][None, :] - c[:-1][:, None]) / (k - j + 1), -np.inf)
    right_max = np.maximum.accumulate(means[:, ::-1], axis=1)[:, ::-1]  # [j, i]: max over k >= i
    return np.where(k >= j, right_max, np.inf).min(axis=0)


def soft_rank_numpy(x, eps):
    """Soft ranks of one row from the definition: sort descending, PAV of z_p - w, z_p - v."""
    z = np.asarray(x, dtype=np.float64) / eps
    n = len(z)
    perm = np.argsort(-z, kind="stable")
    s = z[perm]
    v, block = pav_numpy(s - np.arange(n, 0, -1.0))
    out = np.empty(n)
    out[perm] = s - v
    return out, perm, block


def soft_rank_vjp_numpy(x, eps, g):
    """(g_p - B g_p) un-permuted / eps, with B averaging over PAV's blocks."""
    _, perm, block = soft_rank_numpy(x, eps)
    gs = np.asarray(g, dtype=np.float64)[perm]
    avg = np.array([gs[block == b].mean() for b in block])
    out = np.empty(len(gs))
    out[perm] = (gs - avg) / eps
    return out


def cascading_rows(n, rng):
    """Rows whose pooling cascades: a violation at the start of a long, slowly falling run (each
    pooled block then violates its next neighbor), a rising zig-zag (pooled pairs whose means
    form a rising chain), runs of ties, and random rows."""
    rows = [0.1 * np.arange(n) + (np.arange(n) % 2),np.concatenate([[0.0], 1.0 - 1e-3 * np.arange(n - 1)]),
            np.concatenate([1.0 + 1e-3 * np.arange(n - 1)[::-1], [5.0]]),
            np.full(n, 1.0), np.round(rng.normal(size=n)), np.arange(float(n)), rng.normal(size=n)]
    return np.stack(rows)


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


@pytest.mark.parametrize("max_rounds", [None, 0, 1])
def test_isotonic_matches_brute_force(max_rounds):
    rng = np.random.default_rng(2)
    y = rng.normal(size=(20, 6))
    y[0] = [1, 1, 1, 1, 1, 1]  # ties
    y[1] = np.arange(6.0)  # fully pooled
    v, block = isotonic_decreasing(torch.tensor(y), max_rounds=max_rounds)
    v, block = v.numpy(), block.numpy()
    for row in range(len(y)):
        np.testing.assert_allclose(v[row], isotonic_brute_force(y[row]), atol=1e-12)
        # positions in the same block share a value
        for b in np.unique(block[row]):
            assert np.ptp(v[row][block[row] == b]) < 1e-12


@pytest.fixture(params=["auto", "never", "always"])
def splitting(request, monkeypatch):
    """Rows split at the fit's certain cuts first: by the default rule, never, or always."""
    share = {"auto": rank_module._SPLIT_BELOW, "never": -1.0, "always": 2.0}[request.param]
    monkeypatch.setattr(rank_module, "_SPLIT_BELOW", share)
    return request.param


def sparse_violation_rows(n, rng):
    """Falling rows with a few rises, as DiffKNN's soft ranks see them: mostly singleton blocks,
    short pooled runs, and one long plateau that pools far (a cascade inside one segment)."""
    rows = -np.cumsum(rng.exponential(size=(4, n)), axis=1)
    rows[:, 1::7] += 1.5  # isolated rises
    rows[1, n // 3: n // 3 + n // 4] = rows[1, n // 3]  # a tied plateau
    rows[2, n // 2:] += 0.5 * np.arange(n - n // 2) / n  # a slow rise against the fall
    return rows


@pytest.mark.parametrize("n", [1, 2, 7, 40, 300])
@pytest.mark.parametrize("max_rounds", [None, 0, 2])
def test_isotonic_matches_sequential_pav_and_minmax(n, max_rounds, splitting):
    # the parallel rounds, the linked-list phase (max_rounds=0) and their mix give the textbook
    # PAV's fit and blocks, also on rows whose merges cascade, with and without splitting the
    # rows first
    rng = np.random.default_rng(5)
    y = np.concatenate([cascading_rows(n, rng), rng.normal(size=(10, n)), sparse_violation_rows(n, rng)])
    v, block = isotonic_decreasing(torch.tensor(y), max_rounds=max_rounds)
    for row in range(len(y)):
        fit, blk = pav_numpy(y[row])
        np.testing.assert_allclose(v[row].numpy(), fit, atol=1e-12)
        np.testing.assert_array_equal(block[row].numpy(), blk)
        if n <= 40:
            np.testing.assert_allclose(v[row].numpy(), minmax_formula(y[row]), atol=1e-12)


def test_rows_split_where_prefix_min_exceeds_suffix_max():
    # the certain cuts of the fit, against their definition: min(y[:i]) > max(y[i:])
    rng = np.random.default_rng(8)
    y = sparse_violation_rows(200, rng)
    split = rank_module._split_points(torch.tensor(y)).numpy()
    ref = np.ones_like(split)
    for r in range(len(y)):
        for i in range(1, y.shape[1]):
            ref[r, i] = y[r, :i].min() > y[r, i:].max()
    np.testing.assert_array_equal(split, ref)
    assert 0.2 < ref[:, 1:-1].mean() < 0.95  # the rows have many cuts, but not everywhere


def test_isotonic_bad_input():
    with pytest.raises(ValueError, match="floating-point"):
        isotonic_decreasing(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="floating-point"):
        isotonic_decreasing(torch.zeros(3))


@pytest.mark.parametrize("n, strength, scale", [(500, 1.0, 80.0), (2048, 1.0, 1.0), (700, 0.05, 1.0), (300, 1e-3, 1.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_large_rows_match_the_definition(n, strength, scale, dtype, splitting):
    # long rows (mixed pooled blocks and singletons at scale 80; one big block at scale 1,
    # strength 1; the float64 fallback of float32 input when |z| >> n at strength 1e-3)
    rng = np.random.default_rng(n)
    x = rng.normal(size=(3, n)) * scale
    x[2, : n // 2] = np.round(x[2, : n // 2])  # ties
    g = rng.normal(size=(3, n))
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    out = soft_rank(xt, strength)
    out.backward(torch.tensor(g, dtype=dtype))
    x32 = xt.detach().double().numpy()  # the values soft_rank actually saw
    ref = np.stack([soft_rank_numpy(r, strength)[0] for r in x32])
    ref_g = np.stack([soft_rank_vjp_numpy(r, strength, gr) for r, gr in zip(x32, g)])
    tol = 1e-9 if dtype == torch.float64 else 4 * n * 2.0**-23  # a few ulps of the ranks' scale n
    np.testing.assert_allclose(out.detach().double().numpy(), ref, atol=tol, rtol=0)
    gtol = 1e-9 if dtype == torch.float64 else 1e-5 * np.abs(ref_g).max()
    np.testing.assert_allclose(xt.grad.double().numpy(), ref_g, atol=gtol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sparse_pooling_rows_match_the_definition(dtype, splitting):
    # DiffKNN's regime: entries about one unit apart at strength 0.1, so only near-ties pool and
    # most positions are singleton blocks (the rows split into many independent pieces)
    rng = np.random.default_rng(11)
    n = 1500
    x = np.stack([rng.permutation(np.cumsum(rng.exponential(size=n))) for _ in range(4)])
    x[3, :50] = np.round(x[3, :50])  # ties among the first entries
    g = rng.normal(size=x.shape)
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    soft_rank(xt, 0.1).backward(torch.tensor(g, dtype=dtype))
    xs = xt.detach().double().numpy()
    out = soft_rank(xt.detach(), 0.1).double().numpy()
    ref = np.stack([soft_rank_numpy(r, 0.1)[0] for r in xs])
    ref_g = np.stack([soft_rank_vjp_numpy(r, 0.1, gr) for r, gr in zip(xs, g)])
    pooled = np.abs(ref - np.round(ref)) > 1e-6
    assert 0.01 < pooled.mean() < 0.5  # the case mixes singletons and pooled entries
    tol = 1e-9 if dtype == torch.float64 else 4 * n * 2.0**-23
    np.testing.assert_allclose(out, ref, atol=tol, rtol=0)
    gtol = 1e-9 if dtype == torch.float64 else 1e-5 * np.abs(ref_g).max()
    np.testing.assert_allclose(xt.grad.double().numpy(), ref_g, atol=gtol, rtol=0)


def test_gradcheck_split_path(splitting):
    torch.manual_seed(3)
    x = torch.rand(2, 80, dtype=torch.float64).cumsum(1)  # ~0.5 apart: strength 0.1 pools a few
    x = x[:, torch.randperm(80)].requires_grad_()
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, 0.1), (x,))


def test_no_host_round_trip(monkeypatch):
    # the soft rank stays in torch on the input's device: no .numpy() / .cpu() anywhere
    x = torch.randn(4, 300, requires_grad=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("soft_rank left the device")

    monkeypatch.setattr(torch.Tensor, "numpy", forbidden)
    monkeypatch.setattr(torch.Tensor, "cpu", forbidden)
    soft_rank(x, 0.1).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_block_centred_is_the_block_averaging_vjp():
    # the GPU path's backward: g minus its mean over each block (B g with B the block-averaging
    # matrix), checked against a loop over the blocks
    g = torch.Generator().manual_seed(5)
    grad = torch.randn(3, 12, generator=g, dtype=torch.float64)
    starts = torch.rand(3, 12, generator=g) < 0.4
    starts[:, 0] = True
    block = starts.long().cumsum(1) - 1
    expected = grad.clone()
    for r in range(3):
        for b in block[r].unique():
            inside = block[r] == b
            expected[r, inside] -= grad[r, inside].mean()
    torch.testing.assert_close(rank_module._block_centred(grad, block), expected, rtol=0, atol=1e-14)
    singletons = (torch.bincount(block[0]) == 1).nonzero().view(-1)
    assert (rank_module._block_centred(grad, block)[0][torch.isin(block[0], singletons)] == 0).all()


def test_unchecked_non_finite_input_gives_nan_not_an_error():
    x = torch.randn(3, 6, dtype=torch.float64)
    x[1, 2], x[2, 0] = float("nan"), float("inf")
    x.requires_grad_()
    r = soft_rank(x, 1.0, check_finite=False)
    assert torch.isfinite(r[0]).all() and r[1].isnan().any() and r[2].isnan().any()
    torch.testing.assert_close(r[0], soft_rank(x[:1].detach(), 1.0)[0])
    r[0].sum().backward()


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
    # longer rows: several pooling rounds and the linked-list phase; the blocks define the VJP,
    # so check it too (strength 0.02: a mix of pooled blocks)
    torch.manual_seed(n)
    x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, 0.02), (x,))
    # the case exercises pooled blocks as well as single entries (the VJP averages over blocks)
    z = np.sort(x.detach().numpy() / 0.02, axis=1)[:, ::-1]
    n_blocks = np.array([pav_numpy(r - np.arange(n, 0, -1.0))[1].max() + 1 for r in z])
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
