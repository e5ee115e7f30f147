"""beyondmse.similarity: the similarity modules match their definitions and learn their scale."""

import pytest
import torch

from beyondmse.similarity import RBF, Cosine, NegL2, NegSquaredL2, make_similarity


# ----------------------------------------------------------------------------- pieces
def test_similarities_match_definitions():
    torch.manual_seed(9)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    d2 = torch.cdist(a, b) ** 2
    torch.testing.assert_close(NegSquaredL2()(a, b), -d2)
    torch.testing.assert_close(NegL2()(a, b), -torch.cdist(a, b))
    torch.testing.assert_close(NegL2(scale=2.0)(a, a), -2.0 * torch.cdist(a, a))
    assert (NegL2()(a, a).diagonal() == 0).all()
    torch.testing.assert_close(RBF(0.7, temperature=1.0)(a, b), torch.exp(-d2 / (2 * 0.49)))
    torch.testing.assert_close(RBF(0.7, temperature=0.2)(a, b), torch.exp(-d2 / (2 * 0.49)) / 0.2)
    torch.testing.assert_close(Cosine()(a, b), torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1))
    rbf = RBF(1.0, learnable=True)
    rbf(a.float(), b.float()).sum().backward()
    assert rbf.log_bandwidth.grad.abs() > 0 and rbf.log_temperature.grad.abs() > 0
    assert not RBF(1.0, learn_temperature=False).log_temperature.requires_grad


def test_registry_names():
    assert isinstance(make_similarity("l2"), NegL2)  # the paper's negative l2 distance
    assert isinstance(make_similarity("l2sq"), NegSquaredL2)
    with pytest.raises(ValueError, match="l2sq"):
        make_similarity("euclid")


def test_neg_l2_gradient_is_finite_for_coinciding_points():
    a = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    NegL2()(a, a).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_learnable_l2_scale():
    sim = NegSquaredL2(scale=2.0, learnable=True)
    a, b = torch.randn(4, 3), torch.randn(5, 3)
    torch.testing.assert_close(sim(a, b), -2.0 * torch.cdist(a, b) ** 2, rtol=1e-4, atol=1e-4)
    sim(a, b).sum().backward()
    assert sim.log_scale.grad is not None
    with pytest.raises(ValueError, match="scale"):
        NegSquaredL2(scale=0.0)


@pytest.mark.parametrize("make", [lambda: NegL2(scale=2.5), lambda: NegSquaredL2(scale=0.4)], ids=["l2", "l2sq"])
def test_distance_similarities_from_and_back_to_squared_distances(make):
    sim = make().double()
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # by definition, not through the module's helpers
    s = sim.of_squared_distances(d2)
    torch.testing.assert_close(s, sim(a, b), atol=1e-10, rtol=0)
    torch.testing.assert_close(sim.squared_distance_within(s), d2, atol=1e-10, rtol=0)
    assert float(sim.squared_distance_within(torch.tensor(0.5, dtype=torch.float64))) == 0.0
