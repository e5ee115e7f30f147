"""``beyondmse report``: a Markdown report and PNG figures from a results store.

Writes into ``out_dir``:

* ``report.md`` -- per dataset a table (mean +- 2 sigma over seeds, best per column in bold,
  error normalized to the baseline, paired-test p-value vs the baseline, a verdict), a plain
  sentence on where gradient boosting (``sk-hgb``) wins and where a deep head does, published
  numbers next to ours where the suite carries them, the failed runs with their errors, the
  figures, and which family figures were made or skipped (and why);
* ``summary.csv`` -- the aggregated rows;
* ``normalized_error.png`` (bars of method error / baseline error per dataset),
  ``metric_by_dataset.png`` (absolute error with 2-sigma bars), ``k_sweep.png`` (error vs the
  number of classes k, when the store has a k sweep), ``learning_curves.png`` (validation
  error per epoch), and the family figures.

Family figures come from each recipe's figure module (``Recipe.plots``, see
:mod:`beyondmse.plots`): the report groups the stored runs by that module and calls its
``report_figures(records, out_dir) -> list[Path]`` hook. No family is named here.
"""

from __future__ import annotations

import csv
import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..plots._mpl import pyplot as _plt
from .stats import compare_to_baseline, lower_is_better, method_labels, paired_test
from .store import ResultStore, utc_now
from .suites import Published, Suite

METRIC_NAMES = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "mse": "MSE", "spearman": "Spearman",
                "kendall": "Kendall", "delta_1": "δ1"}
PEER_PREFIX = "sk-"
GBM = "sk-hgb"


def _repeated_rows_note(records) -> str:
    """'; x% of test rows repeat a training row' (mean over the dataset's seeds) where any do."""
    shares = [r["test_rows_in_train"] for r in records if r.get("test_rows_in_train") is not None]
    if not shares or max(shares) == 0:
        return ""
    return (f"; {100 * float(np.mean(shares)):.1f}% of test rows repeat a training row exactly (mean over seeds): "
            "a model that memorises rows gains there")


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


def _fmt_ms(mean: float, ci2: float) -> str:
    """``mean ± 2σ`` with the same fixed decimals on both sides (or just the mean / a dash)."""
    if mean is None or not math.isfinite(mean):
        return "–"
    if abs(mean) >= 1e5 or (mean != 0 and abs(mean) < 1e-3):
        text = f"{mean:.3e}" + (f" ± {ci2:.1e}" if ci2 is not None and math.isfinite(ci2) else "")
        return text
    return f"{mean:.4f}" + (f" ± {ci2:.4f}" if ci2 is not None and math.isfinite(ci2) else "")


def _fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


# --------------------------------------------------------------------------- data
def choose_metrics(records: Sequence[Mapping[str, Any]], published: Sequence[Published] = ()) -> list[str]:
    """MAE, RMSE, R² always; MSE when a published number uses it; Spearman when runs report it."""
    metrics = ["mae", "rmse", "r2"]
    if any(p.metric == "mse" for p in published):
        metrics.insert(1, "mse")
    if any("spearman" in (r.get("metrics") or {}) for r in records):
        metrics.append("spearman")
    return metrics


def comparison_rows(records: Sequence[Mapping[str, Any]], baseline: str, metrics: Sequence[str]) -> list[dict]:
    """Per (dataset, method label) aggregate with the baseline comparison on the first metric."""
    return compare_to_baseline(records, baseline, metric=metrics[0], metrics=metrics)


def _best(rows: Sequence[dict], metric: str) -> float:
    vals = [r[f"{metric}_mean"] for r in rows if math.isfinite(r[f"{metric}_mean"])]
    if not vals:
        return math.nan
    return min(vals) if lower_is_better(metric) else max(vals)


