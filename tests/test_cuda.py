"""The heads on a GPU: every neighbor, codec and tightness method gives on CUDA the loss, the
gradients and the predictions it gives on the CPU, soft ranks agree across devices, and a
model trains end to end on CUDA on real data.

The soft rank on CUDA runs the Triton kernel of ``beyondmse.functional.pav_triton``; it is
checked against the torch path on the same GPU, and for host synchronisations.

Deselected by default (marker ``cuda``; CI has no GPU). On a machine with one:

    python -m pytest -m cuda tests/test_cuda.py

Losses and gradients are compared in float64, so the two devices differ only by the order of
their floating-point reductions (relative 1e-9 and below on these sizes).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from beyondmse.functional.rank import soft_rank
from beyondmse.recipes import build_model
from beyondmse.recipes.base import methods_in_family

# deselected by default (pyproject's addopts), so a run without -m cuda neither runs nor skips them
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="-m cuda asked for, but there is no CUDA device")]

CUDA = torch.device("cuda")
METHODS = ["ls", *methods_in_family("neighbors"), *methods_in_family("codec"), *methods_in_family("tightness")]


def _inputs(n: int = 96, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings with structure (a 2-d latent space in d dimensions) and a target that depends
    on it, float64, so neighbor weights and codec cells are neither all nor nothing."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.rand(n, 2, generator=g, dtype=torch.float64)
    z = latent @ torch.randn(2, d, generator=g, dtype=torch.float64) + 0.05 * torch.randn(n, d, generator=g,
                                                                                           dtype=torch.float64)
    y = (latent[:, :1] + 0.5 * latent[:, 1:] ** 2) / 1.5
    return z, y


def _loss_and_grads(model, z, y):
    z = z.clone().requires_grad_()
    torch.manual_seed(0)  # the same random subsets (drawn by the CPU generator) on both devices
    model.zero_grad(set_to_none=True)
    loss = model.training_loss(z, y).total
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), z.grad, grads


def _close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = 1e-7) -> None:
    a, b = a.detach().cpu(), b.detach().cpu()
    assert torch.isfinite(a).all() and torch.isfinite(b).all(), what
    scale = max(float(b.abs().max()), 1e-12)
    err = float((a - b).abs().max()) / scale
    assert err <= rtol, f"{what}: CUDA and CPU differ by {err:.2e} of the largest entry"


@pytest.mark.parametrize("method", METHODS)
def test_loss_gradients_and_predictions_match_the_cpu(method):
    z, y = _inputs()
    torch.manual_seed(0)
    model, _ = build_model(method, z.shape[1], 1, {"trunk": "identity"})
    model = model.double().train()
    model.head.fit_targets(y)  # as the Trainer does: codecs fit their range (and k-means cells) here
    on_gpu = copy.deepcopy(model).to(CUDA)

    loss_c, gz_c, grads_c = _loss_and_grads(model, z, y)
    loss_g, gz_g, grads_g = _loss_and_grads(on_gpu, z.to(CUDA), y.to(CUDA))
    _close(loss_g, loss_c, f"{method} loss")
    _close(gz_g, gz_c, f"{method} gradient of the loss in z")
    assert grads_c.keys() == grads_g.keys()
    for name in grads_c:
        _close(grads_g[name], grads_c[name], f"{method} gradient of {name}")

    model.eval(), on_gpu.eval()
    zq, _ = _inputs(n=40, seed=1)
    with torch.no_grad():
        if model.head.needs_memory:
            model.fit_memory_from(z, y)
            on_gpu.fit_memory_from(z.to(CUDA), y.to(CUDA))
        _close(on_gpu(zq.to(CUDA)), model(zq), f"{method} predictions")


@pytest.mark.parametrize("strength", [0.01, 0.1, 1.0, 10.0])
def test_soft_rank_agrees_across_devices(strength):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 300, generator=g, dtype=torch.float64)
    x[:, 10] = x[:, 11]  # ties
    w = torch.randn(64, 300, generator=g, dtype=torch.float64)
    xc = x.clone().requires_grad_()
    xg = x.to(CUDA).requires_grad_()
    rc, rg = soft_rank(xc, strength), soft_rank(xg, strength)
    (rc * w).sum().backward()
    (rg * w.to(CUDA)).sum().backward()
    _close(rg, rc, "soft ranks", rtol=1e-9)
    _close(xg.grad, xc.grad, "soft-rank gradients", rtol=1e-9)


@pytest.mark.parametrize(("rows", "n", "strength", "dtype"), [(256, 2048, 1.0, torch.float32),
                                                              (64, 1000, 0.1, torch.float64),
                                                              (64, 1000, 0.01, torch.float64),
                                                              (32, 257, 1.0, torch.float64)])
def test_triton_kernel_matches_the_torch_path(monkeypatch, rows, n, strength, dtype):
    pytest.importorskip("triton")
    from beyondmse.functional import pav_triton
    from beyondmse.functional import rank as rank_module

    g = torch.Generator().manual_seed(n)
    x = torch.randn(rows, n, generator=g, dtype=dtype).to(CUDA)
    x[:, :20] = x[:, :1]  # a run of ties
    w = torch.randn(rows, n, generator=g, dtype=dtype).to(CUDA)
    assert pav_triton.available(x)
    results = {}
    for use in (True, False):
        monkeypatch.setattr(rank_module, "USE_TRITON", use)
        xi = x.clone().requires_grad_()
        r = soft_rank(xi, strength)
        (r * w).sum().backward()
        results[use] = r.detach(), xi.grad
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    _close(results[True][0], results[False][0], "soft ranks, kernel vs torch path", rtol=rtol)
    _close(results[True][1], results[False][1], "soft-rank gradients, kernel vs torch path", rtol=rtol)


def test_triton_kernel_makes_no_host_synchronisation():
    pytest.importorskip("triton")
    x = torch.randn(512, 1024, device=CUDA, requires_grad=True)
    w = torch.randn(512, 1024, device=CUDA)
    soft_rank(x, 0.5, check_finite=False)  # compile the kernel first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        (soft_rank(x, 0.5, check_finite=False) * w).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("method", ["ls", "nca-softstep-i", "dknn-softstep-i", "e2e-codec", "hl-gauss", "mt+rot",
                                    "ranksim", "oe", "ph-reg"])
def test_trains_on_cuda_on_real_data(method):
    from beyondmse.data import load_dataset
    from beyondmse.sklearn import BeyondMSERegressor

    data = load_dataset("diamonds-10k")
    X, y = data.X[:3000], data.y[:3000].ravel()
    torch.cuda.reset_peak_memory_stats()
    reg = BeyondMSERegressor(method, max_epochs=40, random_state=0, device="cuda").fit(X[:2400], y[:2400])
    assert torch.cuda.max_memory_allocated() > 0  # it trained there (model_ comes back on the CPU)
    pred = reg.predict(X[2400:])
    assert np.isfinite(pred).all()
    mae = np.abs(pred - y[2400:]).mean()
    mae_of_mean = np.abs(y[:2400].mean() - y[2400:]).mean()
    assert mae < 0.5 * mae_of_mean, f"{method}: MAE {mae:.4g} against {mae_of_mean:.4g} for the mean"
