"""functional.codec: the target encoders, decoder, KL and entropy terms of the codec heads."""

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


@pytest.mark.parametrize("m", [1, 2])
def test_gaussian_mixture_logits_is_eq3_in_sigma_units(m):
    from beyondmse.functional.codec import gaussian_mixture_logits

    torch.manual_seed(12)
    sigma = 0.07
    centers = torch.rand(9, m, dtype=torch.float64)
    y = torch.rand(15, m, dtype=torch.float64)
    prior = torch.randn(9, dtype=torch.float64)
    a = gaussian_mixture_logits(y / sigma, centers / sigma, prior)
    # a naive loop over (sample, class) of beta_i - |y - c_i|^2 / (2 sigma^2)
    want = torch.empty(15, 9, dtype=torch.float64)
    for n in range(15):
        for i in range(9):
            want[n, i] = prior[i] - float(((y[n] - centers[i]) ** 2).sum()) / (2 * sigma ** 2)
    torch.testing.assert_close(a, want)
    # with a flat prior its softmax is the Gaussian soft binning
    flat = gaussian_mixture_logits(y / sigma, centers / sigma, torch.zeros(9, dtype=torch.float64))
    torch.testing.assert_close(torch.softmax(flat, -1), gaussian_encode(y, centers, sigma))
    with pytest.raises(ValueError, match=r"log_prior of shape \(9,\)"):
        gaussian_mixture_logits(y, centers, torch.zeros(8, dtype=torch.float64))
