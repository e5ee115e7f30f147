import numpy as np
import pytest
import torch

from beyondmse import load_dataset, load_model, save_model
from beyondmse.data import make_splits
from beyondmse.experiment import run_experiment
from beyondmse.recipes import build_model
from beyondmse.models import MLP, Identity, RegressionModel, SmallCNN
from beyondmse.heads import Linear
from beyondmse.train import EarlyStopping, Trainer, seed_everything


@pytest.fixture(scope="module")
def wine():
    s = make_splits(load_dataset("wine_quality-num"), 0, "paper")
    return s


def _fit(s, seed=0, epochs=5, method="ls", **kw):
    seed_everything(seed)
    model, tkw = build_model(method, s.X_train.shape[1:], 1)
    tkw.update(max_epochs=epochs, **kw)
    trainer = Trainer(seed=seed, device="cpu", **tkw)
    hist = trainer.fit(model, s.X_train, s.y_train, s.X_val, s.y_val)
    return model, trainer, hist


@pytest.mark.parametrize("method", ["ls", "huber"])
def test_linear_heads_learn_on_real_data(wine, method):
    model, trainer, hist = _fit(wine, epochs=15, method=method)
    pred = trainer.predict(model, wine.X_test).numpy()
    mae = np.abs(pred - wine.y_test).mean()
    trivial = np.abs(np.median(wine.y_train) - wine.y_test).mean()
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert mae < 0.9 * trivial


def test_same_seed_same_numbers(wine):
    a = _fit(wine, seed=7, epochs=2)
    b = _fit(wine, seed=7, epochs=2)
    c = _fit(wine, seed=8, epochs=2)
    pa, pb, pc = (t.predict(m, wine.X_test) for m, t, _ in (a, b, c))
    torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert not torch.equal(pa, pc)


def test_early_stopping_restores_best_weights(wine):
    model, trainer, hist = _fit(wine, epochs=60, patience=2, lr=0.05)
    assert hist.epochs_run < 60  # stopped early
    best = min(hist.val_mae)
    final = (trainer.predict(model, wine.X_val) - torch.as_tensor(wine.y_val)).abs().mean().item()
    assert final == pytest.approx(best, rel=1e-5)
    assert hist.best_epoch == hist.val_epochs[int(np.argmin(hist.val_mae))]


def _scripted_scores(monkeypatch, scores):
    """Make the selection metric return ``scores`` in order, one per validation."""
    import beyondmse.train as train
    it = iter(scores)
    monkeypatch.setitem(train.SELECT_METRICS, "mse", lambda err: next(it))


@pytest.mark.parametrize("min_delta,stop,best", [
    (0.0, 30, 30),      # every epoch improves a little: training runs to the cap
    (1e-3, 6, 6),       # gains of 1e-4 per epoch never reach 1e-3 within patience 5
    (3e-4, 30, 30),     # three gains of 1e-4 add up to more than 3e-4: a reset every 4 epochs
])
def test_min_delta_stops_runs_that_only_creep(wine, monkeypatch, min_delta, stop, best):
    # score at epoch e is 0.9999^(e-1): each validation 0.01% better than the one before
    _scripted_scores(monkeypatch, [0.9999 ** e for e in range(30)])
    _, _, hist = _fit(wine, epochs=30, patience=5, min_delta=min_delta)
    assert hist.epochs_run == stop
    assert hist.best_epoch == best  # the best weights are the best score's, significant or not


def test_min_delta_measures_from_the_last_reset(wine, monkeypatch):
    # 1.0, then 0.5% better (a reset), then steps of 0.05%: the fifth (epoch 7) would be 0.25%
    # below epoch 2 and reset again, but patience 3 ends the run at epoch 5
    scores = [1.0, 0.995] + [0.995 * 0.9995 ** e for e in range(1, 30)]
    _scripted_scores(monkeypatch, scores)
    _, _, hist = _fit(wine, epochs=30, patience=3, min_delta=2e-3)
    assert hist.epochs_run == 5
    assert hist.best_epoch == 5
    _scripted_scores(monkeypatch, scores)
    _, _, hist = _fit(wine, epochs=30, patience=5, min_delta=2e-3)
    assert hist.epochs_run == 30  # patience 5: resets at epochs 7, 12, ... carry it to the cap


def test_min_delta_is_checked():
    with pytest.raises(ValueError, match="min_delta"):
        Trainer(min_delta=-0.1)
    with pytest.raises(ValueError, match="min_delta"):
        Trainer(min_delta=1.0)
    with pytest.raises(ValueError, match="patience"):
        Trainer(patience=0)


def test_early_stopping_without_patience_never_stops():
    stopping = EarlyStopping(None, min_delta=0.5)
    flags = [stopping.update(s) for s in [1.0, 2.0, 0.9, 3.0, 3.0, 3.0]]
    assert flags == [True, False, True, False, False, False]
    assert stopping.best == 0.9 and not stopping.should_stop


