"""The Codec head: every codec mode's encode / decode / loss, initialisation and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from beyondmse.functional.codec import gaussian_encode
from beyondmse.heads import Codec
from beyondmse.heads import codec as codec_module
from beyondmse.heads.codec import MODES
from beyondmse.recipes import split_params

torch.set_num_threads(1)


# --------------------------------------------------------------------------- head
def _y1(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g) ** 2  # skewed targets in [0, 1]


@pytest.mark.parametrize("mode", MODES)
def test_decoded_predictions_stay_in_convex_hull_1d(mode):
    torch.manual_seed(6)
    head = Codec.for_mode(mode, 8, 1, k=7, **({"stage1_steps": 20} if mode in ("trained-codec", "e2e-codec") else {}))
    head.fit_targets(_y1())
    pred = head(torch.randn(300, 8) * 50)  # extreme logits
    lo, hi = head.mu.min(), head.mu.max()
    assert bool((pred >= lo - 1e-6).all() and (pred <= hi + 1e-6).all())


def test_decoded_predictions_stay_in_convex_hull_2d():
    from scipy.spatial import Delaunay

    torch.manual_seed(7)
    y = torch.rand(500, 2)
    head = Codec.for_mode("e2e-codec", 8, 2, k=12)
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
        head = Codec.for_mode("soft-bin", 4, m, k=k)
        head.fit_targets(y)
        errors.append(_auto_error(head, y))
    assert errors[0] > errors[1] > errors[2], errors


def test_stage1_lowers_auto_encoding_objective():
    torch.manual_seed(9)
    y = torch.rand(600, 2)
    head = Codec.for_mode("trained-codec", 4, 2, k=10, init="kmeans", lambda_sigma=1.5, stage1_steps=200)
    head.fit_targets(y)
    before, after = head.stage1_objective
    assert after < 0.5 * before, (before, after)
    fresh = Codec.for_mode("soft-bin", 4, 2, k=10, init="kmeans", lambda_sigma=1.5)
    torch.manual_seed(9)
    fresh.fit_targets(y)
    assert _auto_error(head, y) < _auto_error(fresh, y)
    # stage 2 trains the classifier only
    assert not head.centers.requires_grad and not head.log_prior.requires_grad
    assert not head.mu.requires_grad and head.g.weight.requires_grad


def test_initialisation_m1_uniform_and_sigma():
    y = torch.tensor([[0.2], [0.7], [0.45], [1.2]])
    head = Codec.for_mode("soft-bin", 4, 1, k=5, lambda_sigma=0.5)
    head.fit_targets(y)
    torch.testing.assert_close(head.mu.detach()[:, 0], torch.linspace(0.2, 1.2, 5))
    assert float(head.sigma) == pytest.approx(0.5 * 0.25)
    hb = Codec.for_mode("hard-bin", 4, 1, k=5)
    hb.fit_targets(y)
    torch.testing.assert_close(hb.mu.detach()[:, 0], 0.2 + 0.2 * (torch.arange(5) + 0.5))


def test_grid_init_m2_625_classes_and_hl_gauss():
    torch.manual_seed(10)
    y = torch.rand(300, 2)
    head = Codec.for_mode("hl-gauss", 16, 2, k=625)  # auto -> 25 x 25 grid
    head.fit_targets(y)
    assert head.mu.shape == (625, 2) and head.grid_side == 25
    p = head.encode(y[:5])
    torch.testing.assert_close(p.sum(-1), torch.ones(5))
    out = head.loss(torch.randn(300, 16), y)
    out.total.backward()
    assert torch.isfinite(head.g.weight.grad).all()
    assert Codec.for_mode("hl-gauss", 16, 3, k=25).k == 27  # auto init rounds to a 3 x 3 x 3 grid
    with pytest.raises(ValueError, match="n \\*\\* m"):
        Codec.for_mode("soft-bin", 16, 2, k=600, init="grid")


def test_e2e_loss_terms_and_gradients():
    torch.manual_seed(11)
    y = _y1(200)
    head = Codec.for_mode("e2e-codec", 8, 1, k=9)
    head.fit_targets(y)
    out = head.loss(torch.randn(200, 8), y)
    assert set(out.terms) == {"auto", "entropy", "kl", "pred"}
    want = out.terms["auto"] - 1e-6 * out.terms["entropy"] + 1.0 * out.terms["kl"] + out.terms["pred"]
    torch.testing.assert_close(out.total.detach(), want)
    out.total.backward()
    for p in (head.centers, head.log_prior, head.mu, head.g.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_fixed_codecs_have_no_trainable_codec():
    for mode in ("hard-bin", "soft-bin", "hl-gauss"):
        head = Codec.for_mode(mode, 4, 1, k=5)
        head.fit_targets(_y1())
        assert [n for n, p in head.named_parameters() if p.requires_grad] == ["g.weight", "g.bias"]
    head = Codec.for_mode("ls-softmax", 4, 1, k=5)
    assert head.mu.requires_grad
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["mu", "g.weight", "g.bias"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_head_keeps_dtype(dtype):
    head = Codec.for_mode("e2e-codec", 4, 1, k=5).to(dtype)
    head.fit_targets(_y1().to(dtype))
    z = torch.randn(10, 4, dtype=dtype)
    assert head(z).dtype == dtype
    assert head.loss(z, _y1(10).to(dtype)).total.dtype == dtype
    assert head.encode(_y1(10).to(dtype)).dtype == dtype


# --------------------------------------------------------------------------- bad input
def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="k .*>= 2"):
        Codec.for_mode("e2e-codec", 4, 1, k=1)
    with pytest.raises(ValueError, match="lambda_kl must be >= 0"):
        Codec.for_mode("e2e-codec", 4, 1, lambda_kl=-0.1)
    with pytest.raises(ValueError, match="lambda_sigma must be > 0"):
        Codec.for_mode("e2e-codec", 4, 1, lambda_sigma=-1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        Codec.for_mode("e2e-codec", 4, 1, alpha=-1.0)
    with pytest.raises(TypeError, match="base class"):
        Codec(4, 1)
    with pytest.raises(TypeError, match="lambda_kl"):  # a knob soft-bin does not take is never ignored
        Codec.for_mode("soft-bin", 4, 1, lambda_kl=0.1)
    with pytest.raises(ValueError, match="unknown codec mode"):
        Codec.for_mode("bins", 4, 1)
    with pytest.raises(ValueError, match="hl-gauss needs bins"):
        Codec.for_mode("hl-gauss", 4, 2, init="kmeans")
    with pytest.raises(ValueError, match="unknown parameter"):
        split_params("soft-bin", {"lambda_kl": 0.1})  # a knob soft-bin does not have


def test_nan_targets_raise():
    head = Codec.for_mode("soft-bin", 4, 1, k=5)
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
        head = Codec.for_mode(mode, 4, 1, k=6)
        head.fit_targets(y)
        outside = torch.tensor([[-3.0], [0.0], [1.0], [9.0]])
        clipped = outside.clamp(float(head.lo), float(head.hi))
        torch.testing.assert_close(head.encode(outside), head.encode(clipped))
        rec = head.decode(head.encode(outside))
        assert bool((rec >= head.mu.min() - 1e-6).all() and (rec <= head.mu.max() + 1e-6).all())
    strict = Codec.for_mode("soft-bin", 4, 1, k=6, out_of_range="error")
    strict.fit_targets(y)
    with pytest.raises(ValueError, match="outside the fitted range"):
        strict.encode(torch.tensor([[2.0]]))


def test_ls_softmax_has_no_encoder():
    head = Codec.for_mode("ls-softmax", 4, 1, k=5)
    with pytest.raises(ValueError, match="no target encoder"):
        head.encode(_y1(3))


def test_initial_encoder_is_the_papers_gaussian_soft_binning():
    from beyondmse.functional.codec import affine_encode

    y = _y1(300)
    head = Codec.for_mode("e2e-codec", 4, 1, k=11)
    head.fit_targets(y)
    # eq. 3 of Beyond Binning: softmax(-|c_i - y|^2 / 2 sigma^2) with c = mu at initialisation
    torch.testing.assert_close(head.encode(y), gaussian_encode(y, head.mu.detach(), float(head.sigma)),
                               atol=1e-5, rtol=1e-4)
    # ... and its affine form (eq. 5)
    w, b = head.encoder_affine()
    torch.testing.assert_close(head.encode(y), affine_encode(y, w.detach(), b.detach()), atol=1e-5, rtol=1e-4)
    with pytest.raises(TypeError, match="encoder_scale"):  # the old knob is gone, not ignored
        Codec.for_mode("e2e-codec", 4, 1, encoder_scale="log")


# --------------------------------------------------------------------------- far classes
@pytest.mark.parametrize("mode", ["soft-bin", "trained-codec", "e2e-codec"])
def test_far_classes_lifted_without_changing_the_encoder(mode, monkeypatch):
    """At k = 25 far classes have logits near -1,000 (their weights underflow). The Gaussian
    codecs compute with logits lifted to 60 below each row's maximum, which keeps exp off the
    CPU's slow path; the soft labels must still be the mixture posterior of the formula,
    beta_i - (y - c_i)^2 / 2 sigma^2, to 1e-20 beside round-off, and the gradients unchanged."""
    torch.manual_seed(0)
    y = _y1(256).double()
    head = Codec.for_mode(mode, 6, 1, k=25, **({"stage1_steps": 0} if mode != "soft-bin" else {})).double()
    head.fit_targets(y)
    with torch.no_grad():
        head.log_prior.normal_(0.0, 0.3)
    c = head.centers.detach() * head.sigma  # the centers in target units
    exact = torch.softmax(head.log_prior.detach() - (y - c.T) ** 2 / (2 * head.sigma ** 2), dim=-1)
    assert float((exact < 1e-30).double().mean()) > 0.3  # the case at hand: many underflowing weights
    torch.testing.assert_close(head.encode(y), exact, rtol=1e-12, atol=1e-20)
    working = head._working_logits(head._clip(y))
    assert bool((working >= working.amax(-1, keepdim=True) - 60.0 - 1e-9).all())

    z = torch.randn(256, 6, dtype=torch.float64)
    params = [p for p in head.parameters() if p.requires_grad]
    lifted = torch.autograd.grad(head.loss(z, y).total, params)
    monkeypatch.setattr(codec_module, "LOGIT_FLOOR", math.inf)  # the exact logits, as before the lift
    plain = torch.autograd.grad(head.loss(z, y).total, params)
    for a, b in zip(lifted, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-18)
