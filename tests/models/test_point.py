"""``point="median"``: the model predicts the median of its head's predictive distribution."""

import numpy as np
import pytest
import torch

from beyondmse.checkpoint import load_model, save_model
from beyondmse.models.regression_model import RegressionModel
from beyondmse.recipes import build_model
from beyondmse.train import Trainer


def _hand_median_of_bins(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Median of a histogram: k equal bins over [lo, hi], bin j holding mass p[:, j] spread
    uniformly. Walk the cumulative mass to the bin where it reaches 1/2, then go into that bin
    in proportion to the mass still missing."""
    n, k = p.shape
    width = (hi - lo) / k
    out = np.empty(n)
    for i in range(n):
        below = 0.0
        for j in range(k):
            if below + p[i, j] >= 0.5:
                out[i] = lo + j * width + (0.5 - below) / p[i, j] * width
                break
            below += p[i, j]
    return out


def _skewed_hard_bin_model():
    torch.manual_seed(0)
    model, _ = build_model("hard-bin", 3, 1, {"k": 5, "point": "median", "hidden": 16, "embedding_dim": 8})
    model.head.fit_targets(torch.linspace(0.0, 1.0, 50)[:, None])
    with torch.no_grad():  # most mass on the top bin, a long tail below: mean and median differ
        model.head.g.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.5, 3.0]))
    return model.eval()


def test_median_of_a_binning_codec_is_the_histograms_median():
    model = _skewed_hard_bin_model()
    x = torch.randn(7, 3)
    got = model(x)
    assert got.shape == (7, 1)
    p = model.head.predict_proba(model.embed(x)).detach().double().numpy()
    np.testing.assert_allclose(got[:, 0].numpy(), _hand_median_of_bins(p, 0.0, 1.0), atol=1e-5)
    mean = model.head(model.embed(x)).detach()
    assert float((mean - got).abs().min()) > 0.02  # the mean is a different point


def test_mean_point_is_the_heads_own_prediction():
    torch.manual_seed(0)
    model, _ = build_model("hard-bin", 3, 1, {"k": 5})
    model.eval()  # no dropout
    assert model.point == "mean"
    x = torch.randn(4, 3)
    torch.testing.assert_close(model(x), model.head(model.embed(x)))


@pytest.mark.parametrize("method", ["ls", "huber", "mt"])
def test_median_needs_a_distribution(method):
    assert not build_model(method, 3, 1)[0].head.has_distribution
    with pytest.raises(ValueError, match="predictive distribution"):
        build_model(method, 3, 1, {"point": "median"})


def test_unknown_point_is_refused():
    with pytest.raises(ValueError, match="unknown point 'mode'"):
        build_model("hl-gauss", 3, 1, {"point": "mode"})
    model, _ = build_model("hl-gauss", 3, 1)
    with pytest.raises(ValueError, match="unknown point"):
        RegressionModel(model.trunk, model.head, point="average")


@pytest.mark.parametrize("method", ["e2e-codec", "nca"])
def test_training_selects_on_the_median_and_predicts_it(method):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(240, 3)).astype(np.float32)
    y = np.round(4 * X[:, :1] + rng.normal(0, 0.3, (240, 1))).clip(0, 4).astype(np.float32) / 4  # five levels
    model, kw = build_model(method, 3, 1, {"point": "median", "hidden": 16, "embedding_dim": 8})
    trainer = Trainer(max_epochs=4, device="cpu", batch_size=64, seed=0)
    hist = trainer.fit(model, X[:160], y[:160], X[160:], y[160:])
    pred = trainer.predict(model, X[160:])
    median = trainer.predict_distribution(model, X[160:]).quantile(0.5).float()
    torch.testing.assert_close(pred, median)
    # the best epoch's validation MAE is that of the median predictions (the selection saw them)
    best = hist.val_epochs.index(hist.best_epoch)
    assert hist.val_mae[best] == pytest.approx(float((pred - torch.as_tensor(y[160:])).abs().mean()), rel=1e-5)
    assert bool(torch.isfinite(pred).all())


def test_a_saved_model_keeps_its_point(tmp_path):
    model = _skewed_hard_bin_model()
    x = torch.randn(5, 3)
    for kw in ({}, {"method": "hard-bin", "input_shape": (3,), "params": {"k": 5, "hidden": 16, "embedding_dim": 8}}):
        # the recipe's params name no point: the saved attributes carry it
        path = save_model(model, tmp_path / f"m{len(kw)}.safetensors", **kw)
        loaded, _ = load_model(path)
        assert loaded.point == "median"
        torch.testing.assert_close(loaded(x), model(x))
