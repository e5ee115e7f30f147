"""``--tune TRIALS``: equal tuning budgets on the validation split, then all seeds on the test split.

For each (dataset, method) of a suite -- torch recipes and scikit-learn peers alike:

1. an Optuna study (TPE sampler, seeded) with its storage in the same SQLite file as the
   results (``sqlite:///<store>``; Optuna's tables live beside ``bench_runs``) runs exactly
   ``TRIALS`` trials over the method's declared search space
   (:func:`beyondmse.recipes.search_space`: the shared trainer settings -- learning rate,
   weight decay, batch size -- plus the knobs its recipe and suffixes declare, e.g. ``k``,
   ``lambda_kl``, the SoftStep initialisation, ROT's weight and gamma; a peer's own space,
   e.g. gradient boosting's learning rate, leaves and L2 penalty). A failed trial counts;
2. each trial trains on the training split and is scored on the **validation** split only, by
   the run's selection metric (``select``, default MSE). The trial never sees the test split:
   it runs on a copy of the splits whose test part is the validation part
   (:func:`blind_splits`), so no test number even exists during selection;
3. the chosen setting is added to the suite as runs tagged ``tuned`` (all seeds), next to the
   default runs, so the report shows ``method`` and ``method [tuned]`` side by side.

Needs the optional ``optuna`` package (``pip install 'beyondmse[tune]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .store import ResultStore, canonical_json
from .suites import RunSpec, Suite

OPTUNA_MISSING = ("--tune needs the optional Optuna package, which is not installed here: "
                  "pip install 'beyondmse[tune]' (or pip install optuna)")


class TuneUnavailable(RuntimeError):
    """Optuna is not installed."""


def search_space(method: str) -> dict[str, tuple]:
    """The declared search space of ``method`` (see :func:`beyondmse.recipes.search_space`)."""
    from ..recipes import search_space as declared

    return declared(method)


def suggest(trial, key: str, spec: tuple):
    """One value of ``key`` from an Optuna trial, by the kind of its declared range."""
    kind = spec[0]
    if kind == "log":
        return trial.suggest_float(key, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(key, spec[1], spec[2])
    if kind == "int":
        return trial.suggest_int(key, int(spec[1]), int(spec[2]))
    return trial.suggest_categorical(key, list(spec[1]))


def blind_splits(splits):
    """A copy of ``splits`` whose test part is the validation part: what a tuning trial may see."""
    return replace(splits, X_test=splits.X_val, y_test=splits.y_val, test_index=splits.val_index)


def _objective_value(record: Mapping[str, Any], select: str) -> float:
    # selection reads the validation metrics and nothing else
    return float(record["val_metrics"][select])


def _select_metric(dataset_name: str, method: str, params: Mapping[str, Any], protocol: str | None) -> str:
    """The validation metric a run of ``method`` selects on (its ``select`` setting)."""
    from ..recipes import is_peer
    from .matching import footing_params

    probe = "ls" if is_peer(method) else method  # a peer is scored like the torch runs beside it
    return footing_params(dataset_name, probe, {} if is_peer(method) else dict(params), None, protocol)["select"]


def tune_one(dataset, method: str, trials: int, store: ResultStore, *, epochs: int | None = None,
             params: Mapping[str, Any] | None = None, protocol: str | None = None, seed: int = 0,
             study_prefix: str = "beyondmse") -> dict[str, Any]:
    """Run ``trials`` trials of ``method`` on ``dataset`` scored on the validation split (split ``seed``).

    Returns ``{"params": chosen params (base params + best values), "value": best validation
    score, "select": the metric, "study": study name, "trials": number of finished trials}``.
    The study is stored in ``store``'s SQLite file and resumed if it exists (trials already
    finished count toward ``trials``). Parameters fixed in ``params`` are not searched.
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
    select = _select_metric(ds.name, method, params, protocol)
    name = f"{study_prefix}:{ds.name}:{method}:" + canonical_json({"p": params, "e": epochs, "pr": protocol, "s": seed})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{Path(store.path).resolve()}",
                                direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial) -> float:
        trial_params = {**params, **{k: suggest(trial, k, spec) for k, spec in space.items()}}
        record = run_experiment(ds, method, seed, epochs=epochs, params=trial_params, splits=splits,
                                diagnostics=False)
        value = _objective_value(record, select)
        return value if math.isfinite(value) else float("inf")

    remaining = trials - len([t for t in study.trials if t.state.is_finished()])
    if remaining > 0 and space:
        study.optimize(objective, n_trials=remaining, catch=(ValueError, FloatingPointError))
    if not space:
        return {"params": params, "value": math.nan, "select": select, "study": name, "trials": 0}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"every tuning trial of {method!r} on {ds.name!r} failed")
    best = study.best_trial
    return {"params": {**params, **best.params}, "value": best.value, "select": select, "study": name,
            "trials": len([t for t in study.trials if t.state.is_finished()])}


def tune_suite(suite: Suite, trials: int, store: ResultStore, log=print) -> Suite:
    """Tune each (dataset, method, params) group of ``suite`` with the same ``trials``; return the
    suite with, next to its runs, the tuned runs (tag ``tuned``) of every group.

    Groups are the suite's untagged runs without their seed; the first seed's split is used
    for the search. Matched-baseline runs the suite added are not tuned separately.
    """
    groups: dict[str, list[RunSpec]] = {}
    for r in suite.runs:
        if r.tag:
            continue
        gid = canonical_json({"d": r.dataset_id, "m": r.method, "p": r.params, "e": r.epochs, "pr": r.protocol})
        groups.setdefault(gid, []).append(r)
    tuned: list[RunSpec] = []
    done: set[tuple[str, str]] = set()
    for specs in groups.values():
        first = specs[0]
        if (first.dataset_id, first.method) in done:  # one search per (dataset, method): equal budgets
            continue
        done.add((first.dataset_id, first.method))
        result = tune_one(first.dataset, first.method, trials, store, epochs=first.epochs, params=first.params,
                          protocol=first.protocol, seed=min(s.seed for s in specs))
        chosen = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result["params"].items()}
        log(f"tuned {first.dataset_name} / {first.method} ({result['trials']} trials): validation "
            f"{result['select']} {result['value']:.4g} with "
            + (", ".join(f"{k}={v}" for k, v in sorted(chosen.items()) if k not in first.params) or "its defaults"))
        tuned += [RunSpec(s.dataset, s.method, s.seed, s.epochs, chosen, s.protocol, tag="tuned") for s in specs]
    return Suite(suite.name + "+tuned", suite.summary + f" (and tuned: {trials} trials per method on validation)",
                 list(suite.runs) + tuned, baseline=suite.baseline, published=suite.published,
                 skipped=suite.skipped)
