"""beyondmse.similarity: the similarity modules match their definitions and learn their scale."""

import pytest
import torch

from beyondmse.similarity import RBF, Cosine, NegSquaredL2


# ----------------------------------------------------------------------------- pieces
def test_similarities_match_definitions():
    torch.manual_seed(9)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    d2 = torch.cdist(a, b) ** 2
    torch.testing.assert_close(NegSquaredL2()(a, b), -d2)
    torch.testing.assert_close(RBF(0.7)(a, b), torch.exp(-d2 / (2 * 0.49)))
    torch.testing.assert_close(Cosine()(a, b), torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1))
    rbf = RBF(1.0, learnable=True)
    rbf(a.float(), b.float()).sum().backward()
    assert rbf.log_bandwidth.grad is not None


def test_learnable_l2_scale():
    sim = NegSquaredL2(scale=2.0, learnable=True)
    a, b = torch.randn(4, 3), torch.randn(5, 3)
    torch.testing.assert_close(sim(a, b), -2.0 * torch.cdist(a, b) ** 2, rtol=1e-4, atol=1e-4)
    sim(a, b).sum().backward()
    assert sim.log_scale.grad is not None
    with pytest.raises(ValueError, match="scale"):
        NegSquaredL2(scale=0.0)
