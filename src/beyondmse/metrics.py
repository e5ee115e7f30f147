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


# --------------------------------------------------------------------------- distributions
#: central-interval levels every run record reports (coverage and width, raw and conformalized)
INTERVAL_LEVELS = (0.8, 0.9)
#: nominal levels of the reliability diagram (observed coverage of the central interval)
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
PIT_BINS = 10


def _bounds(y, lower, upper) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets (finite) and interval bounds (infinite allowed: a conformal interval that a small
    calibration set cannot bound), all (N, m)."""
    yt, _ = _pair(y, y)
    lo = np.asarray(lower, dtype=np.float64).reshape(yt.shape)
    hi = np.asarray(upper, dtype=np.float64).reshape(yt.shape)
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError("interval bounds contain NaN values")
    return yt, lo, hi


def interval_coverage(y, lower, upper) -> float:
    """Share of targets inside their closed interval ``[lower, upper]`` (all of shape (N, m))."""
    yt, lo, hi = _bounds(y, lower, upper)
    return float(((yt >= lo) & (yt <= hi)).mean())


def interval_width(lower, upper) -> float:
    """Mean width ``upper - lower`` (``inf`` if an interval is unbounded)."""
    _, lo, hi = _bounds(lower, lower, upper)
    return float((hi - lo).mean())


def pit_histogram(pit_left, pit_right, bins: int = PIT_BINS) -> np.ndarray:
    """Non-randomized PIT histogram (Czado, Gneiting & Held 2009, Sec. 2.1): shares per bin.

    The probability integral transform of an observation y under a predictive cdf F is
    uniform on :math:`[F(y^-), F(y)]` (a point when F is continuous at y, an interval at a
    point mass of a discrete distribution). Each observation adds the share of that interval in
    each of ``bins`` equal bins of [0, 1]; a calibrated forecast gives a flat histogram.
    Returns shares (bins,) summing to 1.
    """
    lo = np.asarray(pit_left, dtype=np.float64).reshape(-1).clip(0.0, 1.0)
    hi = np.asarray(pit_right, dtype=np.float64).reshape(-1).clip(0.0, 1.0)
    if lo.shape != hi.shape or lo.size == 0:
        raise ValueError(f"pit_left {lo.shape} and pit_right {hi.shape} must be non-empty and of one shape")
    lo = np.minimum(lo, hi)
    edges = np.linspace(0.0, 1.0, bins + 1)
    span = hi - lo
    wide = span > 1e-12
    # the continuous part: overlap of [lo, hi] with each bin, over the interval's length
    overlap = np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]), 0, None)
    share = np.where(wide[:, None], overlap / np.where(wide, span, 1.0)[:, None], 0.0)
    point = np.clip(np.searchsorted(edges, lo[~wide], side="right") - 1, 0, bins - 1)
    hist = share.sum(0)
    np.add.at(hist, point, 1.0)
    return hist / len(lo)


def pit_deviation(hist) -> float:
    """Total-variation distance between a PIT histogram (shares) and the uniform one:
    :math:`\\frac12 \\sum_b |h_b - 1/B|`, 0 when flat, at most 1 - 1/B."""
    h = np.asarray(hist, dtype=np.float64)
    return float(0.5 * np.abs(h - 1.0 / len(h)).sum())


def distribution_report(dist_val, y_val, dist_test, y_test, *, conformal: bool = False,
                        levels=INTERVAL_LEVELS) -> tuple[dict[str, float], dict[str, list]]:
    """The distribution metrics of a run: on the test split, with CQR fitted on the validation split.

    ``dist_val`` and ``dist_test`` are predictive distributions (anything with ``quantile``,
    ``cdf``, ``cdf_left`` and ``crps``, e.g. :class:`beyondmse.distributions.Mixture`) of the
    validation and test inputs; ``y_val`` (n_val, m) and ``y_test`` (n_test, m) the targets in
    the same units. Returns ``(metrics, curves)``:

    * metrics: ``crps`` (mean CRPS), ``pit_dev`` (:func:`pit_deviation`), and for each level
      ``p`` in ``levels`` (as a percentage ``P``): ``covP``/``widthP`` of the raw central
      interval :math:`[F^{-1}(\\alpha/2), F^{-1}(1 - \\alpha/2)]`, :math:`\\alpha = 1 - p`, and
      ``covP_cqr``/``widthP_cqr`` after conformalized quantile regression on the validation
      split (:class:`beyondmse.conformal.CQR`);
    * curves: ``nominal`` (:data:`RELIABILITY_LEVELS`) with the observed coverage ``raw`` and
      ``cqr`` at each (the reliability diagram), and ``pit_hist``.

    With ``conformal=True`` the distribution's intervals are already conformal (a peer such as
    MAPIE calibrated them on the validation split): they are reported as the ``_cqr`` numbers
    and the raw ones are left out.
    """
    import warnings

    import torch

    from .conformal import CQR

    yv = np.asarray(y_val, dtype=np.float64).reshape(len(y_val), -1)
    yt = np.asarray(y_test, dtype=np.float64).reshape(len(y_test), -1)
    nominal = sorted(set(RELIABILITY_LEVELS) | set(levels))
    alphas = [1.0 - p for p in nominal]
    qs = [a / 2 for a in alphas] + [1 - a / 2 for a in alphas]
    n_lv = len(nominal)

    def bounds(dist) -> np.ndarray:  # (N, m, 2, n_levels)
        q = dist.quantile(qs).cpu().numpy()
        return np.stack([q[..., :n_lv], q[..., n_lv:]], axis=2)

    bv, bt = bounds(dist_val), bounds(dist_test)
    raw_cov, cqr_cov, out = [], [], {}
    for j, p in enumerate(nominal):
        lo_t, hi_t = bt[:, :, 0, j], bt[:, :, 1, j]
        if conformal:
            clo, chi = lo_t, hi_t
        else:
            with warnings.catch_warnings():  # too few calibration points: warn for the reported levels only
                if p not in levels:
                    warnings.simplefilter("ignore", RuntimeWarning)
                cqr = CQR.fit(bv[:, :, 0, j], bv[:, :, 1, j], yv, 1.0 - p)
            clo, chi = cqr.apply(lo_t, hi_t)
        raw_cov.append(interval_coverage(yt, lo_t, hi_t))
        cqr_cov.append(interval_coverage(yt, clo, chi))
        if p in levels:
            tag = f"{round(100 * p):d}"
            if not conformal:
                out[f"cov{tag}"], out[f"width{tag}"] = raw_cov[-1], interval_width(lo_t, hi_t)
            out[f"cov{tag}_cqr"], out[f"width{tag}_cqr"] = cqr_cov[-1], interval_width(clo, chi)
    y_t = torch.as_tensor(yt)
    out["crps"] = float(dist_test.crps(y_t).mean())
    hist = pit_histogram(dist_test.cdf_left(y_t).cpu().numpy(), dist_test.cdf(y_t).cpu().numpy())
    out["pit_dev"] = pit_deviation(hist)
    curves = {"nominal": list(nominal), "raw": None if conformal else raw_cov, "cqr": cqr_cov,
              "pit_hist": hist.tolist()}
    return out, curves
