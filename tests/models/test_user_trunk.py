"""A user's own nn.Module as the trunk: width by a dry forward pass, trains, saves and loads."""

import numpy as np
import pytest
import torch
from torch import nn

from beyondmse import load_model, save_model
from beyondmse.models import embedding_width
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, seed_everything


def _backbone() -> nn.Module:
    """A torchvision-style backbone: features, pooling and a classifier replaced by Identity."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2))
    net.fc = nn.Identity()
    return net


def test_width_from_one_dry_forward_pass_leaves_the_module_as_it_was():
    net = _backbone().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.random.get_rng_state()
    assert embedding_width(net, (3, 10, 10)) == 8
    assert net.training  # mode restored
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # BN statistics untouched
    assert torch.equal(rng, torch.random.get_rng_state())


def test_width_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        embedding_width(nn.Conv2d(3, 4, 3), (3, 8, 8))  # a feature map, not embeddings
    with pytest.raises(ValueError, match="failed on a batch"):
        embedding_width(nn.Sequential(nn.Linear(5, 2)), (3, 8, 8))
    with pytest.raises(ValueError, match="nn.Module"):
        embedding_width(lambda x: x, (3,))


def test_user_trunk_trains_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((48, 3, 10, 10)).astype(np.float32)
    y = X[:, 0].mean(axis=(1, 2))[:, None]  # a target the trunk can see
    seed_everything(0)
    model, trainer_kw = build_model("nca-softstep-i+rot", (3, 10, 10), 1, trunk=_backbone())
    assert model.embed(torch.from_numpy(X[:4])).shape == (4, 8)
    before = model.trunk[0].weight.detach().clone()
    hist = Trainer(max_epochs=3, batch_size=16, device="cpu", seed=0).fit(model, X[:36], y[:36], X[36:], y[36:])
    assert len(hist.train_loss) >= 1 and np.isfinite(hist.train_loss).all()
    assert not torch.equal(before, model.trunk[0].weight)  # the user's trunk trained
    path = save_model(model, tmp_path / "user.safetensors")
    with pytest.raises(ValueError, match=r"trunk=\.\.\."):  # the file cannot rebuild a plain Sequential
        load_model(path)
    loaded, _ = load_model(path, trunk=_backbone())  # the skeleton; its weights come from the file
    x = torch.from_numpy(X[:5])
    assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)


def test_trunk_settings_do_not_apply_to_a_user_trunk():
    with pytest.raises(ValueError, match="trunk settings"):
        build_model("ls", (3, 10, 10), 1, {"hidden": 64}, trunk=_backbone())


def test_estimator_takes_a_user_trunk_on_flattened_images():
    from sklearn.base import clone

    from beyondmse import BeyondMSERegressor

    rng = np.random.default_rng(1)
    X = rng.random((60, 3, 10, 10)).astype(np.float32)
    y = X[:, 0].mean(axis=(1, 2)) * 10
    trunk = _backbone()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    reg = BeyondMSERegressor("ls", trunk=trunk, input_shape=(3, 10, 10), feature_scaling="none", max_epochs=3,
                             random_state=0)
    reg.fit(X.reshape(60, -1), y)
    assert reg.predict(X.reshape(60, -1)[:7]).shape == (7,)
    assert all(torch.equal(v, trunk.state_dict()[k]) for k, v in before.items())  # fit trained a copy
    assert not torch.equal(reg.model_.trunk[0].weight.float(), trunk[0].weight)
    assert clone(reg).get_params()["input_shape"] == (3, 10, 10)
    with pytest.raises(ValueError, match="input_shape"):
        BeyondMSERegressor(trunk=_backbone(), input_shape=(3, 9, 9), max_epochs=1).fit(X.reshape(60, -1), y)
    with pytest.raises(ValueError, match="feature_scaling"):
        BeyondMSERegressor(feature_scaling="zscore", max_epochs=1).fit(X.reshape(60, -1), y)
