"""Plots of a fitted codec: the encoder's class-membership functions over the target range.

* m = 1: one curve :math:`y \\mapsto \\psi(y)_i` per class, with the decoder values
  :math:`\\mu_i` marked on the axis.
* m = 2: a contour map of the most likely class and its membership, and a map of the
  encoder's entropy, with the decoder points :math:`\\mu_i` overlaid.

* Encoder health over a set of runs (:func:`plot_encoder_health`): entropy and classes used at
  the end of training against the start; :func:`collapse_warnings` names the runs whose encoder
  collapsed and :func:`report_notes` gives the report a table of it.

matplotlib is imported on first use. :func:`report_figures` is the report's hook.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..heads.codec import Codec, LSSoftmax
from ._mpl import pyplot

__all__ = ["collapse_warnings", "health_rows", "plot_codec", "plot_encoder_health", "report_figures", "report_notes"]


@torch.no_grad()
def _memberships(head: Codec, y: torch.Tensor) -> torch.Tensor:
    if isinstance(head, LSSoftmax):
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


#: a run's encoder counts as collapsed when, from the start to the end of training, its mean
#: entropy falls below this share of its start, or it loses this share of its used classes
COLLAPSE_ENTROPY_SHARE = 0.5
COLLAPSE_CLASS_SHARE = 0.5


def _label(r: Mapping[str, Any]) -> str:
    k = (r.get("params") or {}).get("k") or ((r.get("head") or {}).get("codec") or {}).get("k")
    return f"{r['method']} k={k}" if k is not None else r["method"]


def health_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per codec run that recorded its encoder health (``record["head"]``, written by
    :meth:`~beyondmse.heads.Codec.fit_summary`): dataset, label, seed and the start / end
    auto-encoding MAE, mean entropy and classes used on the validation targets."""
    rows = []
    for r in records:
        health = (r.get("head") or {}).get("encoder_health") or {}
        if "end" not in health:
            continue
        start = health.get("start") or {}
        rows.append({"dataset": r["dataset"], "label": _label(r), "seed": r.get("seed"),
                     **{f"{key}_start": start.get(key) for key in ("auto_mae", "entropy", "classes_used")},
                     **{f"{key}_end": health["end"][key] for key in ("auto_mae", "entropy", "classes_used")}})
    return rows


def collapse_warnings(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """A sentence per codec run whose encoder collapsed during training (entropy below
    :data:`COLLAPSE_ENTROPY_SHARE` of its start, or fewer than :data:`COLLAPSE_CLASS_SHARE` of
    its used classes left): its predictions then lie on a coarser code than the one it started
    with, whatever the test error says."""
    out = []
    for row in health_rows(records):
        if row["entropy_start"] is None:
            continue
        lost_entropy = row["entropy_end"] < COLLAPSE_ENTROPY_SHARE * row["entropy_start"]
        lost_classes = row["classes_used_end"] < COLLAPSE_CLASS_SHARE * row["classes_used_start"]
        if lost_entropy or lost_classes:
            out.append(f"encoder collapse: {row['label']} on {row['dataset']} seed {row['seed']}: entropy "
                       f"{row['entropy_start']:.3f} -> {row['entropy_end']:.3f}, classes used "
                       f"{row['classes_used_start']} -> {row['classes_used_end']}, auto-encoding MAE "
                       f"{row['auto_mae_start']:.4g} -> {row['auto_mae_end']:.4g}")
    return out


def report_notes(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Text for the report: a markdown table of the encoder health (mean over seeds per dataset
    and label) and the collapse warnings."""
    rows = health_rows(records)
    if not rows:
        return []
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["label"]), []).append(row)
    lines = ["Encoder health on the validation targets, start -> end of training (mean over seeds):", "",
             "| dataset | method | seeds | auto-encoding MAE | entropy (nats) | classes used |", "|---|---|---|---|---|---|"]

    def mean(group, key):
        values = [g[key] for g in group if g[key] is not None]
        return sum(values) / len(values) if values else float("nan")

    for (dataset, label), group in sorted(groups.items()):
        lines.append(f"| {dataset} | `{label}` | {len(group)} | {mean(group, 'auto_mae_start'):.4g} -> "
                     f"{mean(group, 'auto_mae_end'):.4g} | {mean(group, 'entropy_start'):.3f} -> "
                     f"{mean(group, 'entropy_end'):.3f} | {mean(group, 'classes_used_start'):.1f} -> "
                     f"{mean(group, 'classes_used_end'):.1f} |")
    warnings = collapse_warnings(records)
    return lines + ([""] + [f"**Warning**, {w}" for w in warnings] if warnings else [])


def plot_encoder_health(records: Sequence[Mapping[str, Any]], path: str | Path | None = None):
    """Start vs end of training, per codec run: mean encoder entropy (left) and classes used
    (right), one marker per run; points below the diagonal lost information. Returns the figure."""
    rows = health_rows(records)
    rows = [r for r in rows if r["entropy_start"] is not None]
    if not rows:
        raise ValueError("no codec run in these records recorded its encoder health at the start of training")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    labels = sorted({r["label"] for r in rows})
    for key, ax, title in (("entropy", axes[0], "mean encoder entropy (nats)"),
                           ("classes_used", axes[1], "classes used")):
        for label in labels:
            pts = [r for r in rows if r["label"] == label]
            ax.scatter([p[f"{key}_start"] for p in pts], [p[f"{key}_end"] for p in pts], s=18, label=label)
        top = max(max(r[f"{key}_start"], r[f"{key}_end"]) for r in rows) * 1.05 + 1e-9
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.plot([0, top], [0, COLLAPSE_ENTROPY_SHARE * top if key == "entropy" else COLLAPSE_CLASS_SHARE * top],
                ":", color="tab:red", lw=0.8, label="collapse threshold")
        ax.set_xlabel("start of training")
        ax.set_ylabel("end of training")
        ax.set_title(title)
    axes[1].legend(fontsize=7, loc="lower right")
    n_bad = len(collapse_warnings(records))
    fig.suptitle(f"codec encoder health ({len(rows)} runs, {n_bad} collapsed)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def report_figures(records: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """The report's hook: encoder membership functions of the codec runs in ``records``, and a
    start-vs-end encoder health figure.

    A run that kept its fitted codec (``record["head"]["codec"]``, see
    :meth:`~beyondmse.heads.Codec.fit_summary`) is drawn as *learned*; an older record without it
    is rebuilt from its resolved parameters and fitted on the training targets of (dataset, its
    seed), which is exact for the fixed codecs and ``trained-codec`` but only the *initial*
    encoder of ``e2e-codec``, and says so in the title. At most 8 encoder figures, one per
    (dataset, method); ``ls-softmax``, in-memory datasets and m > 2 are passed over.
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
        state = (r.get("head") or {}).get("codec")
        if state is not None:
            if int(state["target_dim"]) > 2:
                continue
            head, what = Codec.from_codec_state(state), "learned encoder" if base == "e2e-codec" else "encoder"
            k = state["k"]
        else:
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
            head, k = model.head, knobs.get("k")
            what = "initial encoder: this record kept no codec" if base == "e2e-codec" else "encoder"
        path = out_dir / f"codec_{r['dataset']}_{base}.png"
        fig = plot_codec(head, path, title=f"{base} k={k} on {r['dataset']} ({what}, seed {r['seed']})")
        pyplot().close(fig)
        done[(r["dataset"], base)] = path
    paths = list(done.values())
    if any(row["entropy_start"] is not None for row in health_rows(records)):
        path = out_dir / "codec_encoder_health.png"
        pyplot().close(plot_encoder_health(records, path))
        paths.append(path)
    return paths
