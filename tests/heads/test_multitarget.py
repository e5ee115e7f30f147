"""The MultiTarget head of the tightness family."""

import pytest
import torch

from beyondmse.heads import Linear, MultiTarget

torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine


def _batch(n=48, d=8, m=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.rand(n, m, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- MultiTarget
def test_multitarget_with_one_target_equals_linear():
    torch.manual_seed(0)
    lin = Linear(6, 2)
    torch.manual_seed(0)
    mt = MultiTarget(6, 2, n_targets=1)
    z, y = _batch(10, 6, 2)
    torch.testing.assert_close(mt(z), lin(z))
    torch.testing.assert_close(mt.loss(z, y).total, lin.loss(z, y).total)


def test_multitarget_prediction_is_mean_and_loss_is_mean_over_regressors():
    torch.manual_seed(0)
    mt = MultiTarget(5, 3, n_targets=4)
    z, y = _batch(7, 5, 3)
    each = torch.stack([z @ mt.fc.weight[k * 3:(k + 1) * 3].T + mt.fc.bias[k * 3:(k + 1) * 3] for k in range(4)], 1)
    torch.testing.assert_close(mt(z), each.mean(1))
    expected = torch.stack([((each[:, k] - y) ** 2).mean() for k in range(4)]).mean()
    torch.testing.assert_close(mt.loss(z, y).total, expected)


def test_multitarget_bad_input():
    with pytest.raises(ValueError, match="n_targets"):
        MultiTarget(4, 1, n_targets=0)
    with pytest.raises(ValueError, match="loss"):
        MultiTarget(4, 1, loss="l7")
    with pytest.raises(ValueError, match="targets of shape"):
        MultiTarget(4, 2).loss(torch.zeros(3, 4), torch.zeros(3, 1))
