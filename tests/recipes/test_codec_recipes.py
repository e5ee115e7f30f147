"""The codec recipes: registered with their family, and each learns on a small real task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyondmse.models import DEFAULT_MLP
from beyondmse.recipes import build_model

torch.set_num_threads(1)


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
    assert model.head.k == 5 and model.head.g.in_features == DEFAULT_MLP["embedding_dim"]  # the shared trunk


def test_each_recipe_builds_its_codec_class():
    from beyondmse.heads.codec import CODECS
    from beyondmse.recipes import methods_in_family

    assert set(methods_in_family("codec")) == set(CODECS)
    for name in methods_in_family("codec"):
        model, _ = build_model(name, 6, 1, {"k": 5})
        assert type(model.head) is CODECS[name] and model.head.mode == name


def test_paper_lambda_kl_table():
    from beyondmse.recipes.codec import paper_lambda_kl

    # Beyond Binning, Table 6 (lambda_pred = 1)
    assert paper_lambda_kl("wine_quality-num", 25) == 0.316
    assert paper_lambda_kl("elevators-num", 25) == 0.147
    assert paper_lambda_kl("retinamnist", 15) == 3.163
    assert paper_lambda_kl("cpu_act-num", 15) == 0.068
    assert paper_lambda_kl("some-other-set", 25) == 0.068  # the papers' most frequent value
