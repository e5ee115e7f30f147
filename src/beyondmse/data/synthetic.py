"""2-D synthetic regression surfaces on [-1, 1]^2 (the SoftStep paper's Figure-3 study).

Each task draws ``n`` points uniformly on [-1, 1]^2 and a target ``f(x) + noise``:

==================  =====================================================================
``product``         :math:`x_1 x_2` (an interaction)
``sinusoid``        :math:`\\sin(2\\pi x_1) \\cos(\\pi x_2)`
``spiral``          :math:`\\sin(4\\pi r - \\theta)` with polar :math:`(r, \\theta)`: a two-armed
                    spiral (continuous: the phase wraps by :math:`2\\pi`)
``threshold``       :math:`\\mathbb 1[x_1 + 0.5 x_2 > 0]` (a step)
``heteroscedastic`` :math:`x_1^2` plus noise whose scale grows from 0.05 to 0.35 with
                    :math:`x_2`
==================  =====================================================================

The noise is Gaussian with standard deviation 0.05 unless stated. Draws are deterministic by
seed; the split is predefined (``train``/``val``/``test`` = 2000/500/500 of 3000 by default,
rows in random order). ``extras["truth"]`` holds the noise-free target of every row, and
:func:`truth` evaluates it anywhere (for surface plots).

Registered as ``softstep-<kind>`` (seed 0).
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset
from .registry import register_dataset

KINDS = ("product", "sinusoid", "spiral", "threshold", "heteroscedastic")
SIZES = (2000, 500, 500)

__all__ = ["KINDS", "truth", "noise_scale", "make_synthetic"]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic task {kind!r}; expected one of {KINDS}")


def truth(kind: str, X: np.ndarray) -> np.ndarray:
    """Noise-free target ``f(X)`` of task ``kind`` for points ``X`` (N, 2); returns (N,)."""
    _check_kind(kind)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {X.shape}")
    x1, x2 = X[:, 0], X[:, 1]
    if kind == "product":
        return x1 * x2
    if kind == "sinusoid":
        return np.sin(2 * np.pi * x1) * np.cos(np.pi * x2)
    if kind == "spiral":
        r, theta = np.hypot(x1, x2), np.arctan2(x2, x1)
        return np.sin(4 * np.pi * r - theta)
    if kind == "threshold":
        return (x1 + 0.5 * x2 > 0).astype(np.float64)
    return x1 ** 2  # heteroscedastic


def noise_scale(kind: str, X: np.ndarray, noise: float = 0.05) -> np.ndarray:
    """Per-point noise standard deviation (N,)."""
    _check_kind(kind)
    X = np.asarray(X, dtype=np.float64)
    if kind == "heteroscedastic":
        return noise + 0.3 * (X[:, 1] + 1) / 2
    return np.full(len(X), noise)


def make_synthetic(kind: str, n: int = 3000, noise: float = 0.05, seed: int = 0,
                   sizes: tuple[int, int, int] | None = None) -> Dataset:
    """Draw task ``kind`` with ``n`` points; deterministic for a given ``seed``.

    Parameters
    ----------
    kind : one of :data:`KINDS`
    n : int, default 3000
    noise : float, default 0.05
        Base noise standard deviation.
    seed : int, default 0
    sizes : (train, val, test), optional
        Defaults to 2000/500/500 scaled to ``n``.
    """
    _check_kind(kind)
    if n < 3:
        raise ValueError(f"need at least 3 points, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if sizes is None:
        tr = int(round(n * SIZES[0] / sum(SIZES)))
        va = int(round(n * SIZES[1] / sum(SIZES)))
        sizes = (tr, va, n - tr - va)
    if sum(sizes) != n or min(sizes) < 1:
        raise ValueError(f"sizes {sizes} must be positive and sum to n = {n}")
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    f = truth(kind, X)
    y = f + noise_scale(kind, X, noise) * rng.standard_normal(n)
    split = np.array(["train"] * sizes[0] + ["val"] * sizes[1] + ["test"] * sizes[2])
    return Dataset(name=f"softstep-{kind}", X=X, y=y[:, None], feature_names=["x1", "x2"], target_names=["y"],
                   source="generated", split=split, extras={"truth": f, "kind": kind, "noise": noise, "seed": seed})


def _register() -> None:
    for kind in KINDS:
        register_dataset(f"softstep-{kind}", f"SoftStep Fig. 3: 2-D '{kind}' surface on [-1, 1]^2 (seed 0)",
                         lambda kind=kind: make_synthetic(kind), size="3,000 x 2 (2000/500/500)")


_register()
