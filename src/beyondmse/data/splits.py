"""Split protocols and scaling, deterministic by seed.

* ``"paper"``: the fixed train/val/test sizes of the regression-as-classification paper
  (``Dataset.paper_sizes``, e.g. diamonds 43,152 / 5,394 / 5,394), drawn by a seeded permutation;
* ``"default"``: 80/20 development/test, the development part split 85/15 train/val;
* ``"predefined"``: the dataset's own ``split`` column (the coordinate tasks, RetinaMNIST).

``protocol=None`` picks ``"predefined"`` when the dataset carries a split, else ``"paper"``
when it has paper sizes, else ``"default"``.

Scaling is fitted on the training split only: features min-max to [0, 1] (tables only;
images are already in [0, 1]), targets min-max to [0, 1] per column unless the dataset says
``target_scaling="none"``. Metrics are reported on the scaled targets (the papers' convention);
:meth:`Splits.inverse_y` maps predictions back to the original units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset
from .missing import MedianImputation
from .scaling import MinMaxScaling

PROTOCOLS = ("paper", "default", "predefined")


@dataclass
class Splits:
    """Scaled arrays of one seeded split. ``y_*`` are (n, m); ``y_offset``/``y_scale`` are (m,)."""

    name: str
    protocol: str
    seed: int
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    y_offset: np.ndarray
    y_scale: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray

    def inverse_y(self, y: np.ndarray) -> np.ndarray:
        """Map scaled targets or predictions back to the original units."""
        return np.asarray(y) * self.y_scale + self.y_offset

    @property
    def sizes(self) -> tuple[int, int, int]:
        return len(self.X_train), len(self.X_val), len(self.X_test)

    def test_rows_in_train(self) -> float | None:
        """Fraction of test rows whose features equal a training row exactly (None for
        non-tabular inputs). Real tables repeat records (wine_quality: 18% of its rows are
        copies, with the same label); a model that memorises rows gains on those test rows, so
        the report states the fraction next to the results."""
        if self.X_test.ndim != 2 or not len(self.X_test):
            return None
        seen = {row.tobytes() for row in np.ascontiguousarray(self.X_train)}
        return float(np.mean([row.tobytes() in seen for row in np.ascontiguousarray(self.X_test)]))


def _indices(ds: Dataset, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = ds.n_samples
    if protocol == "predefined":
        if ds.split is None:
            raise ValueError(f"dataset {ds.name!r} has no predefined split; use 'paper' or 'default'")
        parts = [np.flatnonzero(ds.split == s) for s in ("train", "val", "test")]
        return tuple(parts)  # type: ignore[return-value]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    if protocol == "paper":
        if ds.paper_sizes is None:
            raise ValueError(f"dataset {ds.name!r} has no paper split sizes; use 'default'")
        n_tr, n_va, n_te = ds.paper_sizes
        if n_tr + n_va + n_te > n:
            raise ValueError(f"paper sizes {ds.paper_sizes} exceed the {n} rows of {ds.name!r}")
    elif protocol == "default":
        n_te = int(round(0.2 * n))
        n_va = int(round(0.15 * (n - n_te)))
        n_tr = n - n_te - n_va
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; expected one of {PROTOCOLS}")
    if min(n_tr, n_va, n_te) < 1:
        raise ValueError(f"dataset {ds.name!r} has too few rows ({n}) for a train/val/test split")
    return perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:n_tr + n_va + n_te]


def make_splits(ds: Dataset, seed: int = 0, protocol: str | None = None) -> Splits:
    """Split ``ds`` by ``protocol`` with ``seed`` and scale it on the training part.

    A target that is constant on the training split raises ValueError (there is nothing to
    learn and the [0, 1] scaling is undefined). Constant feature columns are left at 0.
    Missing feature values (NaN, a dataset with ``missing="impute"``) are filled with the
    training split's column medians, and a 0/1 indicator column per column with a gap anywhere
    in the dataset is appended (:class:`~beyondmse.data.missing.MedianImputation`).
    """
    if protocol is None:
        protocol = "predefined" if ds.split is not None else ("paper" if ds.paper_sizes else "default")
    tr, va, te = _indices(ds, protocol, seed)
    X = ds.X
    if X.ndim == 2 and np.isnan(X).any():
        gaps = np.flatnonzero(np.isnan(X).any(axis=0))
        X = MedianImputation.fit(X[tr], indicate=gaps).transform(X)
    if X.ndim == 2 and ds.feature_scaling == "minmax":
        X = MinMaxScaling.fit(X[tr]).transform(X)
    if ds.target_scaling == "minmax":
        y_scaling = MinMaxScaling.fit(ds.y[tr])
        if y_scaling.constant.any():
            bad = [ds.target_names[j] for j in np.flatnonzero(y_scaling.constant)]
            raise ValueError(f"target {bad} of {ds.name!r} is constant on the training split; "
                             "nothing to learn")
        y_lo, y_span = y_scaling.offset, y_scaling.scale
    else:
        y_lo, y_span = np.zeros(ds.target_dim), np.ones(ds.target_dim)
    y = (ds.y - y_lo) / y_span
    f32 = np.float32
    return Splits(ds.name, protocol, seed, X[tr].astype(f32), y[tr].astype(f32), X[va].astype(f32),
                  y[va].astype(f32), X[te].astype(f32), y[te].astype(f32), y_lo, y_span, tr, va, te)
