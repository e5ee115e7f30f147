"""The neighbor heads (NCA, DiffKNN) with SoftStep: finiteness, masking, chunked inference, state."""

import io

import pytest
import torch
from torch import nn

from beyondmse.similarity import RBF, Cosine, make_similarity
from beyondmse.heads import NCA, DiffKNN, Linear
from beyondmse.heads.neighbors import GlobalSoftStep, InstanceSoftStep, knn_step_weights

CONFIGS = {
    "nca": lambda d: NCA(d),
    "nca-softstep-g": lambda d: NCA(d, softstep="global"),
    "nca-softstep-i": lambda d: NCA(d, softstep="instance"),
    "nca-sparsemax": lambda d: NCA(d, normalization="sparsemax"),
    "dknn-g": lambda d: DiffKNN(d, k="global"),
    "dknn-i": lambda d: DiffKNN(d, k="instance"),
    "nca-softstep-g-rbf": lambda d: NCA(d, softstep="global", similarity=RBF(0.5, learnable=True)),
    "dknn-cosine": lambda d: DiffKNN(d, similarity=Cosine()),
}


def loss_and_grads(head, z, y):
    z = z.clone().requires_grad_()
    out = head.loss(z, y)
    out.total.backward()
    grads = [z.grad] + [p.grad for p in head.parameters() if p.grad is not None]
    return out.total, grads


def assert_finite(total, grads):
    assert torch.isfinite(total), total
    for g in grads:
        assert torch.isfinite(g).all()


# ----------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("name", list(CONFIGS))
def test_degenerate_batches_are_finite(name):
    torch.manual_seed(0)
    head = CONFIGS[name](3)
    z = torch.randn(12, 3)
    y = torch.rand(12, 1)
    dup = z.clone()
    dup[6:] = dup[:6]  # duplicated points: zero distances
    cases = [
        (dup, y),
        (torch.ones(12, 3), y),  # all tied
        (z, torch.full((12, 1), 0.3)),  # constant targets
        (z[:2], y[:2]),  # batch of 2
        (torch.zeros(5, 3), y[:5]),  # all zero (cosine of zero vectors)
    ]
    for zz, yy in cases:
        head.zero_grad()
        assert_finite(*loss_and_grads(head, zz, yy))


@pytest.mark.parametrize("kind", ["global", "instance"])
def test_very_sharp_softstep_is_finite(kind):
    torch.manual_seed(1)
    head = NCA(3, softstep=kind, softstep_init=(0.5, 0.01, 1e-3))
    total, grads = loss_and_grads(head, torch.randn(16, 3), torch.rand(16, 1))
    assert_finite(total, grads)
    w = head.neighbor_weights(torch.randn(16, 3))
    assert (w.sum(1) - 1).abs().max() < 1e-5
    assert ((w > 0).sum(1) >= 1).all()


def test_sharp_dknn_is_finite():
    torch.manual_seed(1)
    head = DiffKNN(3, t=1e-3, q=0.5, rank_strength=1e-3, k_init=0.01)
    assert_finite(*loss_and_grads(head, torch.randn(16, 3), torch.rand(16, 1)))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_self_is_masked(name):
    torch.manual_seed(2)
    head = CONFIGS[name](3)
    z = torch.randn(10, 3)
    w = head.neighbor_weights(z)
    assert (w.diagonal() == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(10))
    # a sample's own target never enters its prediction
    y = torch.rand(10, 1)
    y2 = y.clone()
    y2[0] = 100.0
    torch.testing.assert_close((w @ y)[0], (w @ y2)[0])


def test_at_least_one_neighbor_keeps_weight_with_strong_softstep():
    torch.manual_seed(3)
    head = NCA(2, softstep="global", softstep_init=(0.99, 0.01, 0.05))
    w = head.neighbor_weights(torch.randn(20, 2))
    assert ((w > 0).sum(1) >= 1).all()
    assert ((w > 0).sum(1) < 19).any()  # and it is actually sparse


