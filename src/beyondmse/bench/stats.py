"""Statistics over seeds: mean, standard deviation, 2-sigma intervals, paired tests vs a baseline.

Runs of different methods with the same (dataset, seed) share the same split, so differences
are tested *paired over seeds*: Student's paired t-test (``scipy.stats.ttest_rel``) and the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; with 3 seeds its smallest two-sided
p-value is 0.25, so it can never reject at 5% -- the t-test p-value is the one reported in
tables). Errors are also given normalized to the baseline (method mean / baseline mean), the
quantity plotted in the regression-as-classification paper's figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

HIGHER_IS_BETTER = {"r2", "delta_1", "spearman", "kendall"}


def lower_is_better(metric: str) -> bool:
    return metric not in HIGHER_IS_BETTER


def method_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The name each run is grouped under: its method, plus the requested params that vary among
    the runs of that (dataset, method) -- e.g. ``e2e-codec k=5`` in a k sweep, plain ``ls`` when
    every ``ls`` run used the same settings."""
    values: dict[tuple[str, str], dict[str, set[str]]] = {}
    present: dict[tuple[str, str], dict[str, int]] = {}
    count: dict[tuple[str, str], int] = {}
    for r in records:
        if r.get("tag"):
            continue
        group = (r["dataset"], r["method"])
        count[group] = count.get(group, 0) + 1
        for k, v in (r.get("params") or {}).items():
            values.setdefault(group, {}).setdefault(k, set()).add(repr(v))
            present.setdefault(group, {})[k] = present.get(group, {}).get(k, 0) + 1
    varying = {g: {k for k, v in values.get(g, {}).items() if len(v) > 1 or present[g][k] < n}
               for g, n in count.items()}
    out = []
    for r in records:
        if r.get("tag"):  # a variant (e.g. tuned settings) is named by its tag; its settings are in the report
            out.append(f"{r['method']} [{r['tag']}]")
            continue
        # a run that left a varying knob at its default is labelled with the value it used
        params = {**(r.get("resolved_params") or {}), **(r.get("params") or {})}
        keys = sorted(k for k in varying[(r["dataset"], r["method"])] if k in params)
        extra = " ".join(f"{k}={params[k]}" for k in keys)
        out.append(r["method"] + (f" {extra}" if extra else ""))
    return out


def footing(record: Mapping[str, Any]) -> str | None:
    """What a head is compared on: the run's resolved trunk and trainer settings and its ensemble
    size, as one string (None for a run that has no torch settings: a peer, or a store written
    before they were kept)."""
    config = record.get("config") or {}
    if "trunk" not in config or "trainer" not in config:
        return None
    members = (record.get("ensemble") or {}).get("members", 1)
    on = {"trunk": config["trunk"], "trainer": config["trainer"], **({"ensemble": members} if members > 1 else {})}
    return json.dumps(on, sort_keys=True, default=str)


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def aggregate(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("mae", "rmse", "r2")) -> list[dict]:
    """Group finished runs by (dataset, method label) and summarize each metric over seeds.

    Returns one row per group with ``dataset``, ``method`` (the label), ``base_method``,
    ``params`` (requested) and ``resolved_params`` (as run) of its first run, ``n`` (seeds), and for each metric
    ``{m}_mean``, ``{m}_std`` (ddof=1) and ``{m}_ci2`` (2 x std, the "2-sigma" half-width), plus
    ``fit_seconds_mean``. Rows keep the order in which groups first appear.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r, label in zip(records, method_labels(records)):
        groups.setdefault((r["dataset"], label), []).append(r)
    first = {}
    for r in records:
        first.setdefault(r["method"], len(first))
    # peers last; each method's variants together, in the order the methods first appear
    order = sorted(groups, key=lambda g: (groups[g][0]["method"].startswith("sk-"), first[groups[g][0]["method"]],
                                          _numeric_suffix(g[1])))
    rows = []
    for ds, label in order:
        rs = groups[(ds, label)]
        row: dict[str, Any] = {"dataset": ds, "method": label, "base_method": rs[0]["method"],
                               "params": rs[0].get("params") or {},
                               "resolved_params": rs[0].get("resolved_params") or {}, "n": len(rs),
                               "seeds": sorted(int(r["seed"]) for r in rs), "footing": footing(rs[0]),
                               "config": rs[0].get("config") or {}, "tag": rs[0].get("tag"),
                               "cap_bound": sum(bool(r.get("cap_bound")) for r in rs),
                               "best_epoch": max((r["best_epoch"] for r in rs if r.get("best_epoch") is not None),
                                                 default=None)}
        for m in metrics:
            mean, std, _ = mean_std((r.get("metrics") or {}).get(m, math.nan) for r in rs)
            row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_ci2"] = mean, std, 2 * std
        row["fit_seconds_mean"] = mean_std(r.get("fit_seconds") or math.nan for r in rs)[0]
        rows.append(row)
    return rows


def _numeric_suffix(label: str) -> tuple:
    """Sort key of a label's parameter values: ``e2e-codec k=5`` before ``e2e-codec k=15``."""
    out = []
    for part in label.split(" ")[1:]:
        value = part.split("=", 1)[-1]
        try:
            out.append((0, float(value), ""))
        except ValueError:
            out.append((1, 0.0, value))
    return tuple(out)


