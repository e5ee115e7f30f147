"""The end-to-end codec's gradients against oracles written from the papers' equations.

The oracle is a plain NumPy float64 transcription of the end-to-end objective of Beyond Binning
(Sec. 3.4, eq. 8) with the Gaussian encoder of its eq. 3 (plus log prior weights) and the two
scalings :class:`~beyondmse.heads.codec.EndToEndCodec` documents (auto-encoding error over
2 sigma^2, prediction residual over the target range). It shares no code with the head: its
gradients are central finite differences of the oracle, so a gradient the head loses (a
``detach``) or turns around (a flipped sign) shows, even though the loss *values* are unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beyondmse.heads import Codec

torch.set_num_threads(1)

K, M, D, N = 6, 1, 5, 40


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _oracle(theta: dict[str, np.ndarray], y, z, sigma, span, lam_auto, lam_kl, lam_pred, alpha,
            point_scale=1.0) -> dict[str, float]:
    """Each term of eq. 8 (and the total) for the parameters in ``theta``; ``point_scale``
    multiplies the two squared-error terms (0.5 for a Huber loss below its threshold)."""
    c = sigma * theta["centers"]  # the head stores centers in units of sigma
    sq = ((y[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    psi = _softmax(theta["log_prior"][None, :] - sq / (2 * sigma ** 2))
    pi = _softmax(z @ theta["g.weight"].T + theta["g.bias"])
    mu = theta["mu"]
    auto = point_scale * np.mean((psi @ mu - y) ** 2) / (2 * sigma ** 2)
    entropy = np.mean(-(psi * np.log(psi)).sum(1))
    kl = np.mean((psi * (np.log(psi) - np.log(pi))).sum(1))
    pred = point_scale * np.mean(((pi @ mu - y) / span) ** 2)
    total = lam_auto * (auto - alpha * entropy) + lam_kl * kl + lam_pred * pred
    return {"auto": auto, "entropy": entropy, "kl": kl, "pred": pred, "total": total}


def _fd_grad(fn, theta: dict[str, np.ndarray], name: str, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(theta[name])
    for idx in np.ndindex(theta[name].shape):
        plus = {k: v.copy() for k, v in theta.items()}
        minus = {k: v.copy() for k, v in theta.items()}
        plus[name][idx] += h
        minus[name][idx] -= h
        grad[idx] = (fn(plus) - fn(minus)) / (2 * h)
    return grad


def _setup(lam_auto=1.0, lam_kl=0.5, lam_pred=1.0, alpha=0.0, seed=0, m=M):
    """A float64 end-to-end head fitted on skewed targets in [0.2, 1.7], its parameters moved off
    the symmetric initialisation, with a batch (z, y)."""
    g = torch.Generator().manual_seed(seed)
    y = 0.2 + 1.5 * torch.rand(N, m, generator=g, dtype=torch.float64) ** 2
    z = torch.randn(N, D, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    head = Codec.for_mode("e2e-codec", D, m, k=K, lambda_auto=lam_auto, lambda_kl=lam_kl, lambda_pred=lam_pred,
                          alpha=alpha).double()
    head.fit_targets(y)
    with torch.no_grad():
        head.centers.add_(0.3 * torch.randn(K, m, generator=g, dtype=torch.float64))
        head.log_prior.copy_(0.5 * torch.randn(K, generator=g, dtype=torch.float64))
        head.mu.add_(0.05 * torch.randn(K, m, generator=g, dtype=torch.float64))
    return head, y, z


def _theta(head) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().copy() for n, p in head.named_parameters()}


def _autograd(head, y, z) -> dict[str, np.ndarray]:
    head.zero_grad(set_to_none=True)
    head.loss(z, y).total.backward()
    return {n: (p.grad.numpy().copy() if p.grad is not None else np.zeros(p.shape)) for n, p in head.named_parameters()}


def _fixed(head, y, z):
    sigma = float(head.sigma)
    span = (head.hi - head.lo).numpy()
    return y.numpy(), z.numpy(), sigma, span


@pytest.mark.parametrize("seed,m,loss", [(0, 1, "mse"), (1, 1, "mse"), (0, 2, "mse"), (0, 1, "huber"),
                                         (1, 1, "huber")])
def test_total_gradient_matches_the_papers_objective(seed, m, loss, monkeypatch):
    """The squared-error objective runs as one fused autograd node; the huber one composes
    decode, entropy and KL. With unit Huber delta and residuals below it, Huber is half the
    squared error, so both paths are checked against eq. 8."""
    lam = dict(lam_auto=0.7, lam_kl=0.4, lam_pred=1.3, alpha=0.2)
    head, y, z = _setup(**lam, seed=seed, m=m)
    head.loss_kind = loss
    lam["point_scale"] = 0.5 if loss == "huber" else 1.0
    yn, zn, sigma, span = _fixed(head, y, z)
    theta = _theta(head)
    want_value = _oracle(theta, yn, zn, sigma, span, **lam)
    out = head.loss(z, y)
    for term in ("auto", "entropy", "kl", "pred"):
        assert float(out.terms[term]) == pytest.approx(want_value[term], rel=1e-10, abs=1e-12), term
    assert float(out.total.detach()) == pytest.approx(want_value["total"], rel=1e-10)
    got = _autograd(head, y, z)
    for name in ("centers", "log_prior", "mu", "g.weight", "g.bias"):
        want = _fd_grad(lambda t: _oracle(t, yn, zn, sigma, span, **lam)["total"], theta, name)
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-8, err_msg=name)


def test_kl_term_alone_moves_the_encoder():
    """With only the KL term on, the gradient on the encoder (centers, log prior) is the
    derivative of KL(psi(y) || pi(x)) through psi: zero if the encoder were detached."""
    lam = dict(lam_auto=0.0, lam_kl=1.0, lam_pred=0.0, alpha=0.0)
    head, y, z = _setup(**lam)
    yn, zn, sigma, span = _fixed(head, y, z)
    theta = _theta(head)
    got = _autograd(head, y, z)
    for name in ("centers", "log_prior"):
        want = _fd_grad(lambda t: _oracle(t, yn, zn, sigma, span, **lam)["kl"], theta, name)
        assert np.abs(want).max() > 1e-3, "the oracle gradient must be clearly non-zero"
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-8, err_msg=name)
    # the decoder gets nothing from the KL
    np.testing.assert_array_equal(got["mu"], np.zeros_like(got["mu"]))


def test_entropy_term_gradient_is_a_bonus():
    """The gradient difference between alpha = a and alpha = 0 is -lambda_auto * a * grad H:
    the objective rewards encoder entropy (the papers' eq. 7-8 sign, see TrainedCodec)."""
    lam_auto, a = 0.8, 0.5
    grads = []
    for alpha in (0.0, a):
        head, y, z = _setup(lam_auto=lam_auto, alpha=alpha)
        grads.append(_autograd(head, y, z))
    yn, zn, sigma, span = _fixed(head, y, z)
    theta = _theta(head)
    for name in ("centers", "log_prior"):
        grad_h = _fd_grad(lambda t: _oracle(t, yn, zn, sigma, span, 1.0, 1.0, 1.0, 0.0)["entropy"], theta, name)
        assert np.abs(grad_h).max() > 1e-3
        np.testing.assert_allclose(grads[1][name] - grads[0][name], -lam_auto * a * grad_h, rtol=1e-5, atol=1e-9,
                                   err_msg=name)


def test_auto_encoding_term_is_scale_free():
    """In units of 2 sigma^2 the auto-encoding term of the same codec is the same whatever the
    target units (and the prediction term, in units of the range, too)."""
    head, y, z = _setup()
    out = head.loss(z, y)
    torch.manual_seed(0)
    scaled = Codec.for_mode("e2e-codec", D, M, k=K, lambda_kl=0.5).double()
    scaled.fit_targets(1000.0 * y)
    with torch.no_grad():
        for name in ("centers", "log_prior", "g.weight", "g.bias"):
            scaled.get_parameter(name).copy_(head.get_parameter(name))
        scaled.mu.copy_(1000.0 * head.mu)
    out_scaled = scaled.loss(z, 1000.0 * y)
    for term in ("auto", "kl", "pred", "entropy"):
        torch.testing.assert_close(out_scaled.terms[term], out.terms[term], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_huber_path_sees_residuals_below_delta(seed):
    """The huber cases of the test above are eq. 8 only while every scaled residual is below 1."""
    head, y, z = _setup(seed=seed)
    with torch.no_grad():
        a = head.encoder_logits(y)
        recon = torch.softmax(a, -1) @ head.mu
        pred = torch.softmax(head.g(z), -1) @ head.mu
    assert float(((recon - y) / (head.sigma * 2 ** 0.5)).abs().max()) < 1
    assert float(((pred - y) / (head.hi - head.lo)).abs().max()) < 1


@pytest.mark.parametrize("floor", [math.inf, 60.0])
def test_fused_objective_gradcheck(floor):
    from beyondmse.functional.codec import end_to_end_mse

    g = torch.Generator().manual_seed(3)
    n, k, m = 7, 5, 2
    args = [torch.randn(n, k, generator=g, dtype=torch.float64),  # classifier logits
            torch.randn(k, m, generator=g, dtype=torch.float64),  # centers (units of sigma)
            0.5 * torch.randn(k, generator=g, dtype=torch.float64),  # log prior
            torch.rand(k, m, generator=g, dtype=torch.float64)]  # decoder
    ys = 2 * torch.randn(n, m, generator=g, dtype=torch.float64)
    y = torch.rand(n, m, generator=g, dtype=torch.float64)
    span = torch.tensor([1.0, 2.0], dtype=torch.float64)
    args = [a.requires_grad_() for a in args]

    def fn(*a):
        return end_to_end_mse(*a, ys, y, 0.3, span, (0.7, 0.2, 0.4, 1.3), floor)[0]

    assert torch.autograd.gradcheck(fn, args)
