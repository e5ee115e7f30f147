"""Figures and tables of predictive uncertainty (issue 19): reliability diagrams and the coverage /
width / CRPS table, for every run that carries distribution metrics (codec and neighbor heads and
the uncertainty peers) whatever its family.

:func:`report_figures` is the figure hook (``report_figures(records, out_dir) -> list[Path]``);
:func:`report_section` gives the report its Markdown section and figures in one call.
matplotlib is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._mpl import pyplot as _plt

__all__ = ["plot_reliability", "report_figures", "report_section", "summary_rows"]

#: the columns of the report's table: (metric key, header)
COLUMNS = (("cov90", "cov90 raw"), ("width90", "width90 raw"), ("cov90_cqr", "cov90 CQR"),
           ("width90_cqr", "width90 CQR"), ("crps", "CRPS"), ("pit_dev", "PIT dev"), ("mae", "MAE"))
REFERENCE_PEER = "sk-mapie-hgb"


def _with_distribution(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if "crps" in (r.get("metrics") or {})]


def summary_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, method): number of seeds and mean / sample std of each :data:`COLUMNS` metric."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in _with_distribution(records):
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    rows = []
    for (ds, method), runs in groups.items():
        row: dict[str, Any] = {"dataset": ds, "method": method, "n": len(runs)}
        for key, _ in COLUMNS:
            vals = np.array([r["metrics"][key] for r in runs if key in r["metrics"]], dtype=np.float64)
            row[f"{key}_mean"] = float(vals.mean()) if vals.size else math.nan
            row[f"{key}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
        rows.append(row)
    return rows


def _cell(row: Mapping[str, Any], key: str) -> str:
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    if not math.isfinite(m):
        return "–"
    return f"{m:.4f}" + (f" ± {s:.4f}" if math.isfinite(s) else "")


def _sentences(rows: Sequence[Mapping[str, Any]], ds: str, nominal: float = 0.9) -> list[str]:
    """Where calibrated coverage reaches nominal and where our intervals beat MAPIE + HGB's width."""
    sub = [r for r in rows if r["dataset"] == ds]
    ours = [r for r in sub if not r["method"].startswith("sk-")]
    if not ours:
        return []
    # within a point of nominal, or over-covering (conservative, but wider than needed): said apart
    cov = {r["method"]: r["cov90_cqr_mean"] for r in ours}
    held = [m for m, c in cov.items() if abs(c - nominal) <= 0.01]
    over = [f"`{m}` ({c:.3f})" for m, c in cov.items() if c > nominal + 0.01]
    short = [f"`{m}` ({c:.3f})" for m, c in cov.items() if c < nominal - 0.01]
    out = [f"- calibrated 90% coverage within 1 point of nominal: {', '.join(f'`{m}`' for m in held) or 'none'}"
           + (f"; above: {', '.join(over)}" if over else "") + (f"; below: {', '.join(short)}" if short else "")]
    ref = next((r for r in sub if r["method"] == REFERENCE_PEER), None)
    if ref is not None and math.isfinite(ref["width90_cqr_mean"]):
        w = ref["width90_cqr_mean"]
        narrower = [f"`{r['method']}` ({r['width90_cqr_mean']:.4f})" for r in ours if r["width90_cqr_mean"] < w]
        best = min(ours, key=lambda r: r["width90_cqr_mean"])
        out.append(f"- calibrated 90% intervals narrower than `{REFERENCE_PEER}` ({w:.4f}): "
                   + (", ".join(narrower) if narrower else
                      f"none (narrowest ours: `{best['method']}`, {best['width90_cqr_mean']:.4f})"))
    return out


def plot_reliability(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """One panel per dataset: observed coverage of the central interval against its nominal level,
    mean over seeds, calibrated (solid) and raw (dashed) per method; the diagonal is perfect."""
    curves: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in records:
        u = r.get("uncertainty")
        if u and u.get("nominal"):
            curves.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(u)
    if not curves:
        return None
    plt = _plt()
    n = len(curves)
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.9 * nrow), squeeze=False)
    methods = sorted({m for per in curves.values() for m in per})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, (ds, per) in zip(axes.flat, curves.items()):
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8)
        for m, us in per.items():
            nominal = np.asarray(us[0]["nominal"])
            for kind, style in (("cqr", "-"), ("raw", "--")):
                vals = [u[kind] for u in us if u.get(kind) is not None]
                if vals:
                    ax.plot(nominal, np.mean(vals, axis=0), style, color=colors[m], lw=1.2,
                            label=m if kind == "cqr" else None, marker="o" if kind == "cqr" else None, ms=2.5)
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("nominal coverage")
        ax.set_ylabel("observed coverage (test)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Reliability: solid = conformalized (CQR on validation), dashed = raw", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The reliability diagram (one panel per dataset) of the runs that carry distribution metrics."""
    path = plot_reliability(records, Path(out_dir) / "reliability.png")
    return [path] if path is not None else []


def report_section(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[list[str], list[Path]]:
    """Markdown lines (a table per dataset and two sentences) and figures; empty when no run has
    a predictive distribution."""
    rows = summary_rows(records)
    if not rows:
        return [], []
    lines = ["## Predictive uncertainty", "",
             "Test split, scaled targets; mean ± sample std over seeds. Raw: the central interval of the "
             "method's own distribution; CQR: after conformalized quantile regression on the validation "
             "split (`sk-mapie-hgb` is conformal already: CQR column only). CRPS and the PIT histogram's "
             "deviation from uniform (total variation) are of the raw distribution.", ""]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        lines += [f"### {ds}", "", "| method | n | " + " | ".join(h for _, h in COLUMNS) + " |",
                  "|---|---|" + "---|" * len(COLUMNS)]
        lines += [f"| `{r['method']}` | {r['n']} | " + " | ".join(_cell(r, k) for k, _ in COLUMNS) + " |" for r in sub]
        lines += [""] + _sentences(rows, ds) + [""]
    figures = report_figures(records, out_dir)
    lines += [f"![{p.stem}]({p.name})" for p in figures] + [""]
    return lines, figures