def test_save_and_load_predict_identically(tmp_path, wine):
    model, trainer, _ = _fit(wine, epochs=2)
    path = save_model(model, tmp_path / "m.safetensors", method="ls", input_shape=wine.X_train.shape[1:],
                      target_dim=1, extra={"y_offset": wine.y_offset.tolist()})
    loaded, meta = load_model(path)
    assert meta["extra"]["y_offset"] == wine.y_offset.tolist()
    torch.testing.assert_close(loaded(torch.as_tensor(wine.X_test)), trainer.predict(model, wine.X_test))
    # plain tensors only: the weights also load with torch's safe loader semantics (no pickle)
    from safetensors.torch import load_file
    assert all(isinstance(v, torch.Tensor) for v in load_file(str(path)).values())


def test_load_model_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match="no such model file"):
        load_model(tmp_path / "none.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a beyondmse model file"):
        load_model(tmp_path / "x.safetensors")


@pytest.mark.parametrize("X,y,match", [
    (np.full((10, 2), np.nan), np.zeros(10), "NaN or inf"),
    (np.zeros((10, 2)), np.full(10, np.inf), "NaN or inf"),
    (np.zeros((10, 2)), np.zeros(9), "10 rows but targets have 9"),
    (np.zeros((1, 2)), np.zeros(1), "at least 2"),
    (np.zeros((0, 2)), np.zeros(0), "empty"),
])
def test_trainer_rejects_bad_input(X, y, match):
    model = RegressionModel(Identity(2), Linear(2, 1))
    with pytest.raises(ValueError, match=match):
        Trainer(device="cpu", max_epochs=1).fit(model, X, y)


def test_trainer_rejects_bad_settings():
    for bad in (1, "none", 2.5, True):  # a string from a config file is an error here, not a TypeError later
        with pytest.raises(ValueError, match="batch_size"):
            Trainer(batch_size=bad)
    assert Trainer(batch_size=np.int64(64)).batch_size == 64
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(optimizer="sgd")


def test_multi_dimensional_targets_train_end_to_end(shared_data):
    rec = run_experiment("circle", "ls", 0, epochs=3)
    assert rec["sizes"] == [100, 100, 2800] and np.isfinite(rec["metrics"]["mse"])


def test_trunk_shapes():
    assert MLP(6, hidden=128, depth=3)(torch.zeros(4, 6)).shape == (4, 128)
    assert MLP(6, embedding_dim=25)(torch.zeros(4, 6)).shape == (4, 25)
    cnn = SmallCNN(3, 28)
    assert cnn(torch.zeros(2, 3, 28, 28)).shape == (2, 256) and cnn.out_features == 256
    with pytest.raises(ValueError, match="images"):
        cnn(torch.zeros(2, 6))


def test_cnn_trunk_on_retinamnist(shared_data):
    rec = run_experiment("retinamnist", "ls", 0, epochs=1, diagnostics=False)
    assert rec["sizes"] == [1080, 120, 400] and np.isfinite(rec["metrics"]["mae"])


def test_experiment_record_format_and_peer_baselines(wine):
    rec = run_experiment("wine_quality-num", "ls", 1, epochs=2, splits=wine)
    for key in ("dataset", "method", "seed", "params", "metrics", "fit_seconds", "epochs"):
        assert key in rec
    for key in ("mae", "rmse", "r2", "spearman", "kendall", "volume", "delta_1"):
        assert np.isfinite(rec["metrics"][key])
    knn = run_experiment("wine_quality-num", "sk-knn", 0, splits=wine)
    assert knn["params"]["n_neighbors"] in (1, 3, 5, 10, 20, 50)
    ridge = run_experiment("wine_quality-num", "sk-ridge", 0, splits=wine)
    trivial = np.abs(np.median(wine.y_train) - wine.y_test).mean()
    assert ridge["metrics"]["mae"] < trivial


def test_neighbor_model_checkpoint_keeps_its_memory_bank(tmp_path):
    seed_everything(0)
    X, y = torch.rand(64, 4), torch.rand(64, 1)
    model, _ = build_model("nca-softstep-i", 4, 1, {"hidden": 16, "embedding_dim": 8})
    Trainer(device="cpu", max_epochs=2, batch_size=16).fit(model, X, y)
    assert model.head.memory_z.shape[0] == 64  # the memory bank holds the training set
    path = save_model(model, tmp_path / "nca.safetensors", method="nca-softstep-i", input_shape=(4,),
                      target_dim=1, params={"hidden": 16, "embedding_dim": 8})
    loaded, _ = load_model(path)
    torch.testing.assert_close(loaded(X[:10]), model.eval()(X[:10]), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["e2e-codec", "trained-codec", "hl-gauss", "mt+rot"])
def test_checkpoint_round_trip_for_family_recipes(tmp_path, method):
    seed_everything(0)
    X, y = torch.rand(64, 4), torch.rand(64, 1)
    params = {"hidden": 16, **({"stage1_steps": 5} if method == "trained-codec" else {})}
    model, _ = build_model(method, 4, 1, params)
    Trainer(device="cpu", max_epochs=2, batch_size=16).fit(model, X, y)
    path = save_model(model, tmp_path / "m.safetensors", method=method, input_shape=(4,), target_dim=1,
                      params=params)
    loaded, _ = load_model(path)
    torch.testing.assert_close(loaded(X), model.eval()(X), rtol=0, atol=0)
