"""The neighbor heads against Algorithms 1 and 2 of the SoftStep paper, written as naive loops.

The oracles below follow the paper's pseudo-code line by line (Susman et al. 2025, Algorithm 1
"Differentiable k-NN with SoftStep" and Algorithm 2 "NCA with SoftStep"), on scalars, with
their own similarity, SoftStep (Eq. 1) and ranking; they share nothing with the heads except
the learnable parameter tensors they read. Where the paper's pseudo-code cannot be run as
written, the oracle says so in a comment. Values *and gradients* (with respect to the
embeddings and every head parameter) must agree, so a head that detaches a parameter, reads a
query's parameters from another query or ranks in the wrong direction fails here.
"""

import itertools
import math

import pytest
import torch

from beyondmse.functional import soft_rank
from beyondmse.heads import NCA, DiffKNN
from beyondmse.normalizers import Softmax, Sparsemax
from beyondmse.similarity import RBF, Cosine, NegL2, NegSquaredL2

EPS = 1e-3  # Algorithm 2's epsilon, the heads' default


# ----------------------------------------------------------------------------- scalar pieces
def sim_scalar(kind, a, b, params=None, same=False):
    """Similarity of two vectors, from its definition (``same``: b is a itself)."""
    if kind == "l2":
        if same:  # a point's distance to itself is 0 (and so is its derivative)
            return a.sum() * 0.0
        return -torch.sqrt(((a - b) ** 2).sum())
    if kind == "l2sq":
        return -((a - b) ** 2).sum()
    if kind == "cosine":
        return (a * b).sum() / (a.norm() * b.norm())
    if kind == "rbf":
        sigma, tau = params
        return torch.exp(-((a - b) ** 2).sum() / (2 * sigma ** 2)) / tau
    raise AssertionError(kind)


def softstep_eq1(s, l, u, t):
    """Eq. (1): 0 for s <= l, 1 for s >= u, the power ratio in between."""
    if s <= l:
        return s * 0.0
    if s >= u:
        return s * 0.0 + 1.0
    a = (s - l) ** (1.0 / t)
    b = (u - s) ** (1.0 / t)
    return a / (a + b)


def sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def head_similarity(kind):
    return {"l2": NegL2(), "l2sq": NegSquaredL2(), "cosine": Cosine(),
            "rbf": RBF(bandwidth=2.5, temperature=0.3)}[kind]


def similarity_params(head, kind):
    if kind == "rbf":
        return head.similarity.log_bandwidth.exp(), head.similarity.log_temperature.exp()
    return None


def sim_matrix(kind, Z, params=None):
    n = len(Z)
    return [[sim_scalar(kind, Z[i], Z[j], params, same=i == j) for j in range(n)] for i in range(n)]


# ----------------------------------------------------------------------------- Algorithm 2
def softstep_params_oracle(head, Z, i):
    """(l0, u0, t) of query i: sigma(params) (global) or the linear layer + sigmoid of z_i."""
    mod = head.softstep
    c = mod.lr_scale
    if mod.linear is None:
        raw = c * mod.theta
    else:
        raw = c * (mod.linear.weight @ Z[i] + mod.linear.bias)
    l0, u0, t = (sigmoid(raw[j]) for j in range(3))
    return l0, u0, t


def nca_softstep_oracle(head, kind, Z, Y):
    """Algorithm 2 (NCA with SoftStep) in training mode, one query at a time.

    The pseudo-code returns ``sim + log(SOFTSTEP(...))`` and leaves the prediction to the text:
    softmax over the neighbor set with the query itself excluded (NCA's p_ii = 0).
    """
    n = len(Z)
    S = sim_matrix(kind, Z, similarity_params(head, kind))
    preds = []
    for i in range(n):
        l0, u0, t = softstep_params_oracle(head, Z, i)  # lines 7-11
        row = S[i]  # line 12
        lo = min(row)  # line 13: NORM to [0, 1] (row-wise min-max)
        hi = max(row)
        norm = [(s - lo) / (hi - lo) for s in row]
        top = max(norm[j] for j in range(n) if j != i)  # line 14
        l = torch.minimum(l0, top) - EPS  # line 15
        u = l + u0 * (1 - l)  # line 16
        logits, targets = [], []
        for j in range(n):
            if j == i:
                continue
            w = softstep_eq1(norm[j], l, u, t)  # line 17
            if w > 0:  # log(0) = -inf: the neighbor gets no weight
                logits.append(row[j] + torch.log(w))
                targets.append(Y[j])
        p = torch.softmax(torch.stack(logits), 0)
        preds.append(sum(pj * yj for pj, yj in zip(p, targets)))
    return torch.stack(preds)


def nca_plain_oracle(kind, Z, Y, params=None):
    n = len(Z)
    preds = []
    for i in range(n):
        logits = torch.stack([sim_scalar(kind, Z[i], Z[j], params) for j in range(n) if j != i])
        p = torch.softmax(logits, 0)
        preds.append(sum(p[k] * Y[j] for k, j in enumerate(j for j in range(n) if j != i)))
    return torch.stack(preds)


