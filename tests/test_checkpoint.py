"""save_model / load_model for models built by hand: any trunk, head and regularizers."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from beyondmse import load_model, save_model
from beyondmse.configurable import init_args
from beyondmse.heads import NCA, Codec, Linear
from beyondmse.models import MLP, RegressionModel
from beyondmse.regularizers import ROTReg
from beyondmse.normalizers import Sparsemax
from beyondmse.similarity import RBF
from beyondmse.train import Trainer, seed_everything


def _data(n=48, d=4, m=1):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, d, generator=g)
    return X, (X[:, :m] ** 2 + 0.1 * X[:, 1:2]).reshape(n, m)


def _rewrite_meta(path, edit):
    """Change the JSON description of a saved file (as an attacker or a corrupted disk would)."""
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["beyondmse"])
    edit(meta)
    save_file(load_file(str(path)), str(path), metadata={"beyondmse": json.dumps(meta)})


def test_hand_built_neighbor_model_round_trips(tmp_path):
    seed_everything(0)
    X, y = _data()
    head = NCA(8, similarity=RBF(bandwidth=0.5, learnable=True), softstep="instance")
    model = RegressionModel(MLP(4, hidden=16, depth=1, embedding_dim=8), head, [ROTReg(weight=0.1, gamma=0.2)])
    Trainer(device="cpu", max_epochs=2, batch_size=16).fit(model, X, y)
    assert model.head.memory_size == len(X)
    path = save_model(model, tmp_path / "nca.safetensors")

    rng = torch.get_rng_state()
    loaded, meta = load_model(path)
    assert torch.equal(torch.get_rng_state(), rng)  # rebuilding does not move the caller's RNG
    assert "method" not in meta  # rebuilt from the description, not from a recipe
    assert loaded.head.memory_size == len(X)
    assert isinstance(loaded.head.similarity, RBF) and isinstance(loaded.regularizers[0], ROTReg)
    assert loaded.regularizers[0].gamma == 0.2 and loaded.regularizers[0].weight == 0.1
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
    torch.testing.assert_close(loaded.training_loss(X, y).total, model.training_loss(X, y).total)


@pytest.mark.parametrize("mode,m", [("trained-codec", 1), ("e2e-codec", 2)])
def test_hand_built_codec_keeps_fitted_bins_and_plain_state(tmp_path, mode, m):
    seed_everything(0)
    X, y = _data(m=m)
    model = RegressionModel(MLP(4, hidden=16), Codec.for_mode(mode, 16, m, k=9 if m == 1 else 6, stage1_steps=5))
    model.head.fit_targets(y * 3 + 1)  # bins/centers over [1, 4], not the constructor's [0, 1]
    assert model.head.stage1_objective  # plain (non-tensor) fitted state
    path = save_model(model, tmp_path / "codec.safetensors")
    loaded, _ = load_model(path)
    for name in ("mu", "lo", "hi", "sigma"):
        torch.testing.assert_close(getattr(loaded.head, name), getattr(model.head, name), rtol=0, atol=0)
    assert loaded.head.stage1_objective == model.head.stage1_objective
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)


class UserTrunk(nn.Module):
    """A user's own trunk: it does not record its constructor arguments."""

    def __init__(self, width):
        super().__init__()
        self.lin = nn.Linear(4, width)
        self.out_features = width

    def forward(self, x):
        return torch.tanh(self.lin(x))


def test_user_trunk_needs_the_trunk_argument(tmp_path):
    X, _ = _data()
    model = RegressionModel(UserTrunk(6), Linear(6))
    path = save_model(model, tmp_path / "user.safetensors")
    with pytest.raises(ValueError, match=r"UserTrunk.*pass load_model\(path, trunk=\.\.\.\)"):
        load_model(path)
    loaded, _ = load_model(path, trunk=UserTrunk(6))
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit"):  # a trunk of another shape
        load_model(path, trunk=UserTrunk(5))


class ScaledLinear(Linear):
    """A user's head: records its arguments (it subclasses Head), with non-tensor and non-persistent state."""

    def __init__(self, in_features, factor=2.0):
        super().__init__(in_features)
        self.factor = factor
        self.calls = 0
        self.register_buffer("offset", torch.zeros(1), persistent=False)

    def forward(self, z):
        return super().forward(z) * self.factor + self.offset

    def get_extra_state(self):
        return {"calls": self.calls}

    def set_extra_state(self, state):
        self.calls = state["calls"]


