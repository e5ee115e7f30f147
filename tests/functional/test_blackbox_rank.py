"""functional.rank.blackbox_rank: hard ranks forward, the blackbox-solver rule backward."""

import pytest
import torch

from beyondmse.functional import blackbox_rank, rank_normalised


def _naive_rank(row):
    # normalised descending rank with ties broken by position, by counting (no sorting)
    n = len(row)
    out = []
    for i in range(n):
        ahead = sum(1 for j in range(n) if row[j] > row[i] or (row[j] == row[i] and j < i))
        out.append((ahead + 1) / n)
    return out


def _naive_ranks(x):
    flat = x.reshape(-1, x.shape[-1]).tolist()
    return torch.tensor([_naive_rank(r) for r in flat], dtype=torch.float64).reshape(x.shape)


@pytest.mark.parametrize("shape", [(1,), (6,), (3, 8), (2, 3, 5)])
def test_forward_is_the_hard_rank_in_float64(shape):
    torch.manual_seed(0)
    s = torch.randn(*shape, dtype=torch.float64)
    s.view(-1)[:2] = 0.25  # a tie
    r = blackbox_rank(s, 2.0)
    assert r.dtype == torch.float64 and r.shape == s.shape
    torch.testing.assert_close(r, _naive_ranks(s), rtol=0, atol=0)


@pytest.mark.parametrize("lam", [0.5, 2.0, 10.0])
def test_backward_is_the_blackbox_solver_rule(lam):
    # Vlastelica et al. (2020), Eq. 9, as RankSim uses it: with w' = s + lambda * dL/drk,
    # dL/ds = -(rk(s) - rk(w')) / lambda, written here with the naive counting rank
    torch.manual_seed(1)
    s = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 9, dtype=torch.float64)
    blackbox_rank(s, lam).backward(g)
    w = s.detach() + lam * g
    expected = -(_naive_ranks(s.detach()) - _naive_ranks(w)) / lam
    torch.testing.assert_close(s.grad, expected, rtol=0, atol=1e-12)
    assert s.grad.abs().sum() > 0  # the rule moves the scores for a generic g


@pytest.mark.parametrize("lam", [0.0, -1.0, float("inf"), float("nan"), "2"])
def test_bad_lambda_raises(lam):
    with pytest.raises(ValueError, match="lambda_val"):
        blackbox_rank(torch.randn(4), lam)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="floating-point"):
        blackbox_rank(torch.arange(4), 1.0)
    with pytest.raises(ValueError, match="floating-point"):
        blackbox_rank(torch.tensor(1.0), 1.0)


def test_rank_normalised_matches_the_counting_rank():
    torch.manual_seed(2)
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(rank_normalised(x), _naive_ranks(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- moved from the tightness tests
def test_rank_normalised_is_descending_and_normalised():
    r = rank_normalised(torch.tensor([[0.3, 2.0, -1.0, 0.5]]))
    torch.testing.assert_close(r, torch.tensor([[3, 1, 4, 2]]) / 4.0)


def test_blackbox_rank_backward_is_the_interpolation_rule():
    torch.manual_seed(0)
    s = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    target = torch.rand(3, 7, dtype=torch.float64)
    lam = 2.0
    r = blackbox_rank(s, lam)
    loss = ((r - target) ** 2).sum()
    loss.backward()
    g_out = 2 * (r.detach() - target)
    expected = -(rank_normalised(s.detach()) - rank_normalised(s.detach() + lam * g_out)) / lam
    torch.testing.assert_close(s.grad, expected)


def test_blackbox_rank_gradient_step_lowers_rank_loss():
    torch.manual_seed(0)
    s = torch.randn(1, 12, requires_grad=True)
    target = rank_normalised(torch.randn(1, 12))
    opt = torch.optim.SGD([s], lr=1.0)
    start = float(((blackbox_rank(s.detach(), 1.0) - target) ** 2).sum())
    for _ in range(50):
        opt.zero_grad()
        ((blackbox_rank(s, 1.0) - target) ** 2).sum().backward()
        opt.step()
    assert float(((blackbox_rank(s.detach(), 1.0) - target) ** 2).sum()) < 0.2 * start
