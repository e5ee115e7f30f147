"""search='faiss': memory-bank inference on exact candidate sets from flat faiss indexes must
give the dense path's predictions (issue 17), and say how much plain NCA's top-k drops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyondmse.heads import neighbors
from beyondmse.heads.faiss_search import padded_candidates
from beyondmse.heads.neighbors import NCA, DiffKNN
from beyondmse.similarity import Cosine, NegSquaredL2

pytest.importorskip("faiss", reason="search='faiss' needs faiss-cpu (in the test extra)")

M, D, Q = 50_000, 16, 120


@pytest.fixture(scope="module")
def bank():
    g = torch.Generator().manual_seed(0)
    mz = torch.randn(M, D, generator=g, dtype=torch.float64)
    my = torch.rand(M, 1, generator=g, dtype=torch.float64)
    # queries near stored points, as at inference on held-out rows
    zq = mz[torch.randperm(M, generator=g)[:Q]] + 0.3 * torch.randn(Q, D, generator=g, dtype=torch.float64)
    zq[0] = mz[0] + 0.01  # stored point 0 in a ball: the index faiss's padding points at
    # a query far from the data whose two nearest points are 0.004 apart: its nearest has
    # s_top < l0, so l = s_top - eps and the second point sits in SoftStep's transition
    far, side = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    far[0], side[1] = 12.0, 1.0
    zq[1], mz[1], mz[2] = far, far + 4.0 * side, far + 4.004 * side
    return mz, my, zq


def _pair(make, mz, my, fit_neighbors, shift):
    """The same head (same parameters, moved off their initial values) with dense and faiss search."""
    torch.manual_seed(1)
    dense = make("dense").double()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a non-zero instance layer: each query has its own ball
        for name, p in dense.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype) / p.shape[-1] ** 0.5)
            if not name.endswith("weight"):  # theta, or the instance layer's bias
                p.add_(shift)
    fast = make("faiss").double()
    fast.load_state_dict(dense.state_dict())
    for h in (dense, fast):
        h.fit_memory(mz, my)
        h.fit_neighbors.fill_(fit_neighbors)
        h.eval()
    return dense, fast


HEADS = {
    "nca-softstep-g": (lambda s: NCA(D, softstep="global", search=s), 1.5),
    "nca-softstep-i": (lambda s: NCA(D, softstep="instance", search=s), 1.0),
    "nca-softstep-g-l2sq": (lambda s: NCA(D, softstep="global", similarity=NegSquaredL2(), search=s), 1.5),
    "dknn-g": (lambda s: DiffKNN(D, search=s), -4.0),
    "dknn-i": (lambda s: DiffKNN(D, k="instance", search=s), -4.0),
}


@pytest.mark.parametrize("fit_neighbors", [255, 0])  # a training-sized subset, or the whole memory
@pytest.mark.parametrize("name", list(HEADS))
def test_faiss_and_dense_predictions_agree_on_50k_points(bank, name, fit_neighbors):
    mz, my, zq = bank
    make, shift = HEADS[name]
    dense, fast = _pair(make, mz, my, fit_neighbors, shift)
    with torch.no_grad():
        expected, got = dense(zq), fast(zq)
    assert got.shape == expected.shape == (Q, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_every_point_with_a_weight_is_a_faiss_candidate(bank):
    mz, my, zq = bank
    dense, fast = _pair(HEADS["nca-softstep-i"][0], mz, my, 255, 1.0)
    with torch.no_grad():
        w = dense.inference_weights(zq)
        covered = torch.zeros_like(w, dtype=torch.bool)
        sizes = torch.zeros(Q, dtype=torch.int64)
        for rows, idx, mask, _ in fast._faiss_balls(zq, mz):
            covered[rows[:, None].expand_as(idx)[mask], idx[mask]] = True
            sizes[rows] = mask.sum(1)
    kept = w > 0
    assert kept.any(1).all() and not (kept & ~covered).any()
    # the balls are tight: at most the kept set plus the float32 margin's few extra points
    assert (sizes <= kept.sum(1) + 1 + kept.sum(1) // 20).all()


def test_float32_stays_within_float32_rounding(bank):
    mz, my, zq = (t.float() for t in bank)
    torch.manual_seed(1)
    dense = NCA(D, softstep="global")
    with torch.no_grad():
        dense.softstep.theta.add_(1.5)  # l0 = sigmoid(2): small balls
    fast = NCA(D, softstep="global", search="faiss")
    fast.load_state_dict(dense.state_dict())
    for h in (dense, fast):
        h.fit_memory(mz, my)
        h.fit_neighbors.fill_(255)
    with torch.no_grad():
        torch.testing.assert_close(fast(zq), dense(zq), rtol=0, atol=1e-4)


def test_plain_nca_top_k_reports_a_bound_that_holds(bank):
    mz, my, zq = bank
    dense = NCA(D, similarity=NegSquaredL2(scale=2.0)).double()
    fast = NCA(D, similarity=NegSquaredL2(scale=2.0), search="faiss", search_k=512).double()
    for h in (dense, fast):
        h.fit_memory(mz, my)
    with torch.no_grad():
        err = (fast(zq) - dense(zq)).abs().max().item()
        kept = fast._index().nearest(zq, 512)[1]
        dropped = 1 - dense.inference_weights(zq).gather(1, kept).sum(1)  # the mass top-k leaves out
    bound = fast.search_tail_bound_
    assert 0 < dropped.max() <= bound < 0.1
    assert err <= bound * float(my.max() - my.min()) + 1e-12
    whole = NCA(D, search="faiss", search_k=M).double()  # K = M: exact, nothing dropped
    whole.fit_memory(mz, my)
    reference = NCA(D).double()
    reference.fit_memory(mz, my)
    with torch.no_grad():
        torch.testing.assert_close(whole(zq[:20]), reference(zq[:20]), rtol=0, atol=1e-10)
    assert whole.search_tail_bound_ == 0.0


def test_a_new_memory_bank_rebuilds_the_index(bank):
    mz, my, zq = bank
    dense, fast = _pair(HEADS["nca-softstep-g"][0], mz, my, 255, 1.5)
    with torch.no_grad():
        fast(zq[:5])
        for h in (dense, fast):  # changed in place: the index must notice
            h.memory_z.mul_(1.1)
        torch.testing.assert_close(fast(zq[:20]), dense(zq[:20]), rtol=0, atol=1e-5)
        other = mz[: M // 2].flip(0).contiguous()
        for h in (dense, fast):
            h.fit_memory(other, my[: M // 2])
        torch.testing.assert_close(fast(zq[:20]), dense(zq[:20]), rtol=0, atol=1e-5)


def test_padded_candidates_keeps_each_querys_hits_in_order():
    lims = np.array([0, 3, 3, 5])
    idx = np.array([7, 1, 4, 9, 2])
    keep = np.array([True, False, True, True, True])
    out, mask = padded_candidates(lims, idx, keep)
    assert out.tolist() == [[7, 4], [0, 0], [9, 2]] and mask.tolist() == [[True, True], [False, False], [True, True]]
    out, mask = padded_candidates(lims, idx)
    assert out[0].tolist() == [7, 1, 4] and mask.sum().item() == 5


def test_faiss_search_refuses_what_it_cannot_do_exactly(monkeypatch):
    with pytest.raises(ValueError, match="unknown search"):
        NCA(4, search="annoy")
    with pytest.raises(ValueError, match="'l2' or 'l2sq'"):
        NCA(4, softstep="global", similarity=Cosine(), search="faiss")
    with pytest.raises(ValueError, match="softmax only"):
        from beyondmse.normalizers import Sparsemax
        NCA(4, normalizer=Sparsemax(), search="faiss")
    with pytest.raises(ValueError, match="search_k"):
        NCA(4, search="faiss", search_k=0)
    monkeypatch.setattr(neighbors, "faiss_available", lambda: False)
    with pytest.raises(ImportError, match=r"beyondmse\[faiss\]"):
        DiffKNN(4, search="faiss")


def test_the_recipes_take_the_search_knob():
    from beyondmse.recipes import build_model

    for method in ("nca", "nca-softstep-g", "dknn-softstep-i"):
        model, _ = build_model(method, 4, 1, {"trunk": "identity", "search": "faiss"})
        assert model.head.search == "faiss"
    assert build_model("nca", 4, 1, {"trunk": "identity"})[0].head.search == "dense"
