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


def _min_cosine_between_regressors(head):
    w = head.fc.weight.detach().view(head.n_targets, head.target_dim, -1)
    w = w / w.norm(dim=-1, keepdim=True)
    cos = torch.einsum("kmd,lmd->mkl", w, w)
    off = ~torch.eye(head.n_targets, dtype=torch.bool)
    return float(cos[:, off].min())


@pytest.mark.parametrize("independent", [True, False])
def test_regressors_stay_diverse_under_the_coordinate_protocols_small_init(independent):
    # the coordinate protocol re-initialises every nn.Linear with N(0, 0.001^2): the regressors
    # must keep their own draw (independent_init) or they collapse into one
    from beyondmse.recipes import build_model

    torch.manual_seed(0)
    model, _ = build_model("mt", 20, 3, {"hidden": 32, "dropout": 0.0, "embedding_dim": 0,
                                         "weight_init": "normal-0.001", "n_targets": 8,
                                         "mt_independent_init": independent})
    assert (model.head.fc.weight.std() > 0.05) == independent  # untouched by the model-wide init
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 20, generator=g)
    y = torch.tanh(x[:, :3]) + 0.1 * x[:, 3:6]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(300):
        opt.zero_grad()
        model.training_loss(x, y).total.backward()
        opt.step()
    with torch.no_grad():
        spread = float(model.head.all_predictions(model.embed(x)).std(dim=1).pow(2).mean().sqrt())
    if independent:
        assert _min_cosine_between_regressors(model.head) < 0.8 and spread > 5e-3
    else:  # the failure this option exists for
        assert _min_cosine_between_regressors(model.head) > 0.9 and spread < 1e-3