def gbm_sentences(rows: Sequence[dict], dataset: str, metric: str = "mae",
                  records: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """:func:`gbm_sentence` for the default runs and, when the store has tuned runs, for the
    best tuned deep recipe against tuned gradient boosting."""
    out = [gbm_sentence(rows, dataset, metric, records)]
    if any(r["dataset"] == dataset and r.get("tag") == "tuned" for r in rows):
        out.append(gbm_sentence(rows, dataset, metric, records, tag="tuned"))
    return [s for s in out if s]


def gbm_sentence(rows: Sequence[dict], dataset: str, metric: str = "mae",
                 records: Sequence[Mapping[str, Any]] | None = None, tag: str | None = None) -> str:
    """Plain words: does gradient boosting or the best deep recipe win on ``dataset``?

    With ``records`` the two are compared by a paired t-test over seeds, and a difference that
    is not significant at 5% is called a tie. ``tag`` compares the runs of that variant only
    (``"tuned"``: tuned deep recipes against tuned gradient boosting); by default the untagged runs.
    """
    sub = [r for r in rows if r["dataset"] == dataset and math.isfinite(r[f"{metric}_mean"])
           and (r.get("tag") or None) == tag]
    gbm = next((r for r in sub if r["base_method"] == GBM), None)
    deep = [r for r in sub if not r["base_method"].startswith(PEER_PREFIX)]
    if gbm is None or not deep:
        return ""
    sign = 1 if lower_is_better(metric) else -1
    best = min(deep, key=lambda r: sign * r[f"{metric}_mean"])
    g, d = gbm[f"{metric}_mean"], best[f"{metric}_mean"]
    name = METRIC_NAMES.get(metric, metric)
    rel = abs(d / g - 1) * 100 if g else math.nan
    p_text, tie = "", False
    if records is not None:
        per_seed: dict[str, dict[int, float]] = {}
        for r, label in zip(records, method_labels(records)):
            if r["dataset"] == dataset and label in (gbm["method"], best["method"]):
                per_seed.setdefault(label, {})[int(r["seed"])] = (r.get("metrics") or {}).get(metric, math.nan)
        test = paired_test(per_seed.get(best["method"], {}), per_seed.get(gbm["method"], {}))
        if math.isfinite(test["p_t"]):
            p_text = f" (paired t-test over {test['n']} seeds: p = {_fmt_p(test['p_t'])})"
            tie = test["p_t"] >= 0.05
    if tag:
        dataset = f"{dataset} ({tag})"
    if tie:
        return (f"**No clear winner on {dataset}:** the best deep recipe, `{best['method']}` ({name} {_fmt(d)}), "
                f"and gradient boosting `{GBM}` ({name} {_fmt(g)}) differ by {rel:.1f}%, not significantly{p_text}.")
    if sign * d < sign * g:
        return (f"**A deep head wins on {dataset}:** the best deep recipe, `{best['method']}` ({name} {_fmt(d)}), "
                f"beats gradient boosting `{GBM}` ({name} {_fmt(g)}) by {rel:.1f}%{p_text}.")
    return (f"**Gradient boosting wins on {dataset}:** `{GBM}` ({name} {_fmt(g)}) beats every deep recipe; "
            f"the best one, `{best['method']}` ({name} {_fmt(d)}), is {rel:.1f}% worse{p_text}.")


def markdown_table(rows: Sequence[dict], metrics: Sequence[str], baseline: str) -> str:
    """One dataset's rows as a Markdown table; the best mean of each metric in bold."""
    best = {m: _best(rows, m) for m in metrics}
    head = ["method", "seeds"] + [f"{METRIC_NAMES.get(m, m)} (mean ± 2σ)" for m in metrics] + \
           [f"{METRIC_NAMES.get(metrics[0], metrics[0])} / baseline", "p", "verdict", "vs", "best epoch / cap", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"`{r['method']}`", str(r["n"])]
        for m in metrics:
            text = _fmt_ms(r[f"{m}_mean"], r[f"{m}_ci2"])
            if math.isfinite(best[m]) and r[f"{m}_mean"] == best[m]:
                text = f"**{text}**"
            cells.append(text)
        cells += [_fmt(r["norm"], 3), _fmt_p(r["p_t"]), r["verdict"] or ("baseline" if r["method"] == r.get("vs") else ""),
                  _vs_cell(r), _epoch_cell(r),
                  f"{r['fit_seconds_mean']:.2f}" if math.isfinite(r["fit_seconds_mean"]) else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _vs_cell(row: Mapping[str, Any]) -> str:
    """Which baseline row a method was compared with, and whether it stood on the same footing."""
    if not row.get("vs") or row["vs"] == row["method"]:
        return ""
    return f"`{row['vs']}`" + ("" if row.get("matched") or row.get("footing") is None else " (other trunk/trainer)")


def _epoch_cell(row: Mapping[str, Any]) -> str:
    """``best / cap`` of the first run, with a flag when runs stopped improving only at the cap."""
    cfg = row.get("config") or {}
    cap = (cfg.get("trainer") or {}).get("max_epochs")
    best = row.get("best_epoch")
    if cap is None or best is None:
        return "–"
    flag = f" ⚠ {row['cap_bound']}/{row['n']} at cap" if row.get("cap_bound") else ""
    return f"{best} / {cap}{flag}"


def settings_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The resolved trunk, trainer and head settings of each method (first run of each row), with
    every setting that departs from the shared defaults and where it came from."""
    lines = ["| method | trunk | trainer | departs from the shared defaults |", "|---|---|---|---|"]
    seen = set()
    for r in rows:
        cfg = r.get("config") or {}
        if "trunk" not in cfg or r["method"] in seen:
            continue
        seen.add(r["method"])
        trunk = ", ".join(f"{k}={v}" for k, v in cfg["trunk"].items())
        trainer = ", ".join(f"{k}={v}" for k, v in cfg["trainer"].items())
        over = ", ".join(f"{k} ({src})" for k, src in (cfg.get("overrides") or {}).items()) or "none"
        if cfg.get("preset"):
            over += f"; dataset preset `{cfg['preset']}`"
        lines.append(f"| `{r['method']}` | {trunk} | {trainer} | {over} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def text_table(rows: Sequence[dict], metrics: Sequence[str], baseline: str | None = None,
               records: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The comparison as plain text for a terminal; ``*`` marks the best mean per column.

    ``rows`` come from :func:`comparison_rows`, or from :func:`~beyondmse.bench.stats.aggregate`
    with ``baseline=None``, which leaves out the columns that compare with a baseline.
    """
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        best = {m: _best(sub, m) for m in metrics}
        width = max(12, max(len(r["method"]) for r in sub) + 2)
        head = f"{'method':<{width}}{'n':>3}" + "".join(f"{METRIC_NAMES.get(m, m) + ' ± 2σ':>22}" for m in metrics)
        if baseline is not None:
            head += f"{'/' + baseline:>9}{'p':>8}  verdict"
        out += [f"{ds}", head, "-" * len(head)]
        for r in sub:
            cells = ""
            for m in metrics:
                star = "*" if math.isfinite(best[m]) and r[f"{m}_mean"] == best[m] else " "
                cells += f"{_fmt_ms(r[f'{m}_mean'], r[f'{m}_ci2']):>21}{star}"
            line = f"{r['method']:<{width}}{r['n']:>3}{cells}"
            if baseline is not None:
                verdict = r["verdict"] or ("baseline" if r["method"] == baseline else "")
                line += f"{_fmt(r['norm'], 3):>9}{_fmt_p(r['p_t']):>8}  {verdict}"
            out.append(line)
        out += [x.replace("**", "") for x in gbm_sentences(rows, ds, metrics[0], records)]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- figures
def _colors(labels: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def plot_normalized(rows: Sequence[dict], path: Path, baseline: str, metric: str = "mae") -> Path:
    """Grouped bars: method error / baseline error per dataset, 2-sigma whiskers, a line at 1."""
    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    labels = list(dict.fromkeys(r["method"] for r in rows))
    colors = _colors(labels)
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + len(datasets) * len(labels) * 0.28), 4.2))
    for j, lab in enumerate(labels):
        xs, ys, es = [], [], []
        for i, ds in enumerate(datasets):
            r = next((r for r in rows if r["dataset"] == ds and r["method"] == lab), None)
            if r is not None and math.isfinite(r["norm"]):
                xs.append(i + (j - (len(labels) - 1) / 2) * width)
                ys.append(r["norm"])
                es.append(r["norm_ci2"] if math.isfinite(r["norm_ci2"]) else 0.0)
        ax.bar(xs, ys, width=width, yerr=es, capsize=2, color=colors[lab], label=lab,
               hatch="//" if lab.startswith(PEER_PREFIX) else None, edgecolor="white", linewidth=0.3)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(datasets)), datasets, rotation=20, ha="right")
    ax.set_ylabel(f"test {METRIC_NAMES.get(metric, metric)} / {baseline}  (lower is better)"
                  if lower_is_better(metric) else f"test {metric} / {baseline}")
    ax.set_title(f"error / {baseline} error (mean over seeds, 2σ whiskers; hatched: scikit-learn peers)", fontsize=9)
    ax.legend(fontsize=7, ncol=max(1, len(labels) // 12 + 1), bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_by_dataset(rows: Sequence[dict], path: Path, metric: str = "mae") -> Path:
    """One panel per dataset: mean error with 2-sigma bars for every method."""
    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    ncol = min(3, len(datasets))
    nrow = math.ceil(len(datasets) / ncol)
    n_methods = max(sum(1 for r in rows if r["dataset"] == ds) for ds in datasets)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * max(3.5, 0.35 * n_methods + 1.5), nrow * 3.6), squeeze=False)
    for ax, ds in zip(axes.flat, datasets):
        sub = [r for r in rows if r["dataset"] == ds]
        best = _best(sub, metric)
        err = [r[f"{metric}_ci2"] if math.isfinite(r[f"{metric}_ci2"]) else 0 for r in sub]
        colors = ["#2a9d55" if r[f"{metric}_mean"] == best else
                  ("#888888" if r["base_method"].startswith(PEER_PREFIX) else "#3b75af") for r in sub]
        ax.bar(range(len(sub)), [r[f"{metric}_mean"] for r in sub], yerr=err, capsize=2, color=colors)
        ax.set_xticks(range(len(sub)), [r["method"] for r in sub], rotation=55, ha="right", fontsize=7)
        ax.set_title(f"{ds} (green: best; grey: peers)", fontsize=9)
        ax.set_ylabel(f"test {METRIC_NAMES.get(metric, metric)}")
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel_figure(groups: Mapping[tuple[str, str], Any], size: tuple[float, float]):
    """One panel per dataset of ``groups`` ((dataset, label) -> data), three to a row.

    Returns ``(plt, fig, axes, panels)``; each panel is ``(ax, dataset, series)`` with the
    ``(label, data, colour)`` of every label that has data there, in first-seen order.
    """
    plt = _plt()
    datasets = list(dict.fromkeys(g[0] for g in groups))
    labels = list(dict.fromkeys(g[1] for g in groups))
    colors = _colors(labels)
    ncol = min(3, len(datasets))
    nrow = math.ceil(len(datasets) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(size[0] * ncol, size[1] * nrow), squeeze=False)
    panels = [(ax, ds, [(lab, groups[(ds, lab)], colors[lab]) for lab in labels if groups.get((ds, lab))])
              for ax, ds in zip(axes.flat, datasets)]
    return plt, fig, axes, panels


