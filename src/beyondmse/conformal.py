"""Split-conformal calibration of prediction intervals (conformalized quantile regression).

A model's interval :math:`[\\hat q_{lo}(x), \\hat q_{hi}(x)]` at level :math:`1 - \\alpha` (here
the central interval of a head's predictive distribution) covers the target :math:`1 - \\alpha`
of the time only if the distribution is calibrated. Conformalized quantile regression (CQR,
Romano, Patterson & Candès 2019, Sec. 4.1) fixes that with a held-out calibration set of n
points that the model did not train on. Scores

.. math::

    E_i = \\max\\big(\\hat q_{lo}(x_i) - y_i,\\; y_i - \\hat q_{hi}(x_i)\\big)

(positive outside the interval, negative inside) give the correction
:math:`\\hat Q = E_{(\\lceil (n + 1)(1 - \\alpha) \\rceil)}`, the
:math:`\\lceil (n + 1)(1 - \\alpha)\\rceil`-th smallest score, and the interval
:math:`[\\hat q_{lo}(x) - \\hat Q, \\hat q_{hi}(x) + \\hat Q]`. On exchangeable data its coverage is
at least :math:`1 - \\alpha` (and at most :math:`1 - \\alpha + 1/(n + 1)` without ties),
whatever the model ([1], Theorem 1). The correction may be negative: it then narrows an interval
that was too wide.

**Ties.** The upper bound needs distinct scores. On a discrete target (a rating, a count) a
predictive distribution made of point masses at training targets (a neighbor head's, a quantile
forest's) has its quantiles on the target values, so many scores are exactly 0 and
:math:`\\hat Q = 0`: the interval keeps whatever over-coverage it had (wine quality, 7 levels:
0.96-0.97 at nominal 0.90, before and after calibration). Kernel smoothing of the distribution
(``predict_distribution(..., bandwidth="auto")`` on neighbor heads,
:meth:`beyondmse.distributions.TargetGrid.mixture`) makes the scores distinct and the
calibrated coverage nominal.

For m > 1 target dimensions each dimension gets its own correction (marginal coverage per
dimension, not joint coverage).

Written here rather than taken from MAPIE or crepes: the rule is a sorted array and an index,
and the core of the package must not depend on either (MAPIE is one of the peers we compare
against; see :mod:`beyondmse.recipes.uncertainty_peers`).

References
----------
1. Y. Romano, E. Patterson, E. Candès, "Conformalized Quantile Regression", NeurIPS 2019.
   https://arxiv.org/abs/1905.03222
2. J. Lei, M. G'Sell, A. Rinaldo, R. Tibshirani, L. Wasserman, "Distribution-Free Predictive
   Inference for Regression", JASA 2018 (split conformal).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .distributions import check_alpha

__all__ = ["CQR", "conformal_quantile", "cqr_scores"]


def conformal_quantile(scores, alpha: float) -> np.ndarray:
    """The split-conformal quantile of calibration ``scores`` (n,) or (n, m) along axis 0.

    Returns the :math:`\\lceil (n + 1)(1 - \\alpha) \\rceil`-th smallest score per column, shape
    () or (m,); ``+inf`` (with a RuntimeWarning) when that rank exceeds n, i.e. when
    :math:`n < 1/\\alpha - 1` calibration points cannot certify the level.

    >>> float(conformal_quantile(np.arange(1.0, 10.0), 0.2))  # ceil(10 * 0.8) = 8th smallest
    8.0
    """
    a = check_alpha(alpha)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2) or s.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty (n,) or (n, m) array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf values")
    n = s.shape[0]
    rank = math.ceil((n + 1) * (1.0 - a) - 1e-9)  # the 1e-9 keeps e.g. 10 * 0.9 from rounding up to 10
    if rank > n:
        warnings.warn(f"{n} calibration points cannot certify coverage {1 - a:g} (need n >= {math.ceil(1 / a - 1)}): "
                      "the conformal interval is unbounded", RuntimeWarning, stacklevel=2)
        return np.full(s.shape[1:], np.inf)
    return np.sort(s, axis=0)[rank - 1]


def cqr_scores(lower, upper, y) -> np.ndarray:
    """CQR conformity scores :math:`\\max(\\hat q_{lo} - y, y - \\hat q_{hi})`, same shape as ``y``."""
    lo, hi, yy = (np.asarray(a, dtype=np.float64) for a in (lower, upper, y))
    if not (lo.shape == hi.shape == yy.shape):
        raise ValueError(f"lower {lo.shape}, upper {hi.shape} and y {yy.shape} must have one shape")
    return np.maximum(lo - yy, yy - hi)


@dataclass(frozen=True)
class CQR:
    """A fitted CQR correction: ``CQR.fit(lower, upper, y, alpha).apply(lower, upper)``.

    Attributes
    ----------
    alpha : float
    correction : ndarray, shape () or (m,)
        :math:`\\hat Q`, added to the upper and subtracted from the lower bound.
    n : int
        Calibration set size.
    """

    alpha: float
    correction: np.ndarray
    n: int

    @classmethod
    def fit(cls, lower, upper, y, alpha: float) -> CQR:
        """Calibrate on held-out ``lower``, ``upper`` and ``y`` of shape (n,) or (n, m)."""
        scores = cqr_scores(lower, upper, y)
        return cls(check_alpha(alpha), conformal_quantile(scores, alpha), int(scores.shape[0]))

    def apply(self, lower, upper) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated bounds ``(lower - Q, upper + Q)``; if Q < 0 made an interval cross
        itself, both ends become its midpoint."""
        lo = np.asarray(lower, dtype=np.float64) - self.correction
        hi = np.asarray(upper, dtype=np.float64) + self.correction
        crossed = lo > hi
        if crossed.any():
            mid = 0.5 * (lo + hi)
            lo, hi = np.where(crossed, mid, lo), np.where(crossed, mid, hi)
        return lo, hi