def paired_test(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, float]:
    """Paired comparison of ``a`` and ``b`` (seed -> metric) over their common seeds.

    Returns ``n``, ``mean_diff`` (mean of a - b), ``t``, ``p_t`` (two-sided paired t-test) and
    ``p_wilcoxon`` (two-sided signed-rank test). With fewer than 2 pairs every statistic is NaN;
    when all differences are exactly zero the two samples are identical and both p-values are 1.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    x = np.asarray([a[s] for s in seeds], dtype=float)
    y = np.asarray([b[s] for s in seeds], dtype=float)
    out = {"n": len(seeds), "mean_diff": float((x - y).mean()) if len(seeds) else math.nan,
           "t": math.nan, "p_t": math.nan, "p_wilcoxon": math.nan}
    if len(seeds) < 2:
        return out
    d = x - y
    if np.all(d == 0):
        out.update(t=0.0, p_t=1.0, p_wilcoxon=1.0)
        return out
    if np.all(d == d[0]):  # constant nonzero difference: zero variance, t is infinite
        out.update(t=math.copysign(math.inf, d[0]), p_t=0.0)
    else:
        res = stats.ttest_rel(x, y)
        out.update(t=float(res.statistic), p_t=float(res.pvalue))
    try:
        out["p_wilcoxon"] = float(stats.wilcoxon(x, y).pvalue)
    except ValueError:
        pass
    return out


def paired_verdict(a: Mapping[int, float], b: Mapping[int, float], lower: bool = True) -> tuple[str, dict[str, float]]:
    """``a`` against ``b`` (seed -> metric) by :func:`paired_test` at 5%: ``("better" | "worse" |
    "level" | "few", test)``, "few" with fewer than 2 common seeds; ``lower``: lower is better."""
    test = paired_test(a, b)
    if test["p_t"] < 0.05:  # NaN (too few pairs) compares false
        return ("better" if (test["mean_diff"] < 0) == lower else "worse"), test
    return ("level" if test["n"] >= 2 else "few"), test


def compare_to_baseline(records: Sequence[Mapping[str, Any]], baseline: str, metric: str = "mae",
                        metrics: Sequence[str] = ("mae", "rmse", "r2")) -> list[dict]:
    """:func:`aggregate` rows plus, per dataset, the comparison of each method with ``baseline``.

    Added keys: ``norm`` (method mean / baseline mean of ``metric``; the baseline row is 1),
    ``norm_ci2`` (the 2-sigma half-width divided by the baseline mean), ``p_t``, ``p_wilcoxon``,
    ``mean_diff`` (paired, method - baseline), ``n_pairs``, and ``verdict`` ("better", "worse",
    or "no significant difference" at the 5% level of the paired t-test; "" for the baseline).
    ``baseline`` is a method label (see :func:`method_labels`); if a dataset has no baseline run
    those keys are NaN.

    Matched comparison: a row is compared with the run of the baseline *method* on the same
    footing (identical resolved trunk and trainer settings, :func:`footing`) when the store has
    one -- e.g. a neighbor head at batch 256 with ``ls batch_size=256`` -- and with the
    ``baseline`` row otherwise. A tagged variant (``method [tuned]``) is compared with the
    baseline's variant of the same tag (``ls [tuned]``): each tuned with the same budget. ``vs`` names the row compared with; ``matched`` says whether
    the footing was the same.
    """
    rows = aggregate(records, metrics=tuple(dict.fromkeys([metric, *metrics])))
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    for r, label in zip(records, method_labels(records)):
        per_seed.setdefault((r["dataset"], label), {})[int(r["seed"])] = \
            (r.get("metrics") or {}).get(metric, math.nan)
    base_rows = {row["dataset"]: row for row in rows if row["method"] == baseline}
    base_method = next((row["base_method"] for row in rows if row["method"] == baseline), baseline)
    same_footing = {(row["dataset"], row["footing"]): row for row in rows
                    if row["base_method"] == base_method and row["footing"] is not None and not row.get("tag")}
    for row in rows:  # the default baseline row wins a tie of footings
        if row["method"] == baseline and row["footing"] is not None:
            same_footing[(row["dataset"], row["footing"])] = row
    # a tagged variant (tuned) is compared with the baseline's variant of the same tag: equal budgets
    same_tag = {(row["dataset"], row["tag"]): row for row in rows if row["base_method"] == base_method and row.get("tag")}
    lower = lower_is_better(metric)
    for row in rows:
        if row.get("tag"):
            matched = same_tag.get((row["dataset"], row["tag"]))
        else:
            matched = same_footing.get((row["dataset"], row["footing"])) if row["footing"] is not None else None
        b = matched or base_rows.get(row["dataset"])
        row.update(norm=math.nan, norm_ci2=math.nan, p_t=math.nan, p_wilcoxon=math.nan, mean_diff=math.nan,
                   n_pairs=0, verdict="", vs="", matched=matched is not None)
        if b is None:
            continue
        row["vs"] = b["method"]
        bm = b[f"{metric}_mean"]
        row["norm"] = row[f"{metric}_mean"] / bm if bm else math.nan
        row["norm_ci2"] = row[f"{metric}_ci2"] / abs(bm) if bm else math.nan
        if row["method"] == b["method"]:
            continue
        verdict, test = paired_verdict(per_seed[(row["dataset"], row["method"])],
                                       per_seed[(row["dataset"], b["method"])], lower)
        row.update(p_t=test["p_t"], p_wilcoxon=test["p_wilcoxon"], mean_diff=test["mean_diff"], n_pairs=test["n"])
        row["verdict"] = {"level": "no significant difference", "few": "too few seeds to test"}.get(verdict, verdict)
    return rows