def test_user_head_is_imported_only_with_consent(tmp_path):
    X, _ = _data()
    model = RegressionModel(MLP(4, hidden=8), ScaledLinear(8, factor=3.0))
    model.head.calls, model.head.offset = 7, torch.tensor([0.5])
    path = save_model(model, tmp_path / "head.safetensors")
    with pytest.raises(ValueError, match="trusted_modules"):
        load_model(path)
    loaded, _ = load_model(path, trusted_modules=(ScaledLinear.__module__.split(".")[0],))
    assert type(loaded.head).__name__ == "ScaledLinear" and loaded.head.factor == 3.0
    assert loaded.head.calls == 7 and float(loaded.head.offset) == 0.5
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)


@pytest.mark.parametrize("name,match", [
    ("os:system", "outside the trusted packages"),
    ("beyondmse_evil.heads:Linear", "outside the trusted packages"),
    ("beyondmse.checkpoint:save_model", "not an nn.Module class"),
    ("beyondmse.heads:NoSuchHead", "does not exist"),
    ("beyondmse.heads:Linear.__init__.__globals__", "malformed class name"),
])
def test_tampered_class_name_is_refused(tmp_path, name, match):
    model = RegressionModel(MLP(4, hidden=8), Linear(8))
    path = save_model(model, tmp_path / "m.safetensors")

    def edit(meta):
        meta["model"]["head"]["class"] = name

    _rewrite_meta(path, edit)
    with pytest.raises(ValueError, match=match):
        load_model(path)


def test_tampered_state_cannot_replace_methods(tmp_path):
    model = RegressionModel(MLP(4, hidden=8), Linear(8))
    path = save_model(model, tmp_path / "m.safetensors")
    _rewrite_meta(path, lambda meta: meta["state"].setdefault("head", {}).update(forward=1))
    with pytest.raises(ValueError, match="method or property"):
        load_model(path)


def test_skeleton_model_and_save_errors(tmp_path):
    X, _ = _data()
    model = RegressionModel(UserTrunk(6), Linear(6))
    path = save_model(model, tmp_path / "m.safetensors", extra={"note": "hi"})
    loaded, meta = load_model(path, model=RegressionModel(UserTrunk(6), Linear(6)))
    assert meta["extra"] == {"note": "hi"}
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match="RegressionModel"):
        save_model(nn.Linear(2, 1), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="input_shape"):
        save_model(model, tmp_path / "x.safetensors", method="ls")
    with pytest.raises(ValueError, match="JSON"):
        save_model(model, tmp_path / "x.safetensors", extra={"f": object()})


def test_only_the_outermost_constructor_is_recorded():
    head = NCA(8, similarity=RBF(bandwidth=2.0), normalizer=Sparsemax(candidates=64))
    args, kwargs = init_args(head)
    assert args == () and kwargs["in_features"] == 8 and init_args(kwargs["normalizer"]) == ((), {"candidates": 64})
    assert "chunk_size" in kwargs and isinstance(kwargs["similarity"], RBF)  # defaults filled in
    assert init_args(kwargs["similarity"]) == ((), {"bandwidth": 2.0, "learnable": False, "temperature": 0.1,
                                                    "learn_temperature": True})
    assert init_args(UserTrunk(3)) is None


def _torch_recipes():
    from beyondmse.recipes import available_methods, is_peer

    return [m for m in available_methods() if not is_peer(m)]


@pytest.mark.parametrize("method", _torch_recipes())
def test_every_recipe_round_trips_without_the_registry(tmp_path, method):
    # saved without method=...: the JSON description alone must rebuild it (a new head that
    # takes an argument the description cannot hold shows up here)
    from beyondmse.recipes import build_model

    seed_everything(0)
    X, y = _data(n=40)
    model, _ = build_model(method, 4, 1, {"hidden": 8})
    model.head.fit_targets(y)
    if model.head.needs_memory:
        model.fit_memory_from(X, y)
    loaded, meta = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert "method" not in meta
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
