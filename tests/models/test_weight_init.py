"""The ``weight_init`` trunk setting (the coordinate protocol's N(0, 0.001^2) initialisation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from beyondmse.models import MLP, init_weights_
from beyondmse.recipes import build_model


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_weight_init_sets_the_std_of_every_linear_head_included():
    torch.manual_seed(0)
    default, _ = build_model("ls", 100, 3, {"hidden": 100, "embedding_dim": 0})
    torch.manual_seed(0)
    small, _ = build_model("ls", 100, 3, {"hidden": 100, "embedding_dim": 0, "weight_init": "normal-0.001"})
    layers = _linears(small)
    assert len(layers) == 3 and layers[-1] is _linears(small.head)[0]  # two hidden + the head
    for layer, ref in zip(layers, _linears(default)):
        assert layer.weight.std().item() == pytest.approx(0.001, rel=0.1)
        assert ref.weight.std().item() > 0.03  # PyTorch's default: U(+-1/sqrt(fan_in))
        assert torch.count_nonzero(layer.bias) == 0


def test_weight_init_is_seeded_and_checked():
    a = init_weights_(MLP(10, hidden=8), "normal-0.01") if torch.manual_seed(3) else None
    b = init_weights_(MLP(10, hidden=8), "normal-0.01") if torch.manual_seed(3) else None
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y)
    before = [p.clone() for p in a.parameters()]
    init_weights_(a, "default")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before))
    for bad in ("normal", "normal-0", "normal--1", "uniform-0.1", "xavier"):
        with pytest.raises(ValueError, match="weight_init"):
            init_weights_(a, bad)
