"""One run: (dataset, method, parameters, seed) -> a JSON-ready record.

The record format (DESIGN.md): ``{"dataset", "method", "seed", "params", "metrics": {"mae",
"rmse", "r2", ...}, "fit_seconds", "epochs"}`` plus ``protocol``, ``sizes``,
``test_rows_in_train`` (the fraction of test rows that repeat a training row exactly), ``best_epoch``,
``cap_bound`` (the best epoch is within 10% of the epoch cap: more epochs might have helped),
``history`` (the learning curve), ``val_metrics`` and ``config``: the resolved ``trunk``
(class and constructor arguments), ``trainer`` and ``knobs`` settings, the dataset
``preset`` applied (or None) and ``overrides``, the settings that differ from the shared
defaults with where each came from (``recipe``, ``preset`` or ``params``). Metrics are computed on the scaled
targets (labels min-max scaled to [0, 1] on the training split, unless the dataset keeps raw
units), on the test split; the validation split is the only one used for any choice. A head
with a ``fit_summary(y_val)`` hook adds its answer as ``head`` (codec heads: encoder health at
the start and end of training on the validation targets, and the fitted codec). A method with a
predictive distribution (codec and neighbor heads, the uncertainty peers) adds ``crps``,
``pit_dev``, ``cov80``/``width80``/``cov90``/``width90`` and their ``_cqr`` versions (calibrated
on the validation split) to ``metrics``, and ``uncertainty`` (reliability curve, PIT histogram).

``params["ensemble"] = k`` (a torch method, k >= 2) trains k copies of the model on the same split,
the first from ``seed`` and the others from seeds no run uses, and scores the mean of their
predictions (a deep ensemble; Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles", NeurIPS 2017). The record adds ``ensemble`` (member seeds, best
epochs, fit seconds and test MAE); ``fit_seconds`` is the members' sum. Scores that describe
one model (the predictive distribution, the head's summary, embedding diagnostics) are left out.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from . import metrics as M
from .configurable import init_args
from .data import Dataset, Splits, load_dataset, make_splits
from .data.presets import apply_preset
from .recipes import (PEERS, RECIPES, TRAINER_KEYS, TRUNK_KEYS, build_model, parse_method, split_params,
                      trunk_trainer_defaults)
from .train import SELECT_METRICS, Trainer, seed_everything

#: the Trainer settings a record reports
TRAINER_SETTINGS = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "min_delta", "clip_norm", "optimizer",
                    "eval_every", "select", "augment", "schedule")


def _scores(splits: Splits, pred_test: np.ndarray) -> dict[str, float]:
    out = M.regression_report(splits.y_test, pred_test, splits.y_train)
    raw_true = splits.inverse_y(splits.y_test)
    if (raw_true > 0).all():
        out["delta_1"] = M.delta_1(raw_true, splits.inverse_y(pred_test))
    return out


def _val_metrics(y_val: np.ndarray, pred_val: np.ndarray) -> dict[str, float]:
    err = torch.as_tensor(np.asarray(pred_val, dtype=np.float64) - np.asarray(y_val, dtype=np.float64))
    return {name: fn(err) for name, fn in SELECT_METRICS.items()}


def _distribution_scores(predict_distribution, splits: Splits, conformal: bool = False) -> dict[str, Any]:
    """Distribution metrics of a method that has a predictive distribution (issue 19): CRPS, PIT
    deviation, coverage and width at 80% / 90%, raw and calibrated (CQR on the validation split),
    as ``{"metrics": {...}, "uncertainty": {reliability curve, PIT histogram}}``; ``{}`` for a
    point method (:func:`beyondmse.metrics.distribution_report`)."""
    from .distributions import NoDistributionError

    try:
        d_val, d_test = predict_distribution(splits.X_val), predict_distribution(splits.X_test)
    except NoDistributionError:
        return {}
    metrics, curves = M.distribution_report(d_val, splits.y_val, d_test, splits.y_test, conformal=conformal)
    return {"metrics": metrics, "uncertainty": curves}


def _run_peer(name: str, knobs: dict, given: set[str], splits: Splits, seed: int) -> tuple[dict, dict, float]:
    peer = PEERS[name]
    start = time.perf_counter()
    ytr = splits.y_train  # (n, m): every peer estimator takes 2-D targets
    chosen = dict(knobs)
    if peer.select is not None and peer.select[0] not in given:  # a value the caller set is kept
        key, candidates = peer.select
        candidates = [c for c in candidates if key != "n_neighbors" or c <= len(splits.X_train)]
        scores = {}
        for value in candidates:
            est = peer.make({**knobs, key: value}, seed).fit(splits.X_train, ytr)
            scores[value] = M.mae(splits.y_val, est.predict(splits.X_val).reshape(splits.y_val.shape))
        chosen[key] = min(scores, key=scores.get)
    if "n_neighbors" in chosen:
        chosen["n_neighbors"] = int(min(chosen["n_neighbors"], len(splits.X_train)))
    est = peer.make(chosen, seed).fit(splits.X_train, ytr)
    fit_seconds = time.perf_counter() - start
    pred_val = est.predict(splits.X_val).reshape(splits.y_val.shape)
    pred_test = est.predict(splits.X_test).reshape(splits.y_test.shape)
    result = {"metrics": _scores(splits, pred_test), "val_metrics": _val_metrics(splits.y_val, pred_val)}
    if callable(getattr(est, "predict_distribution", None)):  # uncertainty peers (recipes/uncertainty_peers.py)
        if callable(getattr(est, "calibrate", None)):
            est.calibrate(splits.X_val, splits.y_val)
        extra = _distribution_scores(est.predict_distribution, splits, bool(getattr(est, "conformal", False)))
        result["metrics"].update(extra.get("metrics", {}))
        result["uncertainty"] = extra.get("uncertainty")
    return chosen, result, fit_seconds


def _ensemble_size(value: Any, base: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"ensemble must be a whole number of members >= 1, got {value!r}")
    if value > 1 and base in PEERS:
        raise ValueError(f"ensemble is for the torch methods; {base!r} is a peer baseline")
    return int(value)


def _fit(method: str, params: dict, epochs: int | None, splits: Splits, seed: int, device: str | None,
         progress: bool = False):
    """Build the model from ``seed``, train it on the split; returns ``(model, trainer, history,
    test predictions, validation predictions)``."""
    seed_everything(seed)
    model, trainer_kw = build_model(method, splits.X_train.shape[1:], splits.y_train.shape[1], params)
    if epochs is not None:
        trainer_kw["max_epochs"] = epochs
    trainer = Trainer(seed=seed, device=device, progress=progress, **trainer_kw)
    hist = trainer.fit(model, splits.X_train, splits.y_train, splits.X_val, splits.y_val)
    return (model, trainer, hist, trainer.predict(model, splits.X_test).cpu().numpy(),
            trainer.predict(model, splits.X_val).cpu().numpy())


def _ensemble(method: str, params: dict, epochs: int | None, splits: Splits, seed: int, members: int,
              device: str | None, first_hist, first_test: np.ndarray, first_val: np.ndarray) -> dict[str, Any]:
    """Train members 2..k (the first is the run's own model) and score the mean prediction."""
    seeds, best, tests, vals, seconds = [seed], [first_hist.best_epoch], [first_test], [first_val], [first_hist.seconds]
    for j in range(1, members):
        member_seed = 1_000_003 * j + seed  # a seed no run of the harness uses (runs count from 0)
        _, _, hist, pred_test, pred_val = _fit(method, params, epochs, splits, member_seed, device)
        seeds.append(member_seed)
        best.append(hist.best_epoch)
        tests.append(pred_test)
        vals.append(pred_val)
        seconds.append(hist.seconds)
    pred_test, pred_val = np.mean(tests, axis=0), np.mean(vals, axis=0)
    return {"metrics": _scores(splits, pred_test), "val_metrics": _val_metrics(splits.y_val, pred_val),
            "fit_seconds": sum(seconds),
            "ensemble": {"members": members, "seeds": seeds, "best_epochs": best, "fit_seconds": seconds,
                         "member_test_mae": [M.mae(splits.y_test, p) for p in tests]}}


def _config(method: str, model, trainer: Trainer, params: dict, preset_params: dict, preset: str | None) -> dict:
    """The resolved settings of a torch run and which of them depart from the shared defaults."""
    base, _ = parse_method(method)
    recipe = RECIPES[base]
    trunk_kw, _, knobs = split_params(method, params)
    trunk_args = {k: v for k, v in init_args(model.trunk)[1].items() if k != "in_features"}
    if "weight_init" in trunk_kw:  # applied to the whole model by build_model, not a trunk argument
        trunk_args["weight_init"] = trunk_kw["weight_init"]
    overrides: dict[str, str] = {}
    for key in (*TRUNK_KEYS, *TRAINER_KEYS):
        if key in params:
            overrides[key] = "preset" if key in preset_params and preset_params[key] == params[key] else "params"
        elif key in recipe.trunk or key in recipe.trainer:
            overrides[key] = "recipe"
        elif key in trunk_trainer_defaults(trunk_kw):
            overrides[key] = "trunk"
    return {"trunk": {"class": type(model.trunk).__name__, **trunk_args},
            "trainer": {k: getattr(trainer, k) for k in TRAINER_SETTINGS},
            "knobs": knobs, "preset": preset, "overrides": overrides}


def run_experiment(dataset: str | Dataset, method: str, seed: int = 0, *, epochs: int | None = None,
                   params: dict[str, Any] | None = None, protocol: str | None = None,
                   splits: Splits | None = None, device: str | None = None, progress: bool = False,
                   diagnostics: bool = True) -> dict[str, Any]:
    """Train and evaluate ``method`` on ``dataset`` with ``seed``; returns the run record.

    Parameters
    ----------
    dataset : str or Dataset
        A registered name, ``openml:<id>``, or a loaded :class:`Dataset`.
    method : str
        A recipe (``beyondmse.recipes.available_methods()``), optionally with ``+reg`` suffixes.
    seed : int
        Seeds the split, the initialisation and the mini-batch order.
    epochs : int, optional
        Maximum epochs (early stopping on the validation ``select`` metric still applies);
        default: the dataset preset's, else the Trainer's.
    params : dict, optional
        Trunk, trainer and recipe knobs (see :func:`beyondmse.recipes.split_params`).
    protocol : str, optional
        Split protocol (see :mod:`beyondmse.data.splits`); ``"default"`` also turns the dataset's
        preset off (:mod:`beyondmse.data.presets`).
    splits : Splits, optional
        Precomputed splits (skips loading and splitting).
    diagnostics : bool
        Also report ordinality (Spearman/Kendall) and volume of test embeddings (torch methods).
    """
    base, _ = parse_method(method)
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if splits is None:
        ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
        splits = make_splits(ds, seed=seed, protocol=protocol)
    given = dict(params or {})
    members = _ensemble_size(given.pop("ensemble", 1), base)
    params, epochs, preset = apply_preset(splits.name, method, given, epochs, protocol)
    preset_params = {k: v for k, v in params.items() if k not in given}
    record: dict[str, Any] = {"dataset": splits.name, "method": method, "seed": seed,
                              "protocol": splits.protocol, "sizes": list(splits.sizes),
                              "test_rows_in_train": splits.test_rows_in_train()}
    if base in PEERS:
        _, _, knobs = split_params(method, params)
        chosen, result, fit_seconds = _run_peer(base, knobs, set(params), splits, seed)
        record.update(params=chosen, fit_seconds=fit_seconds, epochs=None,
                      config={"knobs": chosen, "preset": None, "overrides": {}}, **result)
        return record

    model, trainer, hist, pred_test, pred_val = _fit(method, params, epochs, splits, seed, device, progress)
    config = _config(method, model, trainer, params, preset_params, preset)
    resolved = {**{k: v for k, v in config["trunk"].items() if k in TRUNK_KEYS}, **config["trainer"],
                **config["knobs"]}
    record.update(params=resolved, fit_seconds=hist.seconds, epochs=hist.epochs_run,
                  best_epoch=hist.best_epoch, cap_bound=bool(hist.best_epoch > 0.9 * trainer.max_epochs),
                  metrics=_scores(splits, pred_test), val_metrics=_val_metrics(splits.y_val, pred_val),
                  history=hist.as_dict(), config=config)
    if members > 1:
        record.update(_ensemble(method, params, epochs, splits, seed, members, device, hist, pred_test, pred_val))
        record["params"]["ensemble"] = members
        return record
    extra = _distribution_scores(lambda X: trainer.predict_distribution(model, X), splits)
    if extra:  # codec and neighbor heads: CRPS, PIT, interval coverage / width (raw and CQR)
        record["metrics"].update(extra["metrics"])
        record["uncertainty"] = extra["uncertainty"]
    summary = getattr(model.head, "fit_summary", None)
    if callable(summary):  # what the head reports of its own fit (a codec: encoder health + its parameters)
        record["head"] = summary(torch.as_tensor(splits.y_val, dtype=torch.float32, device=trainer.device))
    # regularizers with a diagnostics(z, y) hook report on the validation split (ROT: ||T^Y - T^Z||_1)
    probes = [r for r in model.regularizers if callable(getattr(r, "diagnostics", None))]
    if probes and len(splits.y_val) >= 3:
        with torch.no_grad():
            z_val = model.embed(torch.as_tensor(splits.X_val, dtype=torch.float32, device=trainer.device))
        y_val = torch.as_tensor(splits.y_val, dtype=z_val.dtype, device=z_val.device)
        for reg in probes:
            record["val_metrics"].update(reg.diagnostics(z_val, y_val))
    if diagnostics:
        with torch.no_grad():
            X = torch.as_tensor(splits.X_test[:500], device=trainer.device)
            z = model.embed(X).cpu().numpy()
        record["metrics"].update(M.ordinality(z, splits.y_test[:500]))
        record["metrics"]["volume"] = M.volume(z)
    return record
