"""The neighbor recipes: registered, one training step, and a round trip through build_model."""

import pytest
import torch

from beyondmse.recipes import RECIPES, build_model, parse_method
RECIPE_NAMES = ["nca", "nca-softstep-g", "nca-softstep-i", "dknn-softstep-g", "dknn-softstep-i", "nca-sparsemax"]


def test_model_round_trip_through_build_model():
    torch.manual_seed(8)
    model, _ = build_model("nca-softstep-g", 4, 1, {"hidden": 8, "embedding_dim": 5})
    X, y = torch.randn(30, 4), torch.rand(30, 1)
    model.fit_memory_from(X, y)
    fresh, _ = build_model("nca-softstep-g", 4, 1, {"hidden": 8, "embedding_dim": 5})
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(X[:7]), model(X[:7]))


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipes_registered_and_train_step(name):
    parse_method(name)
    assert RECIPES[name].family == "neighbors"
    model, trainer_kw = build_model(name, 3, 1, {"hidden": 8, "embedding_dim": 4})
    assert trainer_kw == {}  # the shared trainer settings: no recipe-specific batch size
    out = model.training_loss(torch.randn(8, 3), torch.rand(8, 1))
    out.total.backward()
    assert torch.isfinite(out.total)


@pytest.mark.parametrize("name, learned", [("nca", True), ("dknn-softstep-g", True), ("dknn-softstep-i", True),
                                           ("nca-softstep-g", False), ("nca-softstep-i", False),
                                           ("nca-sparsemax", False)])
def test_similarity_scale_is_learned_where_validation_chose_it(name, learned):
    # the recipes' validation screen (module docstring): a free scale for the softmax heads
    # without SoftStep's min-max normalisation; users can still fix it
    model, _ = build_model(name, 3, 1, {"hidden": 8, "embedding_dim": 4})
    scale = model.head.similarity.log_scale
    assert scale.requires_grad is learned
    if learned:
        model.training_loss(torch.randn(8, 3), torch.rand(8, 1)).total.backward()
        assert scale.grad is not None and float(scale.grad.abs()) > 0
    fixed, _ = build_model(name, 3, 1, {"hidden": 8, "embedding_dim": 4, "learn_scale": False})
    assert not fixed.head.similarity.log_scale.requires_grad
