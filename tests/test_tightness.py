"""Tests of the tightness family: MultiTarget, ROTReg, RankSim, OrdinalEntropy, PHReg, their
recipes, and the coordinate-prediction task generator."""

import math
import os

import numpy as np
import pytest
import torch

from beyondmse.heads import Linear, MultiTarget
from beyondmse.recipes import build_model, parse_method
from beyondmse.regularizers import OrdinalEntropy, PHReg, RankSim, ROTReg
from beyondmse.regularizers.ranksim import blackbox_rank, rank_normalised
from beyondmse.regularizers.topology import mst_edges
from beyondmse.train import Trainer, seed_everything

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


# --------------------------------------------------------------------------- MultiTarget
def test_multitarget_with_one_target_equals_linear():
    torch.manual_seed(0)
    lin = Linear(6, 2)
    torch.manual_seed(0)
    mt = MultiTarget(6, 2, n_targets=1)
    z, y = _batch(10, 6, 2)
    torch.testing.assert_close(mt(z), lin(z))
    torch.testing.assert_close(mt.loss(z, y).total, lin.loss(z, y).total)


def test_multitarget_prediction_is_mean_and_loss_is_mean_over_regressors():
    torch.manual_seed(0)
    mt = MultiTarget(5, 3, n_targets=4)
    z, y = _batch(7, 5, 3)
    each = torch.stack([z @ mt.fc.weight[k * 3:(k + 1) * 3].T + mt.fc.bias[k * 3:(k + 1) * 3] for k in range(4)], 1)
    torch.testing.assert_close(mt(z), each.mean(1))
    expected = torch.stack([((each[:, k] - y) ** 2).mean() for k in range(4)]).mean()
    torch.testing.assert_close(mt.loss(z, y).total, expected)


def test_multitarget_bad_input():
    with pytest.raises(ValueError, match="n_targets"):
        MultiTarget(4, 1, n_targets=0)
    with pytest.raises(ValueError, match="loss"):
        MultiTarget(4, 1, loss="l7")
    with pytest.raises(ValueError, match="targets of shape"):
        MultiTarget(4, 2).loss(torch.zeros(3, 4), torch.zeros(3, 1))


