"""Plots of a fitted codec: the encoder's class-membership functions over the target range.

* m = 1: one curve :math:`y \\mapsto \\psi(y)_i` per class, with the decoder values
  :math:`\\mu_i` marked on the axis.
* m = 2: a contour map of the most likely class and its membership, and a map of the
  encoder's entropy, with the decoder points :math:`\\mu_i` overlaid.

matplotlib is imported on first use. :func:`report_figures` is the report's hook.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..heads.codec import Codec
from ._mpl import pyplot

__all__ = ["plot_codec", "report_figures"]


@torch.no_grad()
def _memberships(head: Codec, y: torch.Tensor) -> torch.Tensor:
    if head.mode == "ls-softmax":
        raise ValueError("ls-softmax has no target encoder to plot")
    return head.encode(y.to(head.mu.dtype)).cpu()


def plot_codec(head: Codec, path: str | Path | None = None, n_points: int = 400, title: str | None = None,
               margin: float = 0.05):
    """Draw the class-membership functions of ``head``'s encoder.

    Parameters
    ----------
    head : Codec
        A fitted codec head (any mode but ``ls-softmax``), with m = 1 or m = 2.
    path : str or Path, optional
        If given, the figure is also written there (PNG at 120 dpi).
    n_points : int, default 400
        Evaluation points along each axis (m = 1) or per axis of the grid (m = 2, capped at 200).
    title : str, optional
    margin : float, default 0.05
        Fraction of the fitted range added on each side (shows the clipping outside it).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(head, Codec):
        raise TypeError(f"plot_codec needs a Codec head, got {type(head).__name__}")
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    plt = pyplot()
    m = head.target_dim
    lo, hi = head.lo.double().cpu(), head.hi.double().cpu()
    pad = margin * (hi - lo)
    mu = head.mu.detach().double().cpu()
    title = title or f"{head.mode} encoder (k = {head.k})"
    if m == 1:
        y = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), n_points, dtype=torch.float64)[:, None]
        p = _memberships(head, y)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for i in range(head.k):
            ax.plot(y[:, 0].numpy(), p[:, i].numpy(), lw=1.2)
        ax.plot(mu[:, 0].numpy(), [0.0] * head.k, "k|", ms=12, label=r"decoder $\mu_i$")
        ax.set_xlabel("target y")
        ax.set_ylabel(r"membership $\psi(y)_i$")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title)
    elif m == 2:
        n = min(n_points, 200)
        g0 = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), n, dtype=torch.float64)
        g1 = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), n, dtype=torch.float64)
        a, b = torch.meshgrid(g0, g1, indexing="xy")
        p = _memberships(head, torch.stack([a.reshape(-1), b.reshape(-1)], 1))
        pmax, arg = p.max(dim=1)
        ent = torch.special.entr(p).sum(1)  # 0 log 0 = 0 where memberships underflow
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        ax = axes[0]
        cs = ax.contourf(a.numpy(), b.numpy(), pmax.reshape(n, n).numpy(), levels=10, cmap="viridis")
        ax.contour(a.numpy(), b.numpy(), arg.reshape(n, n).numpy().astype(float),
                   levels=torch.arange(head.k + 1).numpy() - 0.5, colors="white", linewidths=0.3)
        fig.colorbar(cs, ax=ax, label=r"$\max_i \psi(y)_i$")
        ax.set_title("most likely class (white borders) and its membership")
        ax = axes[1]
        cs = ax.contourf(a.numpy(), b.numpy(), ent.reshape(n, n).numpy(), levels=12, cmap="magma")
        fig.colorbar(cs, ax=ax, label=r"entropy $H(\psi(y))$")
        ax.set_title("encoder entropy")
        for ax in axes:
            ax.scatter(mu[:, 0].numpy(), mu[:, 1].numpy(), s=6, c="cyan", edgecolors="none", label=r"$\mu_i$")
            ax.set_xlabel("y[0]")
            ax.set_ylabel("y[1]")
        fig.suptitle(title)
    else:
        raise ValueError(f"plot_codec draws m = 1 or m = 2 targets, got m = {m}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def report_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The report's hook: encoder membership functions of the codec runs in ``records``.

    The store keeps metrics, not models, so each codec is rebuilt from its run's resolved
    parameters and fitted on the training targets of (dataset, that run's seed): the exact
    encoder for the fixed-encoder codecs and for ``trained-codec`` (its stage 1 sees the
    targets alone); for ``e2e-codec`` the initial encoder. At most 8 figures, one per
    (dataset, method); runs on in-memory datasets or with m > 2 are passed over.
    """
    from ..data import load_dataset, make_splits
    from ..recipes import build_model, split_params

    out_dir = Path(out_dir)
    done: dict[tuple[str, str], Path] = {}
    for r in records:
        base = r["method"]
        if "+" in base or base == "ls-softmax" or not isinstance(r["dataset"], str):
            continue
        if (r["dataset"], base) in done or len(done) >= 8:
            continue
        try:
            ds = load_dataset(r["dataset"])
        except ValueError:
            continue
        if ds.target_dim > 2:
            continue
        splits = make_splits(ds, seed=int(r["seed"]), protocol=r.get("protocol"))
        _, _, knobs = split_params(base, dict(r.get("params") or {}))
        torch.manual_seed(0)
        model, _ = build_model(base, splits.X_train.shape[1:], splits.y_train.shape[1], knobs)
        model.head.fit_targets(torch.as_tensor(splits.y_train))
        what = "initial encoder" if base == "e2e-codec" else "encoder"
        path = out_dir / f"codec_{r['dataset']}_{base}.png"
        fig = plot_codec(model.head, path, title=f"{base} k={knobs.get('k')} on {r['dataset']} ({what})")
        pyplot().close(fig)
        done[(r["dataset"], base)] = path
    return list(done.values())
