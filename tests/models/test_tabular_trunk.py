"""trunk="tabular" (issue 20): robust preprocessing fitted on the training split, numeric and level
embeddings, the cosine schedule, and every recipe and regularizer on top of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beyondmse.checkpoint import load_model, save_model
from beyondmse.models import make_trunk
from beyondmse.models.tabular import TabularTrunk
from beyondmse.recipes import REGULARIZERS, RECIPES, build_model
from beyondmse.train import Trainer, seed_everything

SMALL = {"trunk": "tabular", "hidden": 16, "depth": 1, "embedding_dim": 8, "num_embedding_dim": 4}


def _table(n=60, seed=0):
    """Columns: continuous, a 3-level code, a 0/1 column, a constant; target from all of them."""
    rng = np.random.default_rng(seed)
    cont = rng.normal(size=n) * 5 + 2
    code = rng.integers(0, 3, size=n).astype(float)
    flag = rng.integers(0, 2, size=n).astype(float)
    X = np.stack([cont, code, flag, np.full(n, 7.0)], axis=1).astype(np.float32)
    y = (0.1 * cont + np.array([0.0, 2.0, -1.0])[code.astype(int)] + flag)[:, None].astype(np.float32)
    return X, y


def test_fit_inputs_robust_scaling_from_the_definition():
    X, _ = _table()
    trunk = TabularTrunk(4, max_levels=4).fit_inputs(X)
    cont = np.sort(X[:, 0].astype(np.float64))
    n = len(cont)
    # linear-interpolation quantiles written out: position q (n - 1) between sorted values
    def quantile(q):
        pos = q * (n - 1)
        lo = int(math.floor(pos))
        return cont[lo] + (pos - lo) * (cont[min(lo + 1, n - 1)] - cont[lo])

    assert trunk.center[0].item() == pytest.approx(quantile(0.5), rel=1e-5)
    assert trunk.scale[0].item() == pytest.approx(quantile(0.75) - quantile(0.25), rel=1e-5)
    assert trunk.scale[3].item() == 1.0 and trunk.center[3].item() == 7.0  # constant column -> 0
    s = (X[:5, 0] - quantile(0.5)) / (quantile(0.75) - quantile(0.25))
    u = trunk.standardize(torch.as_tensor(X[:5]))
    np.testing.assert_allclose(u[:, 0].numpy(), s / np.sqrt(1 + s ** 2 / 9), rtol=1e-5)
    assert (u[:, 3] == 0).all()
    big = trunk.standardize(torch.tensor([[1e6, -1e30, 3e38, 7.0]]))
    assert big[0, :3].tolist() == pytest.approx([3.0, -3.0, 3.0], rel=1e-5)  # outliers end near +-3, not at 0


def test_half_range_when_the_quartiles_coincide():
    X = np.zeros((40, 1), np.float32)
    X[-2:, 0] = [4.0, -2.0]  # IQR 0, range 6
    trunk = TabularTrunk(1).fit_inputs(X)
    assert trunk.scale.item() == pytest.approx(3.0)


def test_categorical_columns_get_one_row_per_level():
    X, _ = _table()
    trunk = TabularTrunk(4, max_levels=4).fit_inputs(X)
    assert trunk.is_categorical.tolist() == [False, True, True, True]
    probe = torch.tensor([[0.3, 0.0, 1.0, 7.0], [0.3, 2.0, 0.0, 7.0], [0.3, 5.0, 0.0, 7.0]])
    rows, known = trunk.level_codes(probe)
    # column j owns rows j * max_levels ... j * max_levels + max_levels - 1, levels in sorted order
    assert rows[0, 1].item() == 4 + 0 and rows[1, 1].item() == 4 + 2 and rows[0, 2].item() == 8 + 1
    assert rows[1, 2].item() == 8 + 0 and rows[0, 3].item() == 12 + 0
    assert known[:, 0].tolist() == [False] * 3  # continuous column: numeric path only
    assert known[:2, 1:].all() and not known[2, 1]  # level 5 was never seen in training


def test_level_embedding_changes_only_rows_with_that_level():
    X, _ = _table()
    seed_everything(0)
    trunk = TabularTrunk(4, hidden=8, depth=1, embedding_dim=None, max_levels=4).fit_inputs(X).eval()
    x = torch.as_tensor(X)
    before = trunk(x)
    with torch.no_grad():
        trunk.level_embedding.weight[4 + 2] += 1.0  # column 1, level 2
    changed = (trunk(x) - before).abs().sum(1) > 0
    assert changed.tolist() == (X[:, 1] == 2).tolist()


def test_level_embeddings_learn():
    X, y = _table()
    seed_everything(0)
    model, _ = build_model("ls", 4, 1, SMALL)
    model.trunk.fit_inputs(X)
    model.training_loss(torch.as_tensor(X), torch.as_tensor(y)).total.backward()
    grad = model.trunk.level_embedding.weight.grad
    L = model.trunk.max_levels
    used = {L, L + 1, L + 2, 2 * L, 2 * L + 1, 3 * L}  # levels 0-2 of column 1, 0-1 of column 2, the constant
    assert all(grad[r].abs().sum() > 0 for r in used)
    assert all(grad[r].abs().sum() == 0 for r in range(4 * L) if r not in used)


def test_numeric_path_sees_the_standardized_input():
    X, _ = _table()
    seed_everything(0)
    trunk = TabularTrunk(4, hidden=8, depth=1, max_levels=1).fit_inputs(X).eval()
    x = torch.as_tensor(X[:3]).clone()
    out = trunk(x)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(trunk(x2), out)
    x3 = x.clone()
    x3[:, 3] += 0.0  # unchanged constant column
    torch.testing.assert_close(trunk(x3), out)


def test_trainer_fits_the_preprocessing_on_the_training_inputs_only():
    X, y = _table(80)
    seed_everything(0)
    model, _ = build_model("ls", 4, 1, SMALL)
    Xv = X[:20] + 100.0  # a shifted validation split must not move the statistics
    Trainer(max_epochs=1, batch_size=32, seed=0, device="cpu").fit(model, X, y, Xv, y[:20])
    assert model.trunk.center[0].item() == pytest.approx(float(np.median(X[:, 0])), rel=1e-5)


def test_cosine_schedule_follows_the_formula():
    X, y = _table(64)
    seed_everything(0)
    model, _ = build_model("ls", 4, 1, SMALL)
    trainer = Trainer(lr=0.01, max_epochs=4, batch_size=32, seed=0, device="cpu", schedule="cosine", patience=None)
    seen = []
    orig = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        trainer.fit(model, X, y)
    finally:
        torch.optim.Adam.step = orig
    total = 4 * 2  # epochs x batches
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(seen, expected, rtol=1e-9)
    with pytest.raises(ValueError, match="schedule"):
        Trainer(schedule="linear")


def test_tabular_trunk_brings_its_training_defaults():
    """trunk="tabular" trains with a cosine schedule and AdamW at lr 3e-3, decoupled decay 0.3, no early
    stopping (RealMLP-style, chosen on validation in issue 20); the user's settings win; the MLP keeps the Trainer's."""
    _, kw = build_model("ls", 4, 1, SMALL)
    assert {k: kw.get(k, "unset") for k in ("schedule", "optimizer", "lr", "weight_decay", "patience")} == \
        {"schedule": "cosine", "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.3, "patience": None}
    _, kw = build_model("ls", 4, 1, {**SMALL, "lr": 1e-4, "optimizer": "adam"})
    assert (kw["lr"], kw["optimizer"], kw["weight_decay"], kw["schedule"]) == (1e-4, "adam", 0.3, "cosine")
    _, kw = build_model("ls", 4, 1, {"trunk": "mlp"})
    assert not {"schedule", "optimizer", "lr", "weight_decay", "patience"} & set(kw)
    # the optimizer really is AdamW with that decay and the cosine rate, step by step
    X, y = _table(64)
    seed_everything(0)
    model, kw = build_model("ls", 4, 1, SMALL)
    seen = []
    orig = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append((self.param_groups[0]["lr"], self.param_groups[0]["weight_decay"]))
        return orig(self, *a, **k)

    torch.optim.AdamW.step = spy
    try:
        Trainer(**{**kw, "max_epochs": 2, "batch_size": 32, "device": "cpu", "seed": 0}).fit(model, X, y)
    finally:
        torch.optim.AdamW.step = orig
    total = 2 * 2  # epochs x batches
    assert [wd for _, wd in seen] == [0.3] * total
    np.testing.assert_allclose([lr for lr, _ in seen],
                               [3e-3 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)], rtol=1e-9)


def test_run_record_names_the_trunk_as_the_source_of_its_training_defaults():
    from beyondmse.data import Dataset
    from beyondmse.experiment import run_experiment

    X, y = _table(90)
    rec = run_experiment(Dataset("tab-toy", X, y, ["c", "code", "flag", "k"], ["t"], "generated"), "ls",
                         params={**SMALL, "lr": 1e-3}, epochs=1, protocol="default", diagnostics=False)
    trainer, overrides = rec["config"]["trainer"], rec["config"]["overrides"]
    assert (trainer["optimizer"], trainer["weight_decay"], trainer["schedule"], trainer["patience"], trainer["lr"]) == \
        ("adamw", 0.3, "cosine", None, 1e-3)
    assert {k: overrides[k] for k in ("optimizer", "weight_decay", "schedule", "patience", "lr")} == \
        {"optimizer": "trunk", "weight_decay": "trunk", "schedule": "trunk", "patience": "trunk", "lr": "params"}


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_every_recipe_trains_a_step_on_the_tabular_trunk(method):
    X, y = _table(48)
    seed_everything(0)
    model, trainer_kw = build_model(method, 4, 1, SMALL)
    assert isinstance(model.trunk, TabularTrunk)
    trainer_kw.update(max_epochs=1, batch_size=48, device="cpu", seed=0)
    trainer_kw.pop("eval_every", None)
    before = [p.detach().clone() for p in model.trunk.parameters()]
    hist = Trainer(**trainer_kw).fit(model, X, y)
    assert math.isfinite(hist.train_loss[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.trunk.parameters()))
    pred = Trainer(device="cpu").predict(model, X)
    assert pred.shape == (48, 1) and torch.isfinite(pred).all()


@pytest.mark.parametrize("suffix", sorted(REGULARIZERS))
def test_every_regularizer_composes_with_the_tabular_trunk(suffix):
    X, y = _table(48)
    seed_everything(0)
    model, _ = build_model(f"ls+{suffix}", 4, 1, SMALL)
    model.trunk.fit_inputs(X)
    out = model.training_loss(torch.as_tensor(X), torch.as_tensor(y))
    assert suffix in " ".join(out.terms) or len(out.terms) > 1
    out.total.backward()
    grads = [p.grad for p in model.trunk.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_checkpoint_restores_the_fitted_preprocessing(tmp_path):
    X, y = _table(64)
    seed_everything(0)
    model, _ = build_model("ls", 4, 1, SMALL)
    Trainer(max_epochs=2, batch_size=32, seed=0, device="cpu").fit(model, X, y)
    path = save_model(model, tmp_path / "m.safetensors", method="ls", input_shape=(4,), target_dim=1, params=SMALL)
    loaded, _ = load_model(path)
    torch.testing.assert_close(loaded.trunk.levels, model.trunk.levels)
    torch.testing.assert_close(loaded(torch.as_tensor(X)), model(torch.as_tensor(X)), rtol=0, atol=0)


def test_same_seed_same_numbers():
    X, y = _table(64)
    preds = []
    for _ in range(2):
        seed_everything(3)
        model, _ = build_model("ls", 4, 1, SMALL)
        trainer = Trainer(max_epochs=2, batch_size=16, seed=3, device="cpu", schedule="cosine")
        trainer.fit(model, X, y, X[:16], y[:16])
        preds.append(trainer.predict(model, X))
    torch.testing.assert_close(preds[0], preds[1], rtol=0, atol=0)


def test_errors():
    with pytest.raises(ValueError, match="unknown setting"):
        make_trunk((4,), {"trunk": "tabular", "freeze": True})
    with pytest.raises(ValueError, match="feature vectors"):
        make_trunk((1, 4, 4), {"trunk": "tabular"})
    with pytest.raises(ValueError, match="frequency_scale"):
        TabularTrunk(3, frequency_scale=0.0)
    trunk = TabularTrunk(3)
    with pytest.raises(ValueError, match="NaN"):
        trunk.fit_inputs(np.array([[0.0, np.nan, 1.0]] * 3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        trunk.fit_inputs(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        trunk(torch.zeros(2, 4))


def test_periodic_embedding_matches_the_authors_package():
    rtdl = pytest.importorskip("rtdl_num_embeddings", reason="the oracle is the authors' package (test extra)")
    from beyondmse.models.tabular import PeriodicEmbedding

    torch.manual_seed(0)
    ours = PeriodicEmbedding(3, 5, 4, 0.7)
    theirs = rtdl.PeriodicEmbeddings(3, 5, n_frequencies=4, frequency_init_scale=0.7, lite=False)
    with torch.no_grad():
        theirs.periodic.weight.copy_(ours.frequencies)
        theirs.linear.weight.copy_(ours.weight)
        theirs.linear.bias.copy_(ours.bias)
    u = torch.randn(6, 3) * 2
    torch.testing.assert_close(ours(u), theirs(u))
    assert ours.frequencies.abs().max() <= 3 * 0.7  # truncated at 3 sigma
