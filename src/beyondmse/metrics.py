"""Regression metrics on arrays of shape (N, m) (or (N,)), plus the representation diagnostics
of the tightness paper (ordinality correlations and volume).

All functions take NumPy arrays (or anything ``np.asarray`` accepts) and return floats.
"""

from __future__ import annotations

import numpy as np


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    yt = yt[:, None] if yt.ndim == 1 else yt
    yp = yp[:, None] if yp.ndim == 1 else yp
    if yt.shape != yp.shape:
        raise ValueError(f"y_true {yt.shape} and y_pred {yp.shape} differ in shape")
    if yt.size == 0:
        raise ValueError("cannot compute a metric on empty arrays")
    if not (np.isfinite(yt).all() and np.isfinite(yp).all()):
        raise ValueError("metrics got NaN or inf values")
    return yt, yp


def mae(y_true, y_pred) -> float:
    """Mean absolute error, averaged over samples and target dimensions."""
    yt, yp = _pair(y_true, y_pred)
    return float(np.abs(yt - yp).mean())


def mse(y_true, y_pred) -> float:
    yt, yp = _pair(y_true, y_pred)
    return float(((yt - yp) ** 2).mean())


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(mse(y_true, y_pred)))


def r2(y_true, y_pred) -> float:
    """Coefficient of determination, averaged uniformly over target dimensions.

    A target dimension with zero variance contributes 1.0 if predicted exactly, else 0.0
    (scikit-learn's convention), so the value is always finite.
    """
    yt, yp = _pair(y_true, y_pred)
    ss_res = ((yt - yp) ** 2).sum(axis=0)
    ss_tot = ((yt - yt.mean(axis=0)) ** 2).sum(axis=0)
    per_dim = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), (ss_res == 0).astype(float))
    return float(per_dim.mean())


def delta_1(y_true, y_pred, threshold: float = 1.25) -> float:
    """Threshold accuracy: fraction with ``max(y/y', y'/y) < threshold`` (positive targets only).

    Raises ValueError unless every target is > 0; non-positive predictions count as misses.
    """
    yt, yp = _pair(y_true, y_pred)
    if (yt <= 0).any():
        raise ValueError("delta_1 needs strictly positive targets")
    ok = yp > 0
    ratio = np.where(ok, np.maximum(yt / np.where(ok, yp, 1), np.where(ok, yp, 1) / yt), np.inf)
    return float((ratio < threshold).mean())


def shot_mae(y_true, y_pred, y_train, n_bins: int = 100, many: int = 100, few: int = 20) -> dict[str, float]:
    """Few/medium/many-shot MAE (the imbalanced-regression convention of Yang et al. 2021).

    The training target range is cut into ``n_bins`` equal bins; a test sample is "many-shot"
    if its bin holds more than ``many`` training samples, "few-shot" if fewer than ``few``,
    "medium" otherwise. Scalar targets only. A bucket with no test sample is omitted.
    """
    yt, yp = _pair(y_true, y_pred)
    ytr = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    if yt.shape[1] != 1 or ytr.shape[1] != 1:
        raise ValueError("shot buckets are defined for scalar targets only")
    lo, hi = ytr.min(), ytr.max()
    edges = np.linspace(lo, hi if hi > lo else lo + 1, n_bins + 1)
    counts = np.histogram(ytr[:, 0], bins=edges)[0]
    bins = np.clip(np.digitize(yt[:, 0], edges[1:-1]), 0, n_bins - 1)
    freq = counts[bins]
    err = np.abs(yt - yp)[:, 0]
    out = {}
    for name, mask in (("many", freq > many), ("medium", (freq >= few) & (freq <= many)), ("few", freq < few)):
        if mask.any():
            out[f"mae_{name}"] = float(err[mask].mean())
    return out


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def ordinality(z, y, max_points: int = 500, seed: int = 0) -> dict[str, float]:
    """Spearman and Kendall correlation between pairwise feature distances ``||z_i - z_j||``
    and pairwise label distances ``||y_i - y_j||`` over a sample of ``max_points`` points
    (the ordinality diagnostic of the tightness paper, Table 4)."""
    from scipy import stats  # here, not at the top: ``import beyondmse`` stays light
    from scipy.spatial.distance import pdist

    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(z) != len(y) or len(z) < 3:
        raise ValueError(f"ordinality needs >= 3 paired points, got {len(z)} and {len(y)}")
    idx = _sample(len(z), max_points, seed)
    dz, dy = pdist(z[idx]), pdist(y[idx])
    if np.ptp(dz) == 0 or np.ptp(dy) == 0:
        return {"spearman": 0.0, "kendall": 0.0}
    return {"spearman": float(stats.spearmanr(dz, dy).statistic),
            "kendall": float(stats.kendalltau(dz, dy).statistic)}


def volume(z, max_points: int = 500, seed: int = 0) -> float:
    """Mean pairwise cosine similarity of features over a sample ("volume": high means the
    features occupy a small region of the embedding space)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    if len(z) < 2:
        raise ValueError("volume needs at least 2 points")
    z = z[_sample(len(z), max_points, seed)]
    zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    sim = zn @ zn.T
    n = len(z)
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


def regression_report(y_true, y_pred, y_train=None) -> dict[str, float]:
    """MAE, MSE, RMSE, R^2, and (scalar targets with ``y_train``) the shot-bucket MAEs."""
    out = {"mae": mae(y_true, y_pred), "mse": mse(y_true, y_pred), "rmse": rmse(y_true, y_pred),
           "r2": r2(y_true, y_pred)}
    if y_train is not None and np.asarray(y_true).reshape(len(y_true), -1).shape[1] == 1:
        out.update(shot_mae(y_true, y_pred, y_train))
    return out
