"""The tightness-family regularizers: ROTReg, RankSim, OrdinalEntropy, PHReg."""

import math

import pytest
import torch

from beyondmse.regularizers import OrdinalEntropy, PHReg, RankSim, ROTReg
from beyondmse.regularizers.topology import mst_edges

torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine

REGULARIZERS = {
    "rot": lambda: ROTReg(1.0, gamma=0.1),
    "ranksim": lambda: RankSim(1.0),
    "oe": lambda: OrdinalEntropy(1.0),
    "ph-reg": lambda: PHReg(1.0, topo_weight=1.0, dim_weight=1.0, max_points=40, min_points=10, point_jump=10),
}


def _batch(n=48, d=8, m=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.rand(n, m, generator=g, dtype=dtype)


# ROT-Reg's own tests (transcriptions of Eq. 9 and of the released code): test_rot.py


def test_ranksim_keeps_one_sample_per_distinct_target():
    torch.manual_seed(0)
    z = torch.randn(30, 5)
    y = torch.tensor([0.0, 1.0, 2.0]).repeat(10)[:, None]
    reg = RankSim(1.0)
    value = reg(z, y)
    # 3 distinct targets -> 3 rows of 3 ranks; each row's squared error is at most 2 * (2/3)^2 / 3
    assert 0.0 <= float(value) <= 3 * 2 * (2 / 3) ** 2 / 3 + 1e-6


def test_ranksim_is_zero_when_similarity_ranks_agree():
    y = torch.rand(9, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # no tied distances
    ang = y * 1.5  # cosine similarity decreases with |angle difference| like label similarity
    z = torch.cat([ang.cos(), ang.sin()], 1)
    assert float(RankSim(1.0)(z, y)) == 0.0


# --------------------------------------------------------------------------- Ordinal Entropy
def test_ordinal_entropy_matches_a_naive_loop():
    torch.manual_seed(0)
    z = torch.randn(12, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5], dtype=torch.float64)[:, None]
    values = y.unique(dim=0)
    centres = torch.stack([z[(y == v).all(1)].mean(0) for v in values])
    p = centres / centres.norm(dim=1, keepdim=True)
    pairs = [(k, l) for k in range(len(values)) for l in range(k + 1, len(values))]
    w = torch.tensor([float((values[k] - values[l]).norm()) for k, l in pairs], dtype=torch.float64)
    w = (w - w.min()) / w.max()
    div = -torch.stack([(p[k] - p[l]).norm() for k, l in pairs]) @ w / len(pairs)
    zn = z / z.norm(dim=1, keepdim=True)
    r = torch.stack([((zn[i] - p[(values == y[i]).all(1).nonzero()[0, 0]]) ** 2).sum() for i in range(12)])
    tight = r[r > 0].mean()
    torch.testing.assert_close(OrdinalEntropy(1.0, tightness_weight=0.5)(z, y), div + 0.5 * tight)


# --------------------------------------------------------------------------- PH-Reg
def test_mst_edges_match_a_brute_force_prim_and_tolerate_duplicates():
    x = torch.tensor([[0.0], [0.0], [1.0], [3.0], [3.5]])
    d = torch.cdist(x, x)
    rows, cols = mst_edges(d)
    assert len(rows) == 4
    assert math.isclose(float(d[rows, cols].sum()), 0 + 1 + 2 + 0.5)
    assert {(0, 1), (1, 0)} & set(zip(rows.tolist(), cols.tolist()))  # the zero-length edge is kept


def test_ph_reg_topological_term_is_zero_for_scaled_copies():
    y = torch.rand(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reg = PHReg(1.0, topo_weight=1.0, dim_weight=0.0)
    assert float(reg(3.0 * y, y)) < 1e-12
    assert float(reg(torch.randn(30, 3, dtype=torch.float64), y)) > 1e-4


def test_ph_reg_dimension_term_is_scale_free_and_detects_dimension_mismatch():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(200, 1, generator=g, dtype=torch.float64)
    reg = PHReg(1.0, topo_weight=0.0, dim_weight=1.0, max_points=200, min_points=40, point_jump=40)
    torch.manual_seed(0)
    same = float(reg(torch.cat([y, 2 * y], 1), y))  # a line in 2-D vs a line: same dimension
    torch.manual_seed(0)
    other = float(reg(torch.rand(200, 5, generator=g, dtype=torch.float64), y))  # a 5-D blob
    assert same < 0.05 < other


# --------------------------------------------------------------------------- all regularizers
@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_each_regularizer_reduces_its_objective_alone(name):
    torch.manual_seed(0)
    z0, y = _batch(40, 6, 2)
    z = z0.clone().requires_grad_()
    reg = REGULARIZERS[name]()
    opt = torch.optim.Adam([z], lr=0.05)
    torch.manual_seed(1)
    start = float(reg(z.detach(), y))
    for _ in range(60):
        opt.zero_grad()
        reg(z, y).backward()
        opt.step()
    torch.manual_seed(1)
    end = float(reg(z.detach(), y))
    assert end < start - 0.1 * abs(start)


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_gradients_are_finite_with_duplicated_points(name):
    z, y = _batch(20, 5, 3)
    z = torch.cat([z, z[:6]]).requires_grad_()
    y = torch.cat([y, y[:6]])
    z.data[3] = z.data[4]  # also a duplicated feature with different targets
    torch.manual_seed(0)
    REGULARIZERS[name]()(z, y).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
@pytest.mark.parametrize("m", [1, 3])
def test_m_dimensional_targets_and_dtype(name, m):
    z, y = _batch(24, 5, m, dtype=torch.float64)
    out = REGULARIZERS[name]()(z, y)
    assert out.dim() == 0 and out.dtype == torch.float64 and torch.isfinite(out)


@pytest.mark.parametrize("name", ["ranksim", "oe", "ph-reg", "rot"])
def test_identical_targets_give_a_finite_value_in_the_graph(name):
    z = torch.randn(10, 4, requires_grad=True)
    y = torch.ones(10, 1)
    out = REGULARIZERS[name]()(z, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
@pytest.mark.parametrize("n", [1, 2])
def test_batches_below_three_raise(name, n):
    z, y = _batch(n, 4, 1)
    with pytest.raises(ValueError, match="at least 3"):
        REGULARIZERS[name]()(z, y)


@pytest.mark.parametrize("cls", [ROTReg, RankSim, OrdinalEntropy, PHReg])
def test_negative_weight_raises(cls):
    with pytest.raises(ValueError, match="weight"):
        cls(-1.0)


@pytest.mark.parametrize("gamma", [0.0, -0.5, float("nan")])
def test_rot_bad_gamma_raises(gamma):
    with pytest.raises(ValueError, match="gamma"):
        ROTReg(1.0, gamma=gamma)


def test_other_bad_parameters_raise():
    with pytest.raises(ValueError, match="lambda_val"):
        RankSim(1.0, lambda_val=0.0)
    with pytest.raises(ValueError, match="tightness_weight"):
        OrdinalEntropy(1.0, tightness_weight=-1.0)
    with pytest.raises(ValueError, match="dim_weight"):
        PHReg(1.0, dim_weight=-1.0)
    with pytest.raises(ValueError, match="max_points"):
        ROTReg(1.0, max_points=2)
    with pytest.raises(ValueError, match="same N"):
        ROTReg(1.0)(torch.zeros(5, 2), torch.zeros(4, 1))
