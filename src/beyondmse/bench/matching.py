"""Matched baselines: every head is compared with the baseline on the same trunk and trainer.

All recipes share one trunk and one trainer setting by default, so most suites are matched by
construction. Where a run departs from them -- a recipe's declared exception, a per-method
suite parameter, a dataset preset's per-method setting (the SoftStep surfaces run neighbor
heads at batch 256 and the linear head at batch 32) -- :func:`matched_baseline_runs` adds the
baseline method on that run's footing (e.g. ``ls`` at batch 256), and the report compares the
head with it (:func:`beyondmse.bench.stats.compare_to_baseline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["footing_params", "matched_baseline_runs"]


def footing_params(dataset: str, method: str, params: dict[str, Any], epochs: int | None,
                   protocol: str | None) -> dict[str, Any]:
    """The trunk and trainer settings a run will use: the shared defaults, overridden by its
    dataset preset, its recipe's declared exceptions and its explicit parameters; and its
    ``ensemble`` size (k members are k times the budget of one model)."""
    return resolved_settings(dataset, method, params, epochs, protocol)[0]


def resolved_settings(dataset: str, method: str, params: dict[str, Any], epochs: int | None,
                      protocol: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(footing, knobs)``: :func:`footing_params` and the recipe knobs the run will use
    (the recipe's defaults under the preset's and the explicit parameters)."""
    from ..data.presets import apply_preset
    from ..recipes import split_params

    params = dict(params)
    members = params.pop("ensemble", 1)
    params, epochs, _ = apply_preset(dataset, method, params, epochs, protocol)
    trunk, trainer, knobs = split_params(method, params)
    out = {**_shared_defaults(), **trunk, **trainer, "ensemble": members}
    if epochs is not None:
        out["max_epochs"] = epochs
    return out, knobs


def _shared_defaults() -> dict[str, Any]:
    import inspect

    from ..models import DEFAULT_MLP
    from ..recipes import TRAINER_KEYS
    from ..train import Trainer

    sig = inspect.signature(Trainer.__init__).parameters
    return {"trunk": "auto", **DEFAULT_MLP, **{k: sig[k].default for k in TRAINER_KEYS if k in sig}}


def _explicit(runs: Sequence, run, baseline: str) -> dict[str, Any]:
    """The explicit parameters of the suite's baseline run beside ``run`` (same dataset and seed)."""
    for r in runs:
        if r.method == baseline and (r.dataset_id, r.seed, r.epochs, r.protocol) == \
                (run.dataset_id, run.seed, run.epochs, run.protocol):
            return dict(r.params)
    return {}


def matched_baseline_runs(runs: Sequence, baseline: str) -> list:
    """Runs of ``baseline`` to add so that each torch run has a baseline on its own footing.

    For every (dataset, seed, epochs, protocol) with a torch run whose trunk/trainer settings
    differ from those of every baseline run there, one baseline run with exactly those
    settings is added. Peers, and a peer or unknown baseline, need none.
    """
    from ..recipes import TRAINER_KEYS, TRUNK_KEYS, is_peer, parse_method

    try:
        if is_peer(baseline):
            return []
    except ValueError:
        return []
    settings = set(TRUNK_KEYS) | set(TRAINER_KEYS) | {"ensemble"}
    have: dict[tuple, list[dict]] = {}
    runs = [r for r in runs if not getattr(r, "tag", "")]  # a tagged variant (tuned) is compared as it is
    for r in runs:
        if r.method == baseline:
            where = (r.dataset_id, r.seed, r.epochs, r.protocol)
            try:
                have.setdefault(where, []).append(footing_params(r.dataset_name, baseline, r.params, r.epochs,
                                                                 r.protocol))
            except ValueError:
                continue
    extra = []
    for r in runs:
        if r.method == baseline or is_peer(r.method) or parse_method(r.method)[0] == baseline:
            continue
        where = (r.dataset_id, r.seed, r.epochs, r.protocol)
        if where not in have:  # no baseline on this dataset at all: nothing to match
            continue
        try:
            wanted = footing_params(r.dataset_name, r.method, r.params, r.epochs, r.protocol)
        except ValueError:  # bad parameters fail that run when it runs, not the suite
            continue
        if wanted in have[where]:
            continue
        own = have[where][0]  # the suite's own baseline run there: change only what differs from it
        params = {k: v for k, v in wanted.items()
                  if k in settings and own.get(k) != v and not (k == "max_epochs" and r.epochs is not None)}
        spec = type(r)(r.dataset, baseline, r.seed, r.epochs, {**_explicit(runs, r, baseline), **params}, r.protocol)
        if footing_params(r.dataset_name, baseline, params, r.epochs, r.protocol) != wanted:
            continue  # the baseline cannot stand on this footing (should not happen)
        have[where].append(wanted)
        extra.append(spec)
    return extra