def _save_panels(plt, fig, axes, n: int, path: Path) -> Path:
    """Blank the unused panels, put the legend on the first, write the PNG and close the figure."""
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_k_sweep(records: Sequence[Mapping[str, Any]], path: Path, baseline: str, metric: str = "mae",
                 key: str = "k") -> Path | None:
    """Error vs number of classes k for every method run at several k; None if there is no sweep."""
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    base: dict[str, list[float]] = {}
    swept = {(r["dataset"], r["method"]) for r in records if key in (r.get("params") or {})}
    for r in records:
        value = (r.get("metrics") or {}).get(metric, math.nan)
        params = r.get("params") or {}
        if r["method"] == baseline and not params:
            base.setdefault(r["dataset"], []).append(value)
        if (r["dataset"], r["method"]) in swept:  # runs left at the default k count at that k
            k = params.get(key, (r.get("resolved_params") or {}).get(key))
            if k is not None:
                groups.setdefault((r["dataset"], r["method"]), {}).setdefault(int(k), []).append(value)
    groups = {g: v for g, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    plt, fig, axes, panels = _panel_figure(groups, (4.2, 3.4))
    for ax, ds, series in panels:
        for m, sweep, color in series:
            ks = sorted(sweep)
            mean = [np.mean(sweep[k]) for k in ks]
            err = [2 * np.std(sweep[k], ddof=1) if len(sweep[k]) > 1 else 0 for k in ks]
            ax.errorbar(ks, mean, yerr=err, marker="o", capsize=2, label=m, color=color)
        if ds in base:
            ax.axhline(np.mean(base[ds]), color="black", ls="--", lw=0.8, label=baseline)
        ax.set_xlabel(f"number of classes {key}")
        ax.set_ylabel(f"test {METRIC_NAMES.get(metric, metric)}")
        ax.set_title(ds, fontsize=9)
    return _save_panels(plt, fig, axes, len(panels), path)


def plot_learning_curves(records: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Validation MAE per epoch (mean over seeds, up to the shortest run), one panel per dataset."""
    curves: dict[tuple[str, str], list[tuple[list[int], list[float]]]] = {}
    for r, label in zip(records, method_labels(records)):
        h = r.get("history") or {}
        if h.get("val_mae"):
            curves.setdefault((r["dataset"], label), []).append((h["val_epochs"], h["val_mae"]))
    if not curves:
        return None
    plt, fig, axes, panels = _panel_figure(curves, (4.6, 3.5))
    for ax, ds, series in panels:
        for lab, runs, color in series:
            n = min(len(v) for _, v in runs)
            ax.plot(runs[0][0][:n], np.mean([v[:n] for _, v in runs], axis=0), label=lab, color=color, lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MAE (mean over seeds)")
        ax.set_title(ds, fontsize=9)
    return _save_panels(plt, fig, axes, len(panels), path)


def _family_groups(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The runs of each family figure module (``Recipe.plots``), in first-seen order."""
    from ..recipes import RECIPES, parse_method

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        try:
            base, _ = parse_method(r["method"])
        except ValueError:  # a run of a method this installation no longer has
            continue
        module = getattr(RECIPES.get(base), "plots", None)
        if module:
            groups.setdefault(module, []).append(r)
    return groups


def family_notes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown lines from each family module's optional ``report_notes(records)`` hook (e.g. the
    codec family's encoder-health table and collapse warnings)."""
    lines: list[str] = []
    for name, group in _family_groups(records).items():
        hook = getattr(importlib.import_module(name), "report_notes", None)
        if callable(hook):
            try:
                lines += list(hook(list(group)) or [])
            except Exception as err:  # noqa: BLE001 - a family note must not sink the report
                lines.append(f"(`{name}.report_notes` raised {type(err).__name__}: {err})")
    return lines


def family_figures(records: Sequence[Mapping[str, Any]], out_dir: Path) -> tuple[list[Path], list[str], list[str]]:
    """Call the figure hook of every family in ``records``; returns (figures, made, skipped-with-reason).

    Runs are grouped by their base recipe's ``plots`` module; peers and recipes without one
    have no family figures.
    """
    figures, made, skipped = [], [], []
    for name, group in _family_groups(records).items():
        try:
            paths = [Path(p) for p in importlib.import_module(name).report_figures(list(group), out_dir) or []]
            reason = "" if paths else "its report_figures() made no figure for these runs"
        except Exception as err:  # noqa: BLE001 - a family plot must not sink the report
            paths, reason = [], f"raised {type(err).__name__}: {err}"
        if paths:
            figures += paths
            made.append(f"`{name}`: {len(paths)} figure(s)")
        else:
            skipped.append(f"`{name}`: {reason}")
    return figures, made, skipped


# --------------------------------------------------------------------------- the report
def write_report(store: ResultStore | str | Path, out_dir: str | Path, suite: Suite | None = None,
                 baseline: str | None = None, title: str | None = None,
                 family: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``summary.csv`` and the PNG figures of ``store`` into ``out_dir``.

    Parameters
    ----------
    store : ResultStore or path
    out_dir : path
    suite : Suite, optional
        Restrict the report to this suite's runs and take its baseline and published numbers.
    baseline : str, optional
        Method label to compare against (default: the suite's, else ``ls`` if present).

    Returns a dict with ``report`` (path), ``figures`` (paths), ``rows`` (aggregated), ``text``
    (the plain-text comparison table) and ``metrics``.
    """
    if not isinstance(store, ResultStore):
        if not Path(store).is_file():
            raise ValueError(f"no results store at {str(store)!r}")
        store = ResultStore(store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = suite.keys if suite is not None else None
    records = store.rows(status="finished", keys=keys)
    failed = store.rows(status="failed", keys=keys)
    published = list(suite.published) if suite is not None else []
    if suite is None:  # published numbers of the built-in suites the stored runs came from
        from .suites import published_for

        published += published_for({r.get("suite") for r in records}, records)
    metrics = choose_metrics(records, published)
    if baseline is None:
        baseline = suite.baseline if suite is not None else "ls"
    rows = comparison_rows(records, baseline, metrics) if records else []
    if rows and not any(r["method"] == baseline for r in rows):
        baseline_missing = True
    else:
        baseline_missing = False

    lines = [f"# {title or 'beyondmse benchmark report'}", ""]
    envs = sorted({(r.get("library_version"), r.get("git_revision")) for r in records + failed},
                  key=lambda e: (e[0] or "", e[1] or ""))  # a run from outside a git checkout has None
    lines += [f"- store: `{store.path}` ({len(records)} finished run(s), {len(failed)} failed)",
              f"- suite: {suite.name + ' -- ' + suite.summary if suite else 'all runs in the store'}",
              f"- baseline: `{baseline}`" + (" (not in the store: no normalized errors or tests)" if baseline_missing else ""),
              "- library version / git revision: " + (", ".join(f"{v} / {g or 'no git revision'}" for v, g in envs) or "–"),
              f"- generated: {utc_now()}",
              "- numbers: test-split metrics on the scaled targets (min-max to [0, 1] on the training split "
              "unless the dataset keeps raw units); mean ± 2σ (2 sample standard deviations) over seeds; "
              f"p: two-sided paired t-test over seeds against the baseline (same splits): the `{baseline}` run "
              "on the same trunk and trainer settings when the store has one (column vs), else "
              f"`{baseline}`; "
              "verdict at the 5% level; **bold**: best mean in the column.", ""]
    if suite is not None and suite.skipped:
        lines += ["Left out of this suite here: " + "; ".join(suite.skipped), ""]
    if not records:
        lines += ["No finished runs in this store yet.", ""]

    lines += ["## Results by dataset", ""]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        rec = next(r for r in records if r["dataset"] == ds)
        sizes = rec.get("sizes")
        lines += [f"### {ds}", "", f"protocol `{rec.get('protocol')}`" +
                  (f", train/val/test = {'/'.join(str(s) for s in sizes)}" if sizes else "") +
                  _repeated_rows_note([r for r in records if r["dataset"] == ds]), "",
                  markdown_table(sub, metrics, baseline), ""]
        settings = settings_table(sub)
        if settings:
            lines += ["<details><summary>settings of each method (trunk, trainer, departures from the shared "
                      "defaults)</summary>", "", settings, "", "</details>", ""]
        bound = [r["method"] for r in sub if r.get("cap_bound")]
        if bound:
            lines += [f"⚠ best epoch within 10% of the epoch cap for {', '.join(f'`{m}`' for m in bound)}: "
                      "these runs were still improving when the budget ran out; a larger cap may change "
                      "their numbers.", ""]
        for sentence in gbm_sentences(rows, ds, metrics[0], records):
            lines += [sentence, ""]

    if published:
        lines += ["## Published numbers next to ours", "",
                  "| dataset | method | metric | paper | ours (mean ± 2σ) | ours − paper | source |",
                  "|---|---|---|---|---|---|---|"]
        for p in published:
            r = next((r for r in rows if p.matches(r)), None)
            ours = _fmt_ms(r[f"{p.metric}_mean"], r[f"{p.metric}_ci2"]) if r and f"{p.metric}_mean" in r else "not run"
            diff = _fmt(r[f"{p.metric}_mean"] - p.value) if r and f"{p.metric}_mean" in r else "–"
            lines.append(f"| {p.dataset} | `{p.label}` | {p.metric} | {p.value:g} | {ours} | {diff} | "
                         f"{p.source}{' (' + p.note + ')' if p.note else ''} |")
        lines.append("")

    figures: list[Path] = []
    if rows:
        lines += ["## Figures", ""]
        if not baseline_missing:
            figures.append(plot_normalized(rows, out / "normalized_error.png", baseline, metrics[0]))
            lines += [f"Error normalized to `{baseline}`:", "", "![normalized error](normalized_error.png)", ""]
        figures.append(plot_by_dataset(rows, out / "metric_by_dataset.png", metrics[0]))
        lines += ["Test error per dataset:", "", "![error by dataset](metric_by_dataset.png)", ""]
        k_png = plot_k_sweep(records, out / "k_sweep.png", baseline, metrics[0])
        if k_png is not None:
            figures.append(k_png)
            lines += ["Error vs number of classes k:", "", "![k sweep](k_sweep.png)", ""]
        else:
            lines += ["(No k sweep in these runs: no method was run at two or more values of `k`.)", ""]
        lc = plot_learning_curves(records, out / "learning_curves.png")
        if lc is not None:
            figures.append(lc)
            lines += ["Learning curves (validation MAE; torch methods only):", "",
                      "![learning curves](learning_curves.png)", ""]

    if family and records:
        fam, made, skipped = family_figures(records, out)
        figures += fam
        lines += ["## Family figures", ""]
        lines += [f"- made: {m}" for m in made] + [f"- skipped: {s}" for s in skipped]
        lines += [""] + [f"![{p.stem}]({p.name})" for p in fam] + [""]
        notes = family_notes(records)
        if notes:
            lines += ["## Family notes", ""] + notes + [""]

    if records:  # runs with a predictive distribution (issue 19): coverage / width / CRPS and reliability
        from ..plots.uncertainty import report_section

        unc_lines, unc_figures = report_section(records, out)
        lines += unc_lines
        figures += unc_figures

    if failed:
        lines += ["## Failed runs", "", "| dataset | method | seed | params | error |", "|---|---|---|---|---|"]
        for f in failed:
            err = (f.get("error") or "").splitlines()[0].replace("|", "\\|")[:200]
            lines.append(f"| {f['dataset']} | `{f['method']}` | {f['seed']} | `{f.get('params') or {}}` | {err} |")
        lines.append("")

    report = out / "report.md"
    report.write_text("\n".join(lines))
    if rows:
        with open(out / "summary.csv", "w", newline="") as fh:
            cols = ["dataset", "method", "n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci2")] + \
                   ["norm", "p_t", "p_wilcoxon", "verdict", "fit_seconds_mean"]
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return {"report": report, "figures": figures, "rows": rows, "metrics": metrics, "baseline": baseline,
            "text": text_table(rows, metrics, baseline, records) if rows else "no finished runs"}