# ----------------------------------------------------------------------------- Algorithm 1
def hard_rank_oracle(values):
    """0-based ranks by decreasing value (the soft rank's limit as its strength goes to 0)."""
    return [torch.tensor(float(sum(1 for w in values if w > v)), dtype=torch.float64) for v in values]


def soft_k_step(rank, k, q, t):
    """SOFTKSTEP (lines 22-29) without the final log. The pseudo-code's denominator
    ``num + (k - rank)^(1/t)`` takes a fractional power of a negative number inside the
    transition; ``(rank - k)`` is the real-valued reading."""
    if rank < k:
        return rank * 0.0 + 1.0
    if rank > k + q:
        return rank * 0.0
    num = (k + q - rank) ** (1.0 / t)
    den = num + (rank - k) ** (1.0 / t)
    return num / den


def dknn_oracle(head, kind, Z, Y, rank_fn):
    """Algorithm 1 in training mode. ``rank_fn(i, sims)`` ranks query i's neighbor similarities
    (line 12, SOFT_RANK(-sim) - 1, with self pushed to the worst rank by line 10 and so left out
    of the others' ranks)."""
    n = len(Z)
    S = sim_matrix(kind, Z, similarity_params(head, kind))
    kf = head.k_fraction
    preds = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        sims = [S[i][j] for j in others]  # lines 7-11
        ranks = rank_fn(i, sims)  # line 12
        raw = kf.lr_scale * (kf.theta[0] if kf.linear is None else kf.linear.weight[0] @ Z[i] + kf.linear.bias[0])
        k = sigmoid(raw) * (n - 1)  # lines 13-17
        k = torch.clamp(k, min=1.0)  # line 18
        logits, targets = [], []
        for s, r, j in zip(sims, ranks, others):
            g = soft_k_step(r, k, head.q, head.t)  # line 19
            if g > 0:
                logits.append(s + torch.log(g))  # line 20
                targets.append(Y[j])
        p = torch.softmax(torch.stack(logits), 0)
        preds.append(sum(pj * yj for pj, yj in zip(p, targets)))
    return torch.stack(preds)


