"""Plots for the neighbor family: SoftStep curves and 2-D regression surfaces next to the truth.

matplotlib is imported on first use; every function writes a PNG and returns its path.
:func:`report_figures` is the report's hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import torch

from ._mpl import pyplot as _plt

__all__ = ["plot_softstep_curves", "plot_surfaces", "plot_kept_fractions", "grid_points", "report_figures"]


def grid_points(resolution: int = 80, lim: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A ``resolution x resolution`` grid on ``[-lim, lim]^2``: the points (R*R, 2) and the axis (R,)."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    axis = np.linspace(-lim, lim, resolution)
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx.ravel(), yy.ravel()], axis=1), axis


def plot_softstep_curves(path: str | Path, params: Sequence[tuple[float, float, float]] = (
        (0.2, 0.8, 1.0), (0.2, 0.8, 0.5), (0.2, 0.8, 0.2), (0.2, 0.8, 0.05), (0.4, 0.6, 0.5)),
        title: str = "SoftStep(s; l, u, t)", labels: Sequence[str] | None = None) -> Path:
    """Plot SoftStep over s in [0, 1] for each ``(l, u, t)``; writes a PNG at ``path``.
    ``labels`` (one per curve) prefix the legend entries."""
    if labels is not None and len(labels) != len(params):
        raise ValueError(f"got {len(labels)} labels for {len(params)} curves")
    from ..functional import softstep

    plt = _plt()
    s = torch.linspace(0, 1, 501, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (l, u, t) in enumerate(params):
        prefix = f"{labels[i]}: " if labels is not None else ""
        ax.plot(s.numpy(), softstep(s, l, u, t).numpy(), label=f"{prefix}l={l:.3g}, u={u:.3g}, t={t:.3g}")
    ax.set_xlabel("normalised similarity s")
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_surfaces(path: str | Path, rows: Sequence[tuple[str, Mapping[str, np.ndarray]]],
                  axis: np.ndarray, captions: Mapping[tuple[str, str], str] | None = None) -> Path:
    """A grid of surfaces: one row per task, one column per model (the first column is the truth).

    Parameters
    ----------
    path : str or Path
        Where the PNG goes.
    rows : sequence of (task name, {column name: surface (R, R)})
        Every row has the same column names in the same order; all surfaces of a row share one
        colour scale (the truth's range).
    axis : ndarray (R,)
        Grid coordinates along both axes (from :func:`grid_points`).
    captions : {(task, column): str}, optional
        Text under a panel's title (e.g. its test MSE).
    """
    if not rows:
        raise ValueError("no surfaces to plot")
    plt = _plt()
    cols = list(rows[0][1])
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols), 2.5 * len(rows)), squeeze=False)
    ext = (axis[0], axis[-1], axis[0], axis[-1])
    for i, (task, surfaces) in enumerate(rows):
        if list(surfaces) != cols:
            raise ValueError(f"row {task!r} has columns {list(surfaces)}, expected {cols}")
        ref = surfaces[cols[0]]
        vmin, vmax = float(np.min(ref)), float(np.max(ref))
        for j, name in enumerate(cols):
            ax = axes[i, j]
            im = ax.imshow(surfaces[name], origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="viridis")
            label = name if not captions or (task, name) not in captions else f"{name}\n{captions[(task, name)]}"
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(task, fontsize=9)
        fig.colorbar(im, ax=axes[i, -1], fraction=0.046, pad=0.04)
    return _save(plt, fig, path, dpi=110)


def plot_kept_fractions(path: str | Path, rows: Sequence[tuple],
                        title: str = "fraction of neighbors kept") -> Path:
    """Bars of the fraction of the neighbor set each head keeps in training and at inference.

    Parameters
    ----------
    path : str or Path
    rows : sequence of (label, kept in training, kept at inference[, learned k fraction])
        Fractions in [0, 1] (``kept_frac_train`` / ``kept_frac_infer`` of a run record's
        ``head``); the optional fourth value (DiffKNN's learned ``k_frac``, or None) is drawn
        as a black tick across the pair of bars.
    """
    if not rows:
        raise ValueError("no kept fractions to plot")
    plt = _plt()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.5))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, label="training (batch)")
    ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="inference (memory bank)")
    ticks = [(i, r[3]) for i, r in enumerate(rows) if len(r) > 3 and r[3] is not None and np.isfinite(r[3])]
    if ticks:
        ax.scatter([i for i, _ in ticks], [v for _, v in ticks], marker="_", s=400, color="black",
                   label="learned k / n (DiffKNN)", zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels([r[0] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("fraction kept")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write the PNG (making its folder) and close ``fig``."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def report_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The report's hook: kept fractions (training vs inference, with DiffKNN's learned k / n)
    per dataset and method, and the learned SoftStep maps (mean over seeds of each method's
    learned ``(l0, u0, t)``), from the ``head`` entry of the run records
    (:meth:`beyondmse.heads.NCA.fit_summary`)."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    kept: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {}
    learned: dict[str, list[tuple[float, float, float]]] = {}
    for r in records:
        head = r.get("head") or {}
        if "kept_frac_train" in head and "kept_frac_infer" in head:
            tr, inf, kf = kept.setdefault((r["dataset"], r["method"]), ([], [], []))
            tr.append(float(head["kept_frac_train"]))
            inf.append(float(head["kept_frac_infer"]))
            if "k_frac" in head:
                kf.append(float(head["k_frac"]))
        if "softstep_l0" in head:
            learned.setdefault(r["method"], []).append(
                (head["softstep_l0"], head["softstep_u0"], head["softstep_t"]))
    if kept:
        rows = [(f"{d}\n{m}", _mean(tr), _mean(inf), _mean(kf) if kf else None)
                for (d, m), (tr, inf, kf) in sorted(kept.items())]
        paths.append(plot_kept_fractions(out_dir / "neighbors_kept_fraction.png", rows,
                                         "neighbors kept: training batch vs memory bank (mean over seeds)"))
    if learned:
        # the heads map l0, u0 to the curve's ends as l = l0 - eps, u = l + u0 (1 - l) (Algorithm 2)
        curves = []
        for method, values in sorted(learned.items()):
            l0, u0, t = (float(np.mean([v[i] for v in values])) for i in range(3))
            l = l0 - 1e-3
            curves.append((l, l + u0 * (1 - l), t))
        paths.append(plot_softstep_curves(out_dir / "softstep_curves.png", curves,
                                          "learned SoftStep (mean over runs)", labels=sorted(learned)))
    return paths
