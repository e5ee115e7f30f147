"""Batch losses on 2 processes (gloo, CPU) equal those of 1 process with the global batch.

One launch of 2 processes checks, for NCA, NCA + SoftStep, DiffKNN + SoftStep, ROT-Reg, RankSim,
Ordinal Entropy and PH-Reg (float64): the loss, its terms and the gradient of every parameter
(trunk and head) after DistributedDataParallel, with 2 x B/2 rows (an odd B, so the shards are
uneven), against one process with the B rows -- the oracle is computed here, in the test process,
with no process group and no code of ``beyondmse.distributed``. The same launch checks the memory
bank built by ``fit_memory_from`` and three epochs of ``Trainer.fit`` (batches, DDP, validation in
parts, early-stopping choice) against one process.
"""

from __future__ import annotations

import pytest
import torch

from beyondmse import distributed
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, seed_everything

METHODS = ("nca", "nca-softstep-g", "dknn-softstep-g", "rot", "ranksim", "oe", "ph-reg")
TRUNK = {"hidden": 16, "depth": 1, "dropout": 0.0, "embedding_dim": 8}
B, D = 41, 5  # 41 rows: shards of 21 and 20 (the padded gather)
LOSS_SEED = 123  # the regularizers that subsample (PH-Reg) draw the same subsets in both set-ups


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    y = (x[:, :1].sin() + 0.1 * x[:, 1:2] ** 2).clone()
    return x, y


def _model(method: str):
    seed_everything(7)
    model, _ = build_model(method, (D,), 1, dict(TRUNK))
    return model.double()


def _loss_and_grads(model, x, y) -> dict:
    """Loss, terms and parameter gradients of one step on ``(x, y)`` through the training step
    the Trainer uses (DDP inside a process group)."""
    model.head.fit_targets(y)
    step = distributed.wrap_for_training(model)
    torch.manual_seed(LOSS_SEED)
    out = step(x, y)
    out.total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": out.total.detach(), "terms": {k: v.detach() for k, v in out.terms.items()}, "grads": grads}


def _short_fit(X, y):
    """Three epochs of nca on float32 data; predictions on fixed rows and the validation curve."""
    seed_everything(3)
    model, _ = build_model("nca", (D,), 1, dict(TRUNK))
    trainer = Trainer(batch_size=32, max_epochs=3, patience=None, seed=5, device="cpu")
    hist = trainer.fit(model, X[:120], y[:120], X[120:], y[120:])
    return {"val": torch.tensor(hist.val_score), "pred": trainer.predict(model, X[:20]),
            "memory": model.head.memory_z.clone()}


def _fit_data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(150, D, generator=g)
    return X, X[:, :1].sin() + 0.1 * X[:, 1:2]


def _on_each_rank(methods) -> dict:
    """What every rank computes: its part of the batch, gathered inside the losses."""
    x, y = _data()
    out = {}
    for method in methods:
        model = _model(method)
        out[method] = _loss_and_grads(model, distributed.local_part(x), distributed.local_part(y))
    model = _model("nca")
    model.fit_memory_from(distributed.local_part(x), distributed.local_part(y))
    out["memory"] = (model.head.memory_z.clone(), model.head.memory_y.clone())
    out["fit"] = _short_fit(*_fit_data())
    out["world"] = distributed.world_size()
    return out


@pytest.fixture(scope="module")
def two_ranks():
    return distributed.launch(_on_each_rank, (METHODS,), nproc=2, threads=1, timeout_s=120)


@pytest.fixture(scope="module")
def one_process():
    assert not distributed.is_distributed()
    x, y = _data()
    out = {m: _loss_and_grads(_model(m), x, y) for m in METHODS}
    model = _model("nca")
    model.fit_memory_from(x, y)
    out["memory"] = (model.head.memory_z, model.head.memory_y)
    out["fit"] = _short_fit(*_fit_data())
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", METHODS)
def test_loss_and_gradients_match_one_process(two_ranks, one_process, method):
    ref = one_process[method]
    assert ref["grads"], "the oracle has no gradients"
    for r in (0, 1):
        assert two_ranks[r]["world"] == 2
        got = two_ranks[r][method]
        torch.testing.assert_close(got["loss"], ref["loss"], rtol=1e-5, atol=1e-8)
        assert got["terms"].keys() == ref["terms"].keys()
        for k in ref["terms"]:
            torch.testing.assert_close(got["terms"][k], ref["terms"][k], rtol=1e-5, atol=1e-8)
        assert got["grads"].keys() == ref["grads"].keys(), "some parameter got no gradient"
        trunk = [n for n in ref["grads"] if n.startswith("trunk.")]
        assert trunk and any(ref["grads"][n].abs().max() > 1e-6 for n in trunk)
        for name, g in ref["grads"].items():
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-5, atol=1e-8, msg=f"{method}: {name}")


@pytest.mark.timeout(300)
def test_memory_bank_is_built_from_all_ranks(two_ranks, one_process):
    z, yy = one_process["memory"]
    for r in (0, 1):
        gz, gy = two_ranks[r]["memory"]
        assert gz.shape == z.shape == (B, TRUNK["embedding_dim"])
        torch.testing.assert_close(gz, z)
        torch.testing.assert_close(gy, yy)


@pytest.mark.timeout(300)
def test_trainer_on_two_processes_follows_one_process(two_ranks, one_process):
    ref = one_process["fit"]
    for r in (0, 1):
        got = two_ranks[r]["fit"]
        assert len(got["val"]) == len(ref["val"]) == 3
        torch.testing.assert_close(got["val"], ref["val"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["pred"], ref["pred"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["memory"], ref["memory"], rtol=1e-4, atol=1e-4)
