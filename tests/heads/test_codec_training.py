"""The codec heads inside the Trainer: weight decay leaves the codec alone, the end-to-end encoder
does not collapse on a real set, and a 625-class end-to-end codec learns a 2-D target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyondmse.heads import Codec
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, decay_groups, seed_everything

torch.set_num_threads(1)


def _toy(n=300, d=4, m=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    y = (X[:, :m] * X[:, 1:m + 1] + 0.5 * X[:, -1:]) / 1.5
    return X, y


def test_decay_groups_exempt_exactly_the_codec():
    model, _ = build_model("e2e-codec", 4, 1, {"k": 5})
    params = [p for p in model.parameters() if p.requires_grad]
    groups = decay_groups(model, params, 1e-4)
    exempt = {id(p) for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in exempt}
    assert names == {"head.mu", "head.centers", "head.log_prior"}
    assert sum(len(g["params"]) for g in groups) == len(params)
    # a head without the hook: one group, as before
    model, _ = build_model("ls", 4, 1, {})
    assert len(decay_groups(model, list(model.parameters()), 1e-4)) == 1


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_weight_decay_does_not_touch_codec_parameters(optimizer):
    """With the data's gradient on the codec zeroed, only a decay could move it: under a huge
    decay (coupled for Adam, decoupled for AdamW) it must stay where ``fit_targets`` put it,
    while the trunk does decay."""
    X, y = _toy()
    trunks = []
    for wd in (0.0, 10.0):
        seed_everything(0)
        model, _ = build_model("e2e-codec", 4, 1, {"k": 7, "hidden": 16})
        for p in model.head.codec_parameters().values():
            p.register_hook(torch.zeros_like)
        Trainer(lr=1e-2, weight_decay=wd, batch_size=64, max_epochs=2, patience=None, optimizer=optimizer,
                seed=0, device="cpu").fit(model, X, y)
        for name, p in model.head.codec_parameters().items():
            torch.testing.assert_close(p.detach(), model.head._start_state[name], rtol=0, atol=0, msg=name)
        trunks.append(model.trunk.net[0].weight.detach().clone())
    assert not torch.equal(trunks[0], trunks[1])  # the decay did act on the trunk


@pytest.fixture(scope="module")
def cpu_act_small():
    from beyondmse.data import load_dataset, make_splits

    ds = load_dataset("cpu_act-num")
    s = make_splits(ds, seed=0, protocol="paper")
    return s.X_train[:2000], s.y_train[:2000], s.X_val, s.y_val


def test_end_to_end_encoder_does_not_collapse_on_cpu_act(cpu_act_small):
    """The failure of issue 13: the KL collapsed the encoder (entropy 0.70 -> 0.04, 15 -> 5
    classes, auto-encoding error 0.0008 -> 0.045). After a short fit the encoder keeps at least
    70% of its entropy and 80% of its used classes, and its auto-encoding error does not grow by
    more than half (without the auto-encoding term it grows ~6x here, unscaled ~4x)."""
    Xtr, ytr, Xv, yv = cpu_act_small
    seed_everything(0)
    model, _ = build_model("e2e-codec", Xtr.shape[1], 1, {"k": 25, "hidden": 64, "dropout": 0.0})
    Trainer(lr=3e-3, batch_size=128, max_epochs=8, patience=None, seed=0, device="cpu").fit(model, Xtr, ytr)
    health = model.head.fit_summary(torch.as_tensor(yv, dtype=torch.float32))["encoder_health"]
    start, end = health["start"], health["end"]
    assert start["classes_used"] >= 10 and start["entropy"] > 0.5
    assert end["entropy"] >= 0.7 * start["entropy"], health
    assert end["classes_used"] >= 0.8 * start["classes_used"], health
    assert end["auto_mae"] <= 1.5 * start["auto_mae"], health


def test_end_to_end_625_classes_learns_a_2d_target():
    """k = 625 on a 25 x 25 grid, the papers' OSV-5M set-up, on a smooth 2-D target."""
    X, y2 = _toy(n=1500, d=4, m=1, seed=1)
    y = torch.cat([y2, (X[:, 2:3] + X[:, 0:1] ** 2) / 2], dim=1)
    seed_everything(0)
    model, _ = build_model("e2e-codec", 4, 2, {"k": 625, "init": "grid", "hidden": 64, "dropout": 0.0})
    assert model.head.k == 625 and model.head.grid_side == 25
    Trainer(lr=3e-3, batch_size=128, max_epochs=15, patience=None, seed=0, device="cpu").fit(model, X[:1200], y[:1200])
    pred = Trainer(device="cpu").predict(model, X[1200:])
    mae = float((pred - y[1200:]).abs().mean())
    baseline = float((y[:1200].mean(0) - y[1200:]).abs().mean())
    assert mae < 0.4 * baseline, (mae, baseline)
    health = model.head.encoder_health(y[1200:])
    assert health["classes_used"] >= 100 and health["auto_mae"] < 0.02, health


