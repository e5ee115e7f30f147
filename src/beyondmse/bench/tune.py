"""``--tune TRIALS``: a log-space search on the validation split, then all seeds on the test split.

For each (dataset, method) of a suite:

1. an Optuna study (TPE sampler, seeded) with its storage in the same SQLite file as the
   results (``sqlite:///<store>``; Optuna's tables live beside ``bench_runs``) searches, in log
   space, the learning rate (``lr`` in [1e-4, 1e-2]) and every loss weight of the method
   (numeric knobs named ``*weight*``, ``lambda_*`` except ``lambda_sigma``, ``alpha``;
   each in [default / 10, default x 10]);
2. each trial trains on the training split and is scored by the **validation** MAE only. The
   trial never sees the test split at all: it runs on a copy of the splits whose test part is
   the validation part (:func:`blind_splits`), so no test number even exists during selection;
3. the chosen setting is added to the suite as ordinary runs (all seeds), which the runner
   then evaluates on the test split and records in the store.

Peers (``sk-*``) are not tuned here (``sk-knn`` already picks k on validation).
Needs the optional ``optuna`` package (``pip install 'beyondmse[tune]'``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .store import ResultStore, canonical_json
from .suites import RunSpec, Suite

OPTUNA_MISSING = ("--tune needs the optional Optuna package, which is not installed here: "
                  "pip install 'beyondmse[tune]' (or pip install optuna)")
WEIGHT_KNOB = re.compile(r"(weight|^lambda_(?!sigma)|^alpha$)")
LR_RANGE = (1e-4, 1e-2)


class TuneUnavailable(RuntimeError):
    """Optuna is not installed."""


def search_space(method: str) -> dict[str, tuple[float, float]]:
    """``{knob: (low, high)}`` searched in log space for ``method``: lr and its loss weights."""
    from ..recipes import is_peer, split_params

    if is_peer(method):
        return {}
    _, _, knobs = split_params(method, {})
    space = {"lr": LR_RANGE}
    for k, v in sorted(knobs.items()):
        if WEIGHT_KNOB.search(k) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            space[k] = (v / 10, v * 10)
    return space


def blind_splits(splits):
    """A copy of ``splits`` whose test part is the validation part: what a tuning trial may see."""
    return replace(splits, X_test=splits.X_val, y_test=splits.y_val, test_index=splits.val_index)


def _objective_value(record: Mapping[str, Any]) -> float:
    # selection reads the validation metrics and nothing else
    return float(record["val_metrics"]["mae"])


def tune_one(dataset, method: str, trials: int, store: ResultStore, *, epochs: int | None = None,
             params: Mapping[str, Any] | None = None, protocol: str | None = None, seed: int = 0,
             study_prefix: str = "beyondmse") -> dict[str, Any]:
    """Search ``trials`` settings of ``method`` on ``dataset`` by validation MAE (split ``seed``).

    Returns ``{"params": chosen params (base params + best values), "value": best validation
    MAE, "study": study name, "trials": n}``. The study is stored in ``store``'s SQLite file and
    resumed if it exists (trials already done count toward ``trials``).
    """
    try:
        import optuna
    except ImportError:
        raise TuneUnavailable(OPTUNA_MISSING) from None
    from ..data import load_dataset, make_splits
    from ..experiment import run_experiment

    if trials < 1:
        raise ValueError(f"--tune needs at least 1 trial, got {trials}")
    params = dict(params or {})
    space = {k: v for k, v in search_space(method).items() if k not in params}
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    splits = blind_splits(make_splits(ds, seed=seed, protocol=protocol))
    name = f"{study_prefix}:{ds.name}:{method}:" + canonical_json({"p": params, "e": epochs, "pr": protocol, "s": seed})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{Path(store.path).resolve()}",
                                direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial) -> float:
        trial_params = dict(params)
        for k, (lo, hi) in space.items():
            trial_params[k] = trial.suggest_float(k, lo, hi, log=True)
        record = run_experiment(ds, method, seed, epochs=epochs, params=trial_params, splits=splits,
                                diagnostics=False)
        value = _objective_value(record)
        return value if math.isfinite(value) else float("inf")

    remaining = trials - len([t for t in study.trials if t.state.is_finished()])
    if remaining > 0 and space:
        study.optimize(objective, n_trials=remaining, catch=(ValueError, FloatingPointError))
    if not space:
        return {"params": params, "value": math.nan, "study": name, "trials": 0}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"every tuning trial of {method!r} on {ds.name!r} failed")
    best = study.best_trial
    return {"params": {**params, **best.params}, "value": best.value, "study": name, "trials": len(study.trials)}


def tune_suite(suite: Suite, trials: int, store: ResultStore, log=print) -> Suite:
    """Tune each (dataset, method, params) group of ``suite``; return the suite with chosen params.

    Groups are the suite's runs without their seed; the first seed's split is used for the
    search. Peers keep their settings. The returned suite has the same seeds per group.
    """
    groups: dict[str, list[RunSpec]] = {}
    for r in suite.runs:
        gid = canonical_json({"d": r.dataset_id, "m": r.method, "p": r.params, "e": r.epochs, "pr": r.protocol})
        groups.setdefault(gid, []).append(r)
    runs: list[RunSpec] = []
    for specs in groups.values():
        first = specs[0]
        if not search_space(first.method):
            runs += specs
            continue
        result = tune_one(first.dataset, first.method, trials, store, epochs=first.epochs, params=first.params,
                          protocol=first.protocol, seed=min(s.seed for s in specs))
        chosen = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result["params"].items()}
        log(f"tuned {first.dataset_name} / {first.method}: validation MAE {result['value']:.4f} with "
            + ", ".join(f"{k}={v}" for k, v in sorted(chosen.items()) if k not in first.params))
        runs += [RunSpec(s.dataset, s.method, s.seed, s.epochs, chosen, s.protocol) for s in specs]
    return Suite(suite.name + "+tuned", suite.summary + f" (tuned: {trials} trials on validation)", runs,
                 baseline=suite.baseline, published=suite.published, skipped=suite.skipped)