def test_sparsemax_weights_sum_to_one_with_exact_zeros():
    torch.manual_seed(4)
    head = NCA(2, normalization="sparsemax")
    w = head.neighbor_weights(3.0 * torch.randn(30, 2))
    torch.testing.assert_close(w.sum(1), torch.ones(30))
    assert (w >= 0).all()
    off = ~torch.eye(30, dtype=torch.bool)
    assert (w[off] == 0).sum() > 0.5 * off.sum()


def test_knn_step_weights_shape():
    r = torch.arange(10.0)[None, :]
    w = knn_step_weights(r, 3.0, n_neighbors=9, q=4.0, t=0.75)
    assert (w[0, :4] == 1).all() and (w[0, 7:] == 0).all()
    assert ((w[0, 4:7] > 0) & (w[0, 4:7] < 1)).all()
    assert (w[0, 4:7].diff() < 0).all()


# ----------------------------------------------------------------------------- inference
def dense_nca_prediction(head, zq, mz, my):
    sim = head.similarity(zq, mz)
    if head.softstep is None:
        logits = sim
    else:
        from beyondmse.heads.neighbors import _masked_log_weight_logits, _softstep_weights
        w = _softstep_weights(sim, sim.min(1).values, sim.max(1).values, head.softstep(zq), head.eps, head.min_gap)
        logits = _masked_log_weight_logits(sim, w)
    return head._normalize(logits) @ my


@pytest.mark.parametrize("name", ["nca", "nca-softstep-g", "nca-softstep-i", "nca-sparsemax", "nca-softstep-g-rbf"])
def test_chunked_inference_equals_dense_nca(name):
    torch.manual_seed(5)
    head = CONFIGS[name](3).double()
    mz, my = torch.randn(37, 3, dtype=torch.float64), torch.rand(37, 2, dtype=torch.float64)
    head.target_dim = 2
    head.memory_y = torch.empty(0, 2, dtype=torch.float64)
    head.fit_memory(mz, my)
    zq = torch.randn(11, 3, dtype=torch.float64)
    with torch.no_grad():
        head.chunk_size, head.query_chunk_size = 5, 3
        chunked = head(zq)
        head.chunk_size, head.query_chunk_size = 10**6, 10**6
        full = head(zq)
        ref = dense_nca_prediction(head, zq, mz, my)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(full, ref)


@pytest.mark.parametrize("kind", ["global", "instance"])
def test_chunked_inference_equals_dense_dknn(kind):
    torch.manual_seed(6)
    head = DiffKNN(3, k=kind, k_init=0.2)
    mz, my = torch.randn(53, 3), torch.rand(53, 1)
    head.fit_memory(mz, my)
    zq = torch.randn(9, 3)
    with torch.no_grad():
        head.chunk_size, head.query_chunk_size = 4, 2
        chunked = head(zq)
        head.chunk_size, head.query_chunk_size = 10**6, 10**6
        full = head(zq)
        # oracle: softmax of the similarities of the floor(0.2 * 52) + 1 = 11 most similar points
        sim = head.similarity(zq, mz)
        keep = head.kept_neighbors(zq, 53)
        assert (keep == 11).all()
        top, idx = sim.topk(11, dim=1)
        ref = torch.einsum("qk,qkm->qm", top.softmax(1), my[idx])
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(full, ref)


def test_predicting_before_fit_memory_raises():
    for make in CONFIGS.values():
        with pytest.raises(ValueError, match="fit_memory"):
            make(3)(torch.randn(4, 3))