# --------------------------------------------------------------------------- ROT-Reg
def test_rot_is_zero_when_features_equal_targets_up_to_scale_and_rotation():
    y = torch.rand(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    reg = ROTReg(1.0, gamma=0.1, tol=1e-9, n_iter=5000)
    for z in (y, 5.0 * y, 0.01 * y @ q + 2.0):
        assert float(reg(z, y)) < 1e-7
    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(reg(z, y)) > 1e-3


def test_rot_penalty_matches_equation_9():
    z, y = _batch(20, 4, 1, dtype=torch.float64)
    reg = ROTReg(2.0, gamma=0.2, tol=1e-10, n_iter=5000)
    cz, tz, ty = reg.plans(z, y)
    from beyondmse.functional import self_entropic_ot
    raw = torch.cdist(z, z)
    torch.testing.assert_close(cz, raw / (raw.sum() / (20 * 19)), atol=1e-9, rtol=1e-7)
    cy = torch.cdist(y, y)
    torch.testing.assert_close(ty, self_entropic_ot(cy / (cy.sum() / (20 * 19)), 0.2, tol=1e-10, n_iter=5000),
                               atol=1e-9, rtol=1e-6)
    expected = 2.0 * ((cz * ty).sum() - (cz * tz).sum()).abs()
    torch.testing.assert_close(reg(z, y), expected)


def test_rot_gradient_flows_through_feature_costs_only():
    z, y = _batch(16, 4, 1)
    z.requires_grad_()
    y.requires_grad_()
    ROTReg(1.0)(z, y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert y.grad is None


# --------------------------------------------------------------------------- RankSim
def test_rank_normalised_is_descending_and_normalised():
    r = rank_normalised(torch.tensor([[0.3, 2.0, -1.0, 0.5]]))
    torch.testing.assert_close(r, torch.tensor([[3, 1, 4, 2]]) / 4.0)


def test_blackbox_rank_backward_is_the_interpolation_rule():
    torch.manual_seed(0)
    s = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    target = torch.rand(3, 7, dtype=torch.float64)
    lam = 2.0
    r = blackbox_rank(s, lam)
    loss = ((r - target) ** 2).sum()
    loss.backward()
    g_out = 2 * (r.detach() - target)
    expected = -(rank_normalised(s.detach()) - rank_normalised(s.detach() + lam * g_out)) / lam
    torch.testing.assert_close(s.grad, expected)


def test_blackbox_rank_gradient_step_lowers_rank_loss():
    torch.manual_seed(0)
    s = torch.randn(1, 12, requires_grad=True)
    target = rank_normalised(torch.randn(1, 12))
    opt = torch.optim.SGD([s], lr=1.0)
    start = float(((blackbox_rank(s.detach(), 1.0) - target) ** 2).sum())
    for _ in range(50):
        opt.zero_grad()
        ((blackbox_rank(s, 1.0) - target) ** 2).sum().backward()
        opt.step()
    assert float(((blackbox_rank(s.detach(), 1.0) - target) ** 2).sum()) < 0.2 * start


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


# --------------------------------------------------------------------------- recipes
def test_recipes_and_suffixes_are_registered():
    assert parse_method("mt+rot") == ("mt", ["rot"])
    assert parse_method("ls+ranksim+oe") == ("ls", ["ranksim", "oe"])
    model, _ = build_model("mt+rot", 5, 2, {"rot_gamma": 0.05, "n_targets": 3})
    assert isinstance(model.head, MultiTarget) and model.head.n_targets == 3
    assert [type(r).__name__ for r in model.regularizers] == ["ROTReg"]
    assert model.regularizers[0].gamma == 0.05
    model, _ = build_model("ph-reg", 5, 1, {"ph_reg_topo_weight": 7.0})
    assert model.regularizers[0].topo_weight == 7.0


@pytest.mark.parametrize("method", ["mt", "rot", "mt+rot", "ranksim", "oe", "ph-reg"])
def test_recipes_learn_a_small_task(method):
    g = np.random.default_rng(0)
    X = g.normal(size=(300, 4)).astype(np.float32)
    y = (0.5 + 0.25 * np.tanh(X[:, :1] + 0.5 * X[:, 1:2])).astype(np.float32)
    seed_everything(0)
    model, kw = build_model(method, 4, 1, {"hidden": 32, "dropout": 0.0})
    trainer = Trainer(**{**kw, "max_epochs": 25, "batch_size": 64, "patience": None, "lr": 3e-3},
                      seed=0, device="cpu")
    hist = trainer.fit(model, X[:200], y[:200], X[200:], y[200:])
    mae = float(np.abs(trainer.predict(model, X[200:]).numpy() - y[200:]).mean())
    trivial = float(np.abs(y[200:] - y[:200].mean()).mean())
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert mae < 0.6 * trivial


# --------------------------------------------------------------------------- coordinate task
@pytest.fixture()
def shared_data(monkeypatch):
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")
    if not os.environ.get("BEYONDMSE_DATA") and os.path.isdir(folder):
        monkeypatch.setenv("BEYONDMSE_DATA", folder)


@pytest.mark.parametrize("shape", ["circle", "torus", "mammoth"])
def test_coordinate_task_is_deterministic_by_seed(shape, shared_data):
    from beyondmse.data.coordinates import _find_file, make_coordinates

    if shape == "mammoth" and _find_file("mammoth_points.csv.gz") is None:
        pytest.skip("mammoth_points.csv.gz not available")
    a, b, c = make_coordinates(shape, seed=3), make_coordinates(shape, seed=3), make_coordinates(shape, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y)
    assert a.X.shape == (3000, 100) and a.y.shape == (3000, 3) and a.target_scaling == "none"
    assert [(a.split == s).sum() for s in ("train", "val", "test")] == [100, 100, 2800]
    y = a.y.astype(np.float32)
    np.testing.assert_allclose(a.X[:, :4], np.stack([y[:, 0] + y[:, 1] + y[:, 2], y[:, 0] + y[:, 1] - y[:, 2],
                                                     y[:, 0] - y[:, 1] + y[:, 2], -y[:, 0] + y[:, 1] + y[:, 2]], 1),
                               rtol=1e-5, atol=1e-4)
    if shape == "circle":
        np.testing.assert_allclose(np.linalg.norm(a.y, axis=1), 1.0, atol=1e-9)
    if shape == "torus":
        ring = np.sqrt(a.y[:, 0] ** 2 + a.y[:, 1] ** 2)
        np.testing.assert_allclose((ring - 4.0) ** 2 + a.y[:, 2] ** 2, 1.0, atol=1e-9)


def test_coordinate_tasks_are_registered(shared_data):
    from beyondmse.data import DATASETS, load_dataset

    assert {"coords-circle", "coords-torus", "coords-mammoth"} <= set(DATASETS)
    ds = load_dataset("coords-torus")
    assert ds.name == "coords-torus" and ds.split is not None


def test_coordinate_task_bad_shape():
    from beyondmse.data.coordinates import make_coordinates

    with pytest.raises(ValueError, match="unknown manifold"):
        make_coordinates("sphere")


# --------------------------------------------------------------------------- diagnostics plots
def test_diagnostic_plots_draw(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from beyondmse.plots.tightness import plot_feature_manifold, plot_similarity_matrix, project_features

    t = np.linspace(0, 1, 60)
    z = np.stack([np.cos(3 * t), np.sin(3 * t), t, np.zeros_like(t)], 1)
    p = project_features(z, 2)
    assert p.shape == (60, 2) and np.all(np.isfinite(p))
    ax = plot_feature_manifold(z, t, title="m")
    ax2 = plot_similarity_matrix(z, np.stack([t, 2 * t], 1))
    img = ax2.get_images()[0].get_array()
    assert img.shape == (60, 60) and np.allclose(np.diag(img), 1.0)
    ax.figure.savefig(tmp_path / "m.png")
    plt.close("all")
    with pytest.raises(ValueError, match="rows"):
        plot_similarity_matrix(z, t[:10])


# --------------------------------------------------------------------------- composition
def _composable_recipes():
    from beyondmse.recipes import RECIPES, available_methods

    available_methods()  # loads the family modules
    return sorted(RECIPES)


@pytest.mark.parametrize("base", [r for r in _composable_recipes() if r != "rot"])
def test_rot_suffix_composes_with_every_recipe(base):
    model, _ = build_model(base + "+rot", 6, 1, {"hidden": 16})
    torch.manual_seed(0)
    x, y = torch.randn(32, 6), torch.rand(32, 1)
    model.head.fit_targets(y)
    out = model.training_loss(x, y)
    out.total.backward()
    assert "rot" in out.terms and torch.isfinite(out.total)


def test_suffix_that_repeats_the_recipes_own_regularizer_is_an_error():
    with pytest.raises(ValueError, match="already includes the 'rot' regularizer"):
        build_model("rot+rot", 6, 1)