# ----------------------------------------------------------------------------- helpers
def randomize_(head, seed, scale=0.3):
    """Non-zero instance layers and random global parameters, so that every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def compare(head, oracle, Z, Y):
    """Predictions and gradients (embeddings and parameters) of head and oracle agree."""
    Zh = Z.clone().requires_grad_()
    pred_h = head.neighbor_weights(Zh) @ Y
    Zo = Z.clone().requires_grad_()
    pred_o = oracle(Zo, Y)
    torch.testing.assert_close(pred_h, pred_o, rtol=1e-9, atol=1e-11)
    params = [p for p in head.parameters() if p.requires_grad]
    w = torch.linspace(-1.0, 2.0, pred_h.numel(), dtype=Z.dtype).view_as(pred_h)  # asymmetric
    gh = torch.autograd.grad((w * pred_h).sum(), [Zh] + params, allow_unused=True)
    go = torch.autograd.grad((w * pred_o).sum(), [Zo] + params, allow_unused=True)
    for a, b in zip(gh, go):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    return gh


def data(seed, n=9, d=3):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.rand(n, 1, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, n, dtype=torch.float64)[:, None]
    return Z, Y


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind", ["l2", "l2sq", "cosine", "rbf"])
@pytest.mark.parametrize("mode", ["global", "instance"])
@pytest.mark.parametrize("seed", [0, 1])
def test_nca_softstep_matches_algorithm_2(kind, mode, seed):
    head = NCA(3, similarity=head_similarity(kind), softstep=mode, softstep_lr_scale=2.0).double()
    randomize_(head, seed)
    Z, Y = data(seed, n=12)
    grads = compare(head, lambda z, y: nca_softstep_oracle(head, kind, z, y), Z, Y)
    # every SoftStep parameter gets a gradient (none is detached or unused)
    names = [n for n, p in head.named_parameters()]
    for name, g in zip(names, grads[1:]):
        if name.startswith("softstep"):
            assert g.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["l2", "l2sq", "cosine", "rbf"])
def test_plain_nca_matches_definition(kind):
    head = NCA(3, similarity=head_similarity(kind)).double()
    Z, Y = data(3)
    compare(head, lambda z, y: nca_plain_oracle(kind, z, y, similarity_params(head, kind)), Z, Y)


@pytest.mark.parametrize("kind", ["l2", "l2sq", "rbf"])
@pytest.mark.parametrize("mode", ["global", "instance"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dknn_matches_algorithm_1_hard_rank_limit(kind, mode, seed):
    # a tiny soft-rank strength: the ranks are the hard ranks, computed here by counting
    head = DiffKNN(3, similarity=head_similarity(kind), k=mode, rank_strength=1e-3, q=2.5, t=0.6,
                   k_lr_scale=2.0).double()
    randomize_(head, seed + 10)
    Z, Y = data(seed + 20, n=10)
    grads = compare(head, lambda z, y: dknn_oracle(head, kind, z, y, lambda i, s: hard_rank_oracle(s)), Z, Y)
    k_grads = [g for (name, _), g in zip(head.named_parameters(), grads[1:]) if name.startswith("k_fraction")]
    assert any(g.abs().sum() > 0 for g in k_grads)


@pytest.mark.parametrize("mode", ["global", "instance"])
def test_dknn_soft_ranks_are_algorithm_1_in_gap_units(mode):
    # the documented deviation: soft ranks of -sim with strength rank_strength x (average gap
    # between a query's neighbors), so that the strength does not depend on the embedding scale
    strength = 0.7
    head = DiffKNN(3, k=mode, rank_strength=strength).double()
    randomize_(head, 5)
    Z, Y = data(6, n=10)

    def ranks(i, sims):
        row = torch.stack(sims)
        gap = (row.max() - row.min()) / (len(sims) - 1)
        return list(soft_rank((-row)[None], strength * gap.item())[0] - 1.0)

    compare(head, lambda z, y: dknn_oracle(head, "l2", z, y, ranks), Z, Y)


def test_expected_subset_min_matches_enumeration():
    from beyondmse.heads.neighbors import expected_subset_min

    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 8, generator=g, dtype=torch.float64)
    for n in (1, 3, 8):
        ref = torch.stack([torch.stack([v[r, list(c)].min() for c in itertools.combinations(range(8), n)]).mean()
                           for r in range(2)])
        out = expected_subset_min(v.sort(1).values, 8, n)
        torch.testing.assert_close(out, ref)


def nca_inference_oracle(head, kind, zq, mz, my, subset):
    """Inference of NCA + SoftStep on a memory bank, from its definition: the row is
    {self} + memory, its min is the expected min over every ``subset``-sized subset of the memory."""
    params = similarity_params(head, kind)
    preds = []
    for i in range(len(zq)):
        l0, u0, t = softstep_params_oracle(head, zq, i)
        row = [sim_scalar(kind, zq[i], m, params) for m in mz]
        self_sim = sim_scalar(kind, zq[i], zq[i], params, same=True)
        subsets = list(itertools.combinations(range(len(mz)), subset))
        exp_min = sum(min(row[j] for j in c) for c in subsets) / len(subsets)
        lo = min(self_sim, exp_min)
        hi = max([self_sim] + row)
        norm = [(s - lo) / (hi - lo) for s in row]
        top = max(norm)
        l = torch.minimum(l0, top) - EPS
        u = l + u0 * (1 - l)
        logits, targets = [], []
        for s, sn, y in zip(row, norm, my):
            w = softstep_eq1(sn, l, u, t)
            if w > 0:
                logits.append(s + torch.log(w))
                targets.append(y)
        p = torch.softmax(torch.stack(logits), 0)
        preds.append(sum(pj * yj for pj, yj in zip(p, targets)))
    return torch.stack(preds)


@pytest.mark.parametrize("kind", ["l2", "cosine"])
@pytest.mark.parametrize("mode", ["global", "instance"])
def test_nca_inference_matches_its_definition(kind, mode):
    head = NCA(3, similarity=head_similarity(kind), softstep=mode).double()
    randomize_(head, 7)
    mz, my = data(8, n=9)
    zq, _ = data(9, n=4)
    head.fit_neighbors.fill_(4)  # trained on batches of 5: 4 neighbors
    head.fit_memory(mz, my)
    with torch.no_grad():
        torch.testing.assert_close(head(zq), nca_inference_oracle(head, kind, zq, mz, my, 4))


def dknn_inference_oracle(head, zq, mz, my, n_fit):
    """DiffKNN at inference: hard ranks over the memory, k and q scaled by M / n_fit."""
    M = len(mz)
    kf = head.k_fraction
    preds = []
    for i in range(len(zq)):
        row = [sim_scalar("l2", zq[i], m) for m in mz]
        ranks = hard_rank_oracle(row)
        raw = kf.lr_scale * (kf.theta[0] if kf.linear is None else kf.linear.weight[0] @ zq[i] + kf.linear.bias[0])
        k = torch.clamp(sigmoid(raw) * n_fit, min=1.0) * (M / n_fit)
        q = head.q * M / n_fit
        logits, targets = [], []
        for s, r, y in zip(row, ranks, my):
            g = soft_k_step(r, k, q, head.t)
            if g > 0:
                logits.append(s + torch.log(g))
                targets.append(y)
        p = torch.softmax(torch.stack(logits), 0)
        preds.append(sum(pj * yj for pj, yj in zip(p, targets)))
    return torch.stack(preds)


@pytest.mark.parametrize("mode", ["global", "instance"])
def test_dknn_inference_matches_its_definition(mode):
    head = DiffKNN(3, k=mode, q=3.0).double()
    randomize_(head, 11)
    mz, my = data(12, n=40)
    zq, _ = data(13, n=5)
    head.fit_neighbors.fill_(10)
    head.fit_memory(mz, my)
    with torch.no_grad():
        torch.testing.assert_close(head(zq), dknn_inference_oracle(head, zq, mz, my, 10))
        kept = (head.inference_weights(zq) > 0).sum(1)
    torch.testing.assert_close(kept, head.kept_neighbors(zq, 40))
