"""Tests of the regression-as-classification codec family (functional/codec.py, heads/codec.py,
recipes_codec.py, plots_codec.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from beyondmse.functional.codec import (
    affine_encode,
    decode,
    entropy_from_logits,
    gaussian_encode,
    gaussian_logit_params,
    hard_bin_encode,
    hl_gauss_probs,
    kl_divergence,
    kl_from_logits,
)
from beyondmse.heads import Codec
from beyondmse.heads.codec import MODES
from beyondmse.recipes import build_model, split_params

torch.set_num_threads(1)


# --------------------------------------------------------------------------- functional
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_and_affine_logit_forms_agree(m, dtype):
    torch.manual_seed(0)
    centers = torch.rand(7, m, dtype=dtype)
    y = torch.rand(20, m, dtype=dtype) * 1.4 - 0.2  # also outside the centers' range
    sigma = 0.13
    w, b = gaussian_logit_params(centers, sigma)
    p_affine = affine_encode(y, w, b)
    p_gauss = gaussian_encode(y, centers, sigma)
    assert p_affine.dtype == dtype
    torch.testing.assert_close(p_affine, p_gauss)
    torch.testing.assert_close(p_affine.sum(-1), torch.ones(20, dtype=dtype))
    # a temperature only rescales the parametrisation
    torch.testing.assert_close(affine_encode(y, w * sigma, b * sigma, temperature=sigma), p_gauss)


def test_hard_binning_cross_entropy_equals_its_kl():
    torch.manual_seed(1)
    centers = torch.linspace(0, 1, 9)[:, None]
    y = torch.rand(30, 1)
    idx = hard_bin_encode(y, centers)
    logits = torch.randn(30, 9)
    onehot = F.one_hot(idx, 9).float()
    torch.testing.assert_close(kl_divergence(onehot, logits).mean(), F.cross_entropy(logits, idx))
    # the nearest center is the bin: |y - c_idx| <= half the spacing
    assert bool(((y[:, 0] - centers[idx, 0]).abs() <= 1 / 16 + 1e-6).all())


@pytest.mark.parametrize("y_values", [[-5.0, -0.3, 0.0, 0.01, 0.5, 0.99, 1.0, 1.3, 7.0]])
def test_hl_gauss_probabilities_sum_to_one_including_tails(y_values):
    y = torch.tensor(y_values, dtype=torch.float64)[:, None]
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    p = hl_gauss_probs(y, edges, 0.075)
    assert p.shape == (len(y_values), 10)
    assert bool((p >= 0).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(len(y_values), dtype=torch.float64))
    # far below / above the range all the mass is in the end bins
    assert p[0, 0] > 0.999 and p[-1, -1] > 0.999
    # the interior matches the Gaussian CDF differences
    from scipy.stats import norm

    e = edges.numpy()
    want = norm.cdf((e[5] - 0.5) / 0.075) - norm.cdf((e[4] - 0.5) / 0.075)
    assert abs(float(p[4, 4]) - want) < 1e-12


def test_hl_gauss_grid_factorises():
    torch.manual_seed(2)
    y = torch.rand(6, 2, dtype=torch.float64)
    e = torch.linspace(0, 1, 6, dtype=torch.float64)
    p = hl_gauss_probs(y, [e, e], [0.1, 0.2])
    p0, p1 = hl_gauss_probs(y[:, :1], e, 0.1), hl_gauss_probs(y[:, 1:], e, 0.2)
    torch.testing.assert_close(p, (p0[:, :, None] * p1[:, None, :]).reshape(6, 25))
    torch.testing.assert_close(p.sum(-1), torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_kl_from_logits_gradcheck(scale):
    torch.manual_seed(3)
    a = (torch.randn(5, 6, dtype=torch.float64) * scale).requires_grad_()
    logits = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck(kl_from_logits, (a, logits))
    assert gradcheck(lambda x: kl_from_logits(x, logits.detach()), (a,))
    assert gradcheck(lambda x: kl_from_logits(a.detach(), x), (logits,))


def test_kl_from_logits_matches_reference_and_underflow():
    torch.manual_seed(4)
    a, logits = torch.randn(8, 5), torch.randn(8, 5)
    p, log_q = torch.softmax(a, -1), torch.log_softmax(logits, -1)
    torch.testing.assert_close(kl_from_logits(a, logits), (p * (p.log() - log_q)).sum(-1))
    torch.testing.assert_close(kl_from_logits(a, logits), kl_divergence(p, logits))
    assert bool((kl_from_logits(a, logits) >= 0).all())
    torch.testing.assert_close(kl_from_logits(a, a), torch.zeros(8), atol=1e-6, rtol=0)
    # encoder probabilities that underflow to 0 still give finite gradients
    big = torch.tensor([[0.0, -2000.0, -4000.0]], requires_grad=True)
    kl_from_logits(big, torch.zeros(1, 3, requires_grad=True)).sum().backward()
    assert torch.isfinite(big.grad).all()


@pytest.mark.parametrize("scale", [0.1, 1.0, 20.0])
def test_entropy_from_logits_gradcheck_and_reference(scale):
    torch.manual_seed(5)
    a = (torch.randn(4, 7, dtype=torch.float64) * scale).requires_grad_()
    assert gradcheck(entropy_from_logits, (a,))
    p = torch.softmax(a.detach(), -1)
    torch.testing.assert_close(entropy_from_logits(a.detach()), -(p * p.log()).sum(-1))
    uniform = torch.zeros(2, 7, dtype=torch.float64)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.full((2,), np.log(7.0), dtype=torch.float64))


def test_functional_bad_inputs():
    c = torch.rand(5, 1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_logit_params(c, 0.0)
    with pytest.raises(ValueError, match="k >= 2"):
        gaussian_logit_params(torch.rand(1, 1), 0.1)
    with pytest.raises(ValueError, match=r"shape \(N, 1\)"):
        gaussian_encode(torch.rand(4, 2), c, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        hard_bin_encode(torch.tensor([[float("nan")]]), c)
    with pytest.raises(ValueError, match="increasing"):
        hl_gauss_probs(torch.rand(3, 1), torch.tensor([0.0, 0.5, 0.5, 1.0]), 0.1)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        decode(torch.rand(3, 4), c)
    with pytest.raises(ValueError, match="shape"):
        kl_from_logits(torch.rand(3, 4), torch.rand(3, 5))


# --------------------------------------------------------------------------- head
def _y1(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g) ** 2  # skewed targets in [0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_decoded_predictions_stay_in_convex_hull_1d(mode):
    torch.manual_seed(6)
    head = Codec(8, 1, k=7, mode=mode, stage1_steps=20)
    head.fit_targets(_y1())
    pred = head(torch.randn(300, 8) * 50)  # extreme logits
    lo, hi = head.mu.min(), head.mu.max()
    assert bool((pred >= lo - 1e-6).all() and (pred <= hi + 1e-6).all())


def test_decoded_predictions_stay_in_convex_hull_2d():
    from scipy.spatial import Delaunay

    torch.manual_seed(7)
    y = torch.rand(500, 2)
    head = Codec(8, 2, k=12, mode="e2e-codec")
    head.fit_targets(y)
    pred = head(torch.randn(400, 8) * 20).detach().double().numpy()
    hull = Delaunay(head.mu.detach().double().numpy())
    assert bool((hull.find_simplex(pred, tol=1e-9) >= 0).all())


def _auto_error(head, y):
    with torch.no_grad():
        return float((head.decode(head.encode(y)) - y).abs().mean())


@pytest.mark.parametrize("m, ks", [(1, (5, 15, 25)), (2, (5, 25, 80))])
def test_auto_encoding_error_falls_as_k_grows(m, ks):
    torch.manual_seed(8)
    y = torch.rand(2000, m) ** 1.5
    errors = []
    for k in ks:
        head = Codec(4, m, k=k, mode="soft-bin")
        head.fit_targets(y)
        errors.append(_auto_error(head, y))
    assert errors[0] > errors[1] > errors[2], errors


def test_stage1_lowers_auto_encoding_objective():
    torch.manual_seed(9)
    y = torch.rand(600, 2)
    head = Codec(4, 2, k=10, mode="trained-codec", init="kmeans", lambda_sigma=1.5, stage1_steps=200)
    head.fit_targets(y)
    before, after = head.stage1_objective
    assert after < 0.5 * before, (before, after)
    fresh = Codec(4, 2, k=10, mode="soft-bin", init="kmeans", lambda_sigma=1.5)
    torch.manual_seed(9)
    fresh.fit_targets(y)
    assert _auto_error(head, y) < _auto_error(fresh, y)
    # stage 2 trains the classifier only
    assert not head.weight.requires_grad and not head.mu.requires_grad and head.g.weight.requires_grad


def test_initialisation_m1_uniform_and_sigma():
    y = torch.tensor([[0.2], [0.7], [0.45], [1.2]])
    head = Codec(4, 1, k=5, mode="soft-bin", lambda_sigma=0.5)
    head.fit_targets(y)
    torch.testing.assert_close(head.mu.detach()[:, 0], torch.linspace(0.2, 1.2, 5))
    assert float(head.sigma) == pytest.approx(0.5 * 0.25)
    hb = Codec(4, 1, k=5, mode="hard-bin")
    hb.fit_targets(y)
    torch.testing.assert_close(hb.mu.detach()[:, 0], 0.2 + 0.2 * (torch.arange(5) + 0.5))


def test_grid_init_m2_625_classes_and_hl_gauss():
    torch.manual_seed(10)
    y = torch.rand(300, 2)
    head = Codec(16, 2, k=625, mode="hl-gauss")  # auto -> 25 x 25 grid
    head.fit_targets(y)
    assert head.mu.shape == (625, 2) and head.grid_side == 25
    p = head.encode(y[:5])
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
    out = head.loss(torch.randn(300, 16), y)
    out.total.backward()
    assert torch.isfinite(head.g.weight.grad).all()
    assert Codec(16, 3, k=25, mode="hl-gauss").k == 27  # auto init rounds to a 3 x 3 x 3 grid
    with pytest.raises(ValueError, match="n \\*\\* m"):
        Codec(16, 2, k=600, mode="soft-bin", init="grid")


def test_e2e_loss_terms_and_gradients():
    torch.manual_seed(11)
    y = _y1(200)
    head = Codec(8, 1, k=9, mode="e2e-codec")
    head.fit_targets(y)
    out = head.loss(torch.randn(200, 8), y)
    assert set(out.terms) == {"auto", "entropy", "kl", "pred"}
    want = out.terms["auto"] - 1e-6 * out.terms["entropy"] + 0.068 * out.terms["kl"] + out.terms["pred"]
    torch.testing.assert_close(out.total.detach(), want)
    out.total.backward()
    for p in (head.weight, head.bias, head.mu, head.g.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_fixed_codecs_have_no_trainable_codec():
    for mode in ("hard-bin", "soft-bin", "hl-gauss"):
        head = Codec(4, 1, k=5, mode=mode)
        head.fit_targets(_y1())
        assert [n for n, p in head.named_parameters() if p.requires_grad] == ["g.weight", "g.bias"]
    head = Codec(4, 1, k=5, mode="ls-softmax")
    assert head.mu.requires_grad and not head.weight.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_head_keeps_dtype(dtype):
    head = Codec(4, 1, k=5, mode="e2e-codec").to(dtype)
    head.fit_targets(_y1().to(dtype))
    z = torch.randn(10, 4, dtype=dtype)
    assert head(z).dtype == dtype
    assert head.loss(z, _y1(10).to(dtype)).total.dtype == dtype
    assert head.encode(_y1(10).to(dtype)).dtype == dtype


# --------------------------------------------------------------------------- bad input
def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="k .*>= 2"):
        Codec(4, 1, k=1)
    with pytest.raises(ValueError, match="lambda_kl must be >= 0"):
        Codec(4, 1, lambda_kl=-0.1)
    with pytest.raises(ValueError, match="lambda_sigma must be > 0"):
        Codec(4, 1, lambda_sigma=-1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        Codec(4, 1, alpha=-1.0)
    with pytest.raises(ValueError, match="unknown codec mode"):
        Codec(4, 1, mode="bins")
    with pytest.raises(ValueError, match="hl-gauss needs bins"):
        Codec(4, 2, mode="hl-gauss", init="kmeans")
    with pytest.raises(ValueError, match="unknown parameter"):
        split_params("soft-bin", {"lambda_kl": 0.1})  # a knob soft-bin does not have


def test_nan_targets_raise():
    head = Codec(4, 1, k=5, mode="soft-bin")
    bad = torch.tensor([[0.1], [float("nan")]])
    with pytest.raises(ValueError, match="NaN"):
        head.fit_targets(bad)
    head.fit_targets(_y1())
    with pytest.raises(ValueError, match="NaN"):
        head.loss(torch.randn(2, 4), bad)
    with pytest.raises(ValueError, match="NaN"):
        head.encode(bad)


def test_out_of_range_targets_are_clipped_into_the_hull():
    y = torch.rand(100, 1) * 0.5 + 0.25  # fitted range about [0.25, 0.75]
    for mode in ("hard-bin", "soft-bin", "hl-gauss", "e2e-codec"):
        head = Codec(4, 1, k=6, mode=mode)
        head.fit_targets(y)
        outside = torch.tensor([[-3.0], [0.0], [1.0], [9.0]])
        clipped = outside.clamp(float(head.lo), float(head.hi))
        torch.testing.assert_close(head.encode(outside), head.encode(clipped))
        rec = head.decode(head.encode(outside))
        assert bool((rec >= head.mu.min() - 1e-6).all() and (rec <= head.mu.max() + 1e-6).all())
    strict = Codec(4, 1, k=6, mode="soft-bin", out_of_range="error")
    strict.fit_targets(y)
    with pytest.raises(ValueError, match="outside the fitted range"):
        strict.encode(torch.tensor([[2.0]]))


def test_ls_softmax_has_no_encoder():
    head = Codec(4, 1, k=5, mode="ls-softmax")
    with pytest.raises(ValueError, match="no target encoder"):
        head.encode(_y1(3))


# --------------------------------------------------------------------------- recipes learn
@pytest.fixture(scope="module")
def small_diamonds():
    from beyondmse.data import load_dataset

    ds = load_dataset("diamonds-num")  # embedded in the package
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ds.X))[:1500]
    X, y = ds.X[idx].astype(np.float32), ds.y[idx].astype(np.float32)
    tr, te = slice(0, 1000), slice(1000, 1500)
    lo, span = X[tr].min(0), np.ptp(X[tr], axis=0) + 1e-12
    ylo, yspan = y[tr].min(0), np.ptp(y[tr], axis=0)
    X, y = (X - lo) / span, (y - ylo) / yspan
    return X[tr], y[tr], X[te], y[te]


@pytest.mark.parametrize("method", ["ls-softmax", "hard-bin", "soft-bin", "hl-gauss", "trained-codec", "e2e-codec"])
def test_every_codec_recipe_learns_on_diamonds(method, small_diamonds):
    from beyondmse.train import Trainer, seed_everything

    Xtr, ytr, Xte, yte = small_diamonds
    seed_everything(0)
    params = {"k": 15, "stage1_steps": 100} if method == "trained-codec" else {"k": 15}
    model, kw = build_model(method, Xtr.shape[1], 1, params)
    kw.update(max_epochs=12, patience=None, batch_size=64)
    Trainer(seed=0, device="cpu", **kw).fit(model, Xtr, ytr)
    pred = Trainer(device="cpu").predict(model, Xte).numpy()
    mae = np.abs(pred - yte).mean()
    mean_mae = np.abs(ytr.mean() - yte).mean()
    assert mae < 0.5 * mean_mae, (method, mae, mean_mae)


def test_codec_recipe_multidimensional_end_to_end():
    from beyondmse.train import Trainer, seed_everything

    seed_everything(0)
    X = torch.rand(400, 3)
    y = torch.stack([X[:, 0] * X[:, 1], (X[:, 2] + X[:, 0]) / 2], dim=1)
    model, kw = build_model("e2e-codec", 3, 2, {"k": 20})
    kw.update(max_epochs=15, patience=None, batch_size=64)
    Trainer(seed=0, device="cpu", **kw).fit(model, X[:300], y[:300])
    pred = Trainer(device="cpu").predict(model, X[300:])
    assert pred.shape == (100, 2)
    mae = (pred - y[300:]).abs().mean()
    assert mae < 0.6 * (y[:300].mean(0) - y[300:]).abs().mean()


def test_recipes_registered_with_family():
    from beyondmse.recipes import RECIPES, available_methods

    names = set(available_methods())
    for name in ("ls-softmax", "hard-bin", "soft-bin", "hl-gauss", "trained-codec", "e2e-codec"):
        assert name in names and RECIPES[name].family == "codec"
        assert RECIPES[name].knobs["k"] == 25
    model, _ = build_model("hard-bin", 6, 1, {"k": 5})
    assert model.head.k == 5 and model.head.g.in_features == 128


# --------------------------------------------------------------------------- plots
def test_plots_return_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from beyondmse.plots.codec import plot_codec

    head = Codec(4, 1, k=5, mode="soft-bin")
    head.fit_targets(_y1())
    fig = plot_codec(head, n_points=100)
    assert len(fig.axes[0].lines) >= 5
    head2 = Codec(4, 2, k=9, mode="e2e-codec")
    head2.fit_targets(torch.rand(200, 2))
    path = tmp_path / "codec2d.png"
    fig2 = plot_codec(head2, path=path, n_points=60)
    assert path.exists() and path.stat().st_size > 1000 and len(fig2.axes) >= 2


def test_encoder_scales_give_the_same_initial_encoder():
    y = _y1(300)
    raw = Codec(4, 1, k=11, mode="e2e-codec")
    scaled = Codec(4, 1, k=11, mode="e2e-codec", encoder_scale="sigma")
    assert raw.encoder_scale == "raw" and float(raw.temperature) == 1.0
    raw.fit_targets(y)
    scaled.fit_targets(y)
    torch.testing.assert_close(raw.encode(y), scaled.encode(y), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(raw.encode(y), gaussian_encode(y, raw.mu.detach(), float(raw.sigma)),
                               atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="encoder_scale"):
        Codec(4, 1, encoder_scale="log")
