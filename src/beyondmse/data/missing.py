"""Missing feature values: median imputation fitted on training rows, with missing-indicator columns.

Real tables have gaps, and gradient boosting takes them natively; a neural trunk needs numbers.
The default of the loaders (``missing="impute"``) is therefore:

* a missing *category* (a string column or an ordered category) is its own level
  (:func:`beyondmse.data.tables.frame_to_dataset` does that when it encodes the table);
* a missing *number* stays NaN in :class:`~beyondmse.data.Dataset` and is replaced, after the
  split, by the column's median on the training split, with a 0/1 indicator column appended for
  every column that has a gap (:class:`MedianImputation`, applied by
  :func:`~beyondmse.data.make_splits` and by :class:`~beyondmse.BeyondMSERegressor`);
* ``missing="refuse"`` turns both off: a gap is a ValueError naming the column(s).

Missing *targets* are always an error: there is nothing to learn from a row without its label.

scikit-learn's ``SimpleImputer(add_indicator=True)`` does the same, but it refuses a gap at
predict time in a column that had none in training (a user's new data may well have one), and
the data layer keeps scikit-learn out of ``import beyondmse.data`` (as :mod:`.scaling` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISSING_POLICIES = ("impute", "refuse")


def check_missing_policy(missing: str) -> str:
    """``missing`` if it is ``"impute"`` or ``"refuse"``; ValueError otherwise."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    return missing


@dataclass(frozen=True)
class MedianImputation:
    """``x -> [x with NaN replaced by the column's training median, isnan(x[:, indicate])]``.

    Attributes
    ----------
    fill : ndarray, shape (d,)
        Training medians ignoring NaN (0 for a column with no observed training value).
    indicate : ndarray of int, shape (k,)
        Columns that get a 0/1 missing-indicator column, appended in this order.

    Examples
    --------
    >>> imp = MedianImputation.fit(np.array([[1.0, 0.0], [np.nan, 2.0], [3.0, 4.0]]))
    >>> imp.transform(np.array([[np.nan, 5.0]]))
    array([[2., 5., 1.]])
    """

    fill: np.ndarray
    indicate: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray, indicate: np.ndarray | None = None) -> MedianImputation:
        """Medians of ``a (n, d)`` per column; ``indicate`` defaults to the columns of ``a`` with a gap."""
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2 or len(a) == 0:
            raise ValueError(f"MedianImputation.fit expects a non-empty (n, d) array, got shape {a.shape}")
        if np.isinf(a).any():
            raise ValueError("features contain inf (only NaN counts as missing)")
        observed = ~np.isnan(a)
        fill = np.zeros(a.shape[1])
        for j in np.flatnonzero(observed.any(axis=0)):
            fill[j] = np.median(a[observed[:, j], j])
        if indicate is None:
            indicate = np.flatnonzero((~observed).any(axis=0))
        return cls(fill, np.asarray(indicate, dtype=int))

    @property
    def needed(self) -> bool:
        """Whether any column had a gap when fitted (else :meth:`transform` only fills)."""
        return len(self.indicate) > 0

    def transform(self, a: np.ndarray) -> np.ndarray:
        """``a (n, d)`` with gaps filled and ``k`` indicator columns appended: ``(n, d + k)``, a's dtype."""
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != len(self.fill):
            raise ValueError(f"expected (n, {len(self.fill)}) features, got shape {a.shape}")
        gaps = np.isnan(a)
        out = np.where(gaps, self.fill.astype(a.dtype), a)
        return np.concatenate([out, gaps[:, self.indicate].astype(a.dtype)], axis=1)


__all__ = ["MISSING_POLICIES", "MedianImputation", "check_missing_policy"]
