"""The in-memory dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Features and raw targets of one dataset, before any split or scaling.

    Attributes
    ----------
    name : str
    X : ndarray, float32, shape (N, p) for tables or (N, C, H, W) for images
        Categorical columns are already encoded (ordinal codes for ordered categories,
        one-hot otherwise).
    y : ndarray, float64, shape (N, m)
        Targets in their original units.
    feature_names, target_names : list of str
    source : str
        Where the data came from (a path, ``embedded``, ``openml:ID``, ``generated``).
    split : ndarray of str or None, shape (N,)
        A predefined split (``"train"``, ``"val"``, ``"test"`` per row), used by the
        ``"predefined"`` protocol.
    paper_sizes : (int, int, int) or None
        Fixed train/val/test sizes of the paper protocol for this dataset.
    target_scaling : {"minmax", "none"}
        ``"minmax"`` (default) scales targets to [0, 1] on the training split (the papers'
        convention; metrics are then on that scale); ``"none"`` keeps raw units (e.g. the
        coordinate-prediction tasks, whose published MSEs are in raw coordinates).
    feature_scaling : {"minmax", "none"}
        ``"minmax"`` (default) scales feature columns to [0, 1] on the training split;
        ``"none"`` keeps them as they are (the coordinate tasks: PH-Reg's released script feeds
        the raw inputs).
    extras : dict
        Anything else a task carries (e.g. the intrinsic ``color`` parameter of a manifold).
    missing : {"impute", "refuse"}
        ``"impute"`` (default): NaN feature values of a table are allowed and
        :func:`~beyondmse.data.make_splits` fills them with training-split medians plus indicator
        columns (:mod:`beyondmse.data.missing`); ``"refuse"``: NaN features raise ValueError.
        NaN targets and infinite values always raise.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    source: str
    split: np.ndarray | None = None
    paper_sizes: tuple[int, int, int] | None = None
    target_scaling: str = "minmax"
    extras: dict = field(default_factory=dict)
    feature_scaling: str = "minmax"
    missing: str = "impute"

    def __post_init__(self):
        from .missing import check_missing_policy

        self.X = np.asarray(self.X, dtype=np.float32)
        y = np.asarray(self.y, dtype=np.float64)
        self.y = y[:, None] if y.ndim == 1 else y
        check_missing_policy(self.missing)
        validate_arrays(self.X, self.y, what=f"dataset {self.name!r}",
                        allow_missing=self.missing == "impute" and self.X.ndim == 2)
        if self.target_scaling not in ("minmax", "none"):
            raise ValueError(f"target_scaling must be 'minmax' or 'none', got {self.target_scaling!r}")
        if self.feature_scaling not in ("minmax", "none"):
            raise ValueError(f"feature_scaling must be 'minmax' or 'none', got {self.feature_scaling!r}")

    @property
    def n_samples(self) -> int:
        return len(self.X)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def target_dim(self) -> int:
        return self.y.shape[1]


def validate_arrays(X: np.ndarray, y: np.ndarray, what: str = "data", allow_missing: bool = False) -> None:
    """ValueError naming the problem for empty data, mismatched lengths or NaN/inf values
    (NaN features are accepted with ``allow_missing``; inf and NaN targets never are)."""
    if X.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if X.ndim < 2 or X.shape[1] == 0:
        raise ValueError(f"{what} has no feature columns (X shape {X.shape})")
    if y.ndim != 2 or y.shape[1] == 0:
        raise ValueError(f"{what} targets must be (N, m) with m >= 1, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: features have {X.shape[0]} rows but targets have {y.shape[0]}")
    bad_x = np.isinf(X) if allow_missing else ~np.isfinite(X)
    if bad_x.any():
        bad = np.argwhere(bad_x.reshape(len(X), -1))[0]
        raise ValueError(f"{what} features contain NaN or inf (first at row {bad[0]}, column {bad[1]})")
    if not np.isfinite(y).all():
        bad = np.argwhere(~np.isfinite(y))[0]
        raise ValueError(f"{what} targets contain NaN or inf (first at row {bad[0]})")