@pytest.mark.parametrize("name", ["nca-softstep-i", "dknn-i", "nca-sparsemax"])
def test_state_dict_round_trip_keeps_memory(name):
    torch.manual_seed(7)
    head = CONFIGS[name](3)
    head.fit_memory(torch.randn(25, 3), torch.rand(25, 1))
    with torch.no_grad():
        head.softstep.linear.bias.add_(0.3) if name == "nca-softstep-i" else None
    buf = io.BytesIO()
    torch.save(head.state_dict(), buf)
    buf.seek(0)
    fresh = CONFIGS[name](3)
    assert fresh.memory_z.shape == (0, 3) and fresh.memory_y.shape == (0, 1)
    fresh.load_state_dict(torch.load(buf))
    assert fresh.memory_z.shape == (25, 3)
    zq = torch.randn(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(fresh(zq), head(zq))


# ----------------------------------------------------------------------------- bad input
def test_bad_input():
    head = NCA(3)
    with pytest.raises(ValueError, match="at least 2"):
        head.loss(torch.randn(1, 3), torch.rand(1, 1))
    with pytest.raises(ValueError, match="rows"):
        head.loss(torch.randn(4, 3), torch.rand(5, 1))
    with pytest.raises(ValueError, match="rows"):
        head.fit_memory(torch.randn(4, 3), torch.rand(5, 1))
    with pytest.raises(ValueError, match="dimension"):
        head.fit_memory(torch.randn(4, 2), torch.rand(4, 1))
    with pytest.raises(ValueError, match="larger than the neighbor set"):
        knn_step_weights(torch.arange(5.0)[None], 7.0, n_neighbors=4)
    with pytest.raises(ValueError, match="at least 2"):
        DiffKNN(3).loss(torch.randn(1, 3), torch.rand(1, 1))
    with pytest.raises(ValueError, match="k_init"):
        DiffKNN(3, k_init=1.5)
    with pytest.raises(ValueError, match="softstep"):
        NCA(3, softstep="local")
    with pytest.raises(ValueError, match="normalization"):
        NCA(3, normalization="entmax")
    with pytest.raises(ValueError, match="similarity"):
        make_similarity("manhattan")
    with pytest.raises(ValueError, match="init"):
        GlobalSoftStep((0.0, 0.5, 0.5))


def test_softstep_param_modules_shapes():
    z = torch.randn(6, 4)
    g = GlobalSoftStep()(z)
    i = InstanceSoftStep(4)(z)
    assert [p.shape for p in g] == [(1, 1)] * 3
    assert [p.shape for p in i] == [(6, 1)] * 3
    torch.testing.assert_close(torch.cat(i, 1)[0], torch.tensor([0.25, 0.5, 0.5]))


# ----------------------------------------------------------------------------- learning
def train_and_score(head, trunk, X, y, Xt, yt, steps=80, lr=0.03):
    torch.manual_seed(0)
    params = list(trunk.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randperm(len(X), generator=gen)[:64]
        loss = head.loss(trunk(X[idx]), y[idx]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        if head.needs_memory:
            head.fit_memory(trunk(X), y)
        return ((head(trunk(Xt)) - yt) ** 2).mean().item()


@pytest.mark.parametrize("name", ["nca", "nca-softstep-g", "nca-softstep-i", "nca-sparsemax", "dknn-g", "dknn-i"])
def test_learns_nonlinear_target_where_linear_cannot(name):
    # y = x1 * x2 on [-1, 1]^2 through a *linear* embedding: a linear head stays linear in x
    # (it can only predict the mean), a neighbor head is nonlinear in its neighbors
    g = torch.Generator().manual_seed(10)
    X = torch.rand(400, 2, generator=g) * 2 - 1
    y = (X[:, :1] * X[:, 1:])
    Xt = torch.rand(200, 2, generator=g) * 2 - 1
    yt = Xt[:, :1] * Xt[:, 1:]
    torch.manual_seed(0)
    lin = train_and_score(Linear(8, 1), nn.Linear(2, 8), X, y, Xt, yt)
    torch.manual_seed(0)
    nb = train_and_score(CONFIGS[name](8), nn.Linear(2, 8), X, y, Xt, yt)
    assert nb < 0.5 * lin, (nb, lin)
