"""beyondmse.checks: the shared input checks and the in-graph zero."""

import pytest
import torch

from beyondmse.checks import check_batch, check_head_inputs, check_positive, zero_loss


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "1", None])
def test_check_positive_rejects(value):
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        check_positive("gamma", value)


def test_check_positive_accepts():
    check_positive("gamma", 0.5)
    check_positive("n", 3)
    check_positive("max_points", None, allow_none=True)


def test_check_batch():
    with pytest.raises(ValueError, match="same N"):
        check_batch("R", torch.zeros(4, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="at least 3 samples, got 2"):
        check_batch("R", torch.zeros(2, 2), torch.zeros(2, 1))
    check_batch("R", torch.zeros(3, 2), torch.zeros(3, 1))


def test_check_head_inputs():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        check_head_inputs(torch.zeros(3), None, 1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        check_head_inputs(torch.zeros(3, 4), torch.zeros(3, 1), 2)
    with pytest.raises(ValueError, match="3 rows but y has 2"):
        check_head_inputs(torch.zeros(3, 4), torch.zeros(2, 1), 1)
    check_head_inputs(torch.zeros(3, 4), torch.zeros(3, 1), 1)


def test_zero_loss_stays_in_the_graph():
    z = torch.randn(4, 3, requires_grad=True)
    loss = zero_loss(z)
    assert loss.detach().item() == 0.0 and loss.requires_grad
    loss.backward()
    torch.testing.assert_close(z.grad, torch.zeros(4, 3))
