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

__all__ = ["plot_softstep_curves", "plot_surfaces", "grid_points", "report_figures"]


def grid_points(resolution: int = 80, lim: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A ``resolution x resolution`` grid on ``[-lim, lim]^2``: the points (R*R, 2) and the axis (R,)."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    axis = np.linspace(-lim, lim, resolution)
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx.ravel(), yy.ravel()], axis=1), axis


def plot_softstep_curves(path: str | Path, params: Sequence[tuple[float, float, float]] = (
        (0.2, 0.8, 1.0), (0.2, 0.8, 0.5), (0.2, 0.8, 0.2), (0.2, 0.8, 0.05), (0.4, 0.6, 0.5)),
        title: str = "SoftStep(s; l, u, t)") -> Path:
    """Plot SoftStep over s in [0, 1] for each ``(l, u, t)``; writes a PNG at ``path``."""
    from ..functional import softstep

    plt = _plt()
    s = torch.linspace(0, 1, 501, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for l, u, t in params:
        ax.plot(s.numpy(), softstep(s, l, u, t).numpy(), label=f"l={l:g}, u={u:g}, t={t:g}")
    ax.set_xlabel("normalised similarity s")
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The report's hook: the SoftStep map (illustrative (l, u, t) values) when SoftStep recipes ran.

    The store keeps metrics, not models, so the learned parameters are not available here.
    """
    methods = sorted({r["method"] for r in records if "softstep" in r["method"]})
    if not methods:
        return []
    path = plot_softstep_curves(Path(out_dir) / "softstep_curves.png",
                                title="SoftStep(s; l, u, t) of " + ", ".join(methods[:2]) + " (illustrative l, u, t)")
    return [Path(path)]
