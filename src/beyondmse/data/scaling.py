"""Per-column min-max scaling to [0, 1], fitted on training data only.

One implementation for the benchmark splits (:func:`beyondmse.data.make_splits`) and the
scikit-learn estimator (:class:`beyondmse.BeyondMSERegressor`), so a model trained through
either sees its inputs scaled the same way.

scikit-learn's ``MinMaxScaler`` maps a constant column to 0 too, but it would make
``import beyondmse.data`` load scikit-learn, and it cannot say which columns were constant,
which both callers need (the splits refuse a constant target, the estimator predicts it
exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MinMaxScaling:
    """``x -> (x - offset) / scale`` per column, with ``scale = max - min`` (1 where constant).

    Attributes
    ----------
    offset : ndarray, shape (d,)
        Column minima of the fitted data.
    scale : ndarray, shape (d,)
        Column ranges ``max - min``; 1 for a constant column, which therefore maps to 0.
    constant : ndarray of bool, shape (d,)
        Which columns were constant on the fitted data.

    Both arrays keep the dtype of the fitted data, so float32 features stay float32.

    Examples
    --------
    >>> s = MinMaxScaling.fit(np.array([[0.0, 5.0], [2.0, 5.0]]))
    >>> s.transform(np.array([[1.0, 5.0]]))
    array([[0.5, 0. ]])
    >>> s.inverse(s.transform(np.array([[1.0, 5.0]])))
    array([[1., 5.]])
    """

    offset: np.ndarray
    scale: np.ndarray
    constant: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> MinMaxScaling:
        """Fit on ``a`` of shape ``(n, d)`` (or ``(n,)``, one column); needs n >= 1."""
        a = np.asarray(a)
        if a.ndim not in (1, 2) or len(a) == 0:
            raise ValueError(f"MinMaxScaling.fit expects a non-empty (n, d) or (n,) array, got shape {a.shape}")
        lo = a.min(axis=0)
        span = a.max(axis=0) - lo
        constant = np.asarray(span == 0)
        scale = np.where(constant, 1.0, span).astype(a.dtype)
        return cls(np.asarray(lo), scale, constant)

    def transform(self, a: np.ndarray) -> np.ndarray:
        """Scaled copy of ``a`` ``(n, d)``; training columns land in [0, 1]."""
        return (np.asarray(a) - self.offset) / self.scale

    def inverse(self, a: np.ndarray) -> np.ndarray:
        """Map scaled values (or predictions) ``(n, d)`` back to the original units."""
        return np.asarray(a) * self.scale + self.offset


__all__ = ["MinMaxScaling"]
