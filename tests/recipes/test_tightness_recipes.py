"""The tightness recipes and the +reg suffixes: registered, composable, and each learns a small task."""

import numpy as np
import pytest
import torch

from beyondmse.heads import MultiTarget
from beyondmse.recipes import build_model, parse_method
from beyondmse.train import Trainer, seed_everything

torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine


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


def test_rot_knobs_select_the_released_formulation():
    model, _ = build_model("rot", 6, 1, {"rot_normalization": "released", "rot_plan_grad": "unrolled",
                                         "rot_max_points": 200, "rot_weight": 10.0})
    reg = model.regularizers[0]
    assert (reg.normalization, reg.plan_grad, reg.max_points, reg.weight) == ("released", "unrolled", 200, 10.0)
    model, _ = build_model("ls+rot", 6, 1)
    assert (model.regularizers[0].normalization, model.regularizers[0].plan_grad) == ("mean", "none")
    with pytest.raises(ValueError, match="normalization"):
        build_model("rot", 6, 1, {"rot_normalization": "max"})