def test_fit_summary_round_trips_the_learned_codec():
    X, y = _toy()
    seed_everything(0)
    model, _ = build_model("e2e-codec", 4, 1, {"k": 7, "hidden": 16})
    Trainer(lr=1e-2, batch_size=64, max_epochs=3, patience=None, seed=0, device="cpu").fit(model, X, y)
    head = model.head
    summary = head.fit_summary(y)
    import json

    state = json.loads(json.dumps(summary["codec"]))  # what a run record stores
    rebuilt = Codec.from_codec_state(state)
    torch.testing.assert_close(rebuilt.encode(y), head.encode(y))
    torch.testing.assert_close(rebuilt.mu, head.mu)
    start = Codec.from_codec_state(state, which="start")
    assert not torch.allclose(start.encode(y), head.encode(y))  # the codec did move
    assert summary["encoder_health"]["start"] == start.encoder_health(y)
    assert np.isfinite(summary["encoder_health"]["end"]["auto_mae"])


def _effective_centers(head) -> torch.Tensor:
    """The encoder's Gaussian centers read off its logits, whatever the parametrisation:
    a_i(y) = beta_i - (y - c_i)^2 / 2 sigma^2 gives c_i = y + sigma^2 da_i/dy (m = 1)."""
    y0 = ((head.lo + head.hi) / 2).reshape(1, 1).detach().requires_grad_()
    jac = torch.autograd.functional.jacobian(lambda t: head.encoder_logits(t)[0], y0)  # (k, 1, 1)
    return y0.detach()[0, 0] + head.sigma ** 2 * jac.reshape(-1)


def test_encoder_moves_at_the_same_rate_in_spacings_whatever_k():
    """Adam's first step moves each parameter by about lr; the encoder's centers are stored in
    units of sigma, so a step moves a center by lr * lambda_sigma spacings at every k (in the
    papers' affine form it moved ~lambda_sigma**2 * spacing times that, slower the larger k)."""
    lr, moves = 1e-3, {}
    y = torch.rand(500, 1, generator=torch.Generator().manual_seed(0))
    for k in (5, 25):
        torch.manual_seed(0)
        head = Codec.for_mode("e2e-codec", 4, 1, k=k).double()  # float64: no rounding of the step
        head.fit_targets(y.double())
        before = _effective_centers(head).detach()
        torch.testing.assert_close(before, head.mu.detach()[:, 0])  # initialised at c = mu
        opt = torch.optim.Adam([head.centers], lr=lr)
        head.loss(torch.randn(500, 4, dtype=torch.float64), y.double()).total.backward()
        clear = head.centers.grad.abs()[:, 0] > 1e-5  # Adam's eps damps the step of near-zero gradients
        assert clear.sum() >= 3
        opt.step()
        moved = (_effective_centers(head).detach() - before).abs() / head.spacing
        moves[k] = moved[clear]
    for k, moved in moves.items():
        torch.testing.assert_close(moved, torch.full_like(moved, lr * 0.5), rtol=1e-3, atol=0, msg=f"k={k}")


def test_end_to_end_625_classes_on_the_registered_2d_task():
    """``diamonds-xy`` through ``run_experiment`` (what ``beyondmse run --dataset diamonds-xy
    --method e2e-codec --param k=625`` does), on a fixed 4,000-row subsample to stay quick."""
    from beyondmse.data import load_dataset, make_splits
    from beyondmse.data.dataset import Dataset
    from beyondmse.experiment import run_experiment

    full = load_dataset("diamonds-xy")
    rows = np.random.default_rng(0).choice(full.n_samples, 4000, replace=False)
    ds = Dataset("diamonds-xy-4k", full.X[rows], full.y[rows], full.feature_names, full.target_names, "subsample")
    splits = make_splits(ds, seed=0, protocol="default")
    record = run_experiment(ds, "e2e-codec", 0, epochs=8, params={"k": 625, "lr": 3e-3}, splits=splits)
    codec = record["head"]["codec"]
    assert codec["k"] == 625 and codec["target_dim"] == 2
    assert record["head"]["encoder_health"]["end"]["classes_used"] >= 100
    mean_mae = float(np.abs(splits.y_test - splits.y_train.mean(0)).mean())
    assert record["metrics"]["mae"] < 0.2 * mean_mae, (record["metrics"]["mae"], mean_mae)
