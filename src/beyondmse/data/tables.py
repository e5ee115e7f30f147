"""Turning a table (pandas DataFrame) into a :class:`Dataset`: target selection, categorical
encoding and the numeric "paper" variant (Grinsztajn et al.'s numerical-feature rule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .dataset import Dataset

if TYPE_CHECKING:  # pandas is imported where a table is read, so ``import beyondmse`` stays light
    import pandas as pd

#: Grinsztajn et al. (2022) treat a numeric column with fewer unique values than this as
#: categorical and drop it from the numerical-feature benchmarks.
MIN_UNIQUE_NUMERIC = 10

#: the level a missing value of a string column becomes (its one-hot column is ``<col>_(missing)``)
MISSING_LEVEL = "(missing)"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file; ValueError for other formats."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such data file: {path}")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz")):
        sep = "\t" if ".tsv" in suffixes else ","
        return pd.read_csv(path, sep=sep)
    if suffixes.endswith(".parquet"):
        try:
            return pd.read_parquet(path)
        except ImportError as err:
            raise ValueError(f"reading {path} needs pyarrow: pip install pyarrow") from err
    raise ValueError(f"unsupported file type {path.name!r}; use .csv, .csv.gz, .tsv or .parquet")


def paper_numeric_columns(frame: pd.DataFrame, targets: Sequence[str]) -> list[str]:
    """Columns kept by the numeric paper variant: numeric and with >= ``MIN_UNIQUE_NUMERIC`` values."""
    import pandas as pd

    keep = []
    for col in frame.columns:
        if col in targets or not pd.api.types.is_numeric_dtype(frame[col]):
            continue
        if frame[col].nunique() >= MIN_UNIQUE_NUMERIC:
            keep.append(col)
    return keep


def frame_to_dataset(frame: pd.DataFrame, targets: str | Sequence[str], *, name: str, source: str,
                     features: Sequence[str] | None = None, drop: Sequence[str] = (),
                     categorical_orders: Mapping[str, Sequence[str]] | None = None,
                     missing: str = "impute", **dataset_kwargs) -> Dataset:
    """Build a :class:`Dataset` from a DataFrame.

    Ordered categories (``categorical_orders``) become integer codes in that order; other
    string columns are one-hot encoded. A missing target value, a missing target column or a
    non-numeric target raise ValueError naming the column.

    Missing feature values (``missing="impute"``, the default; :mod:`beyondmse.data.missing`): a
    missing category is its own level (code -1 before an ordered category's codes, its own
    one-hot column ``<col>_(missing)`` for a string column); a missing number stays NaN and is
    imputed after the split, on the training rows, with an indicator column. ``missing="refuse"``
    raises ValueError naming the columns with gaps instead.
    """
    import pandas as pd

    from .missing import check_missing_policy

    check_missing_policy(missing)

    targets = [targets] if isinstance(targets, str) else list(targets)
    categorical_orders = dict(categorical_orders or {})
    if len(frame) == 0:
        raise ValueError(f"dataset {name!r} is empty")
    absent = [t for t in targets if t not in frame.columns]
    if absent:
        raise ValueError(f"target column(s) {absent} not in {name!r}; columns are {list(frame.columns)}")
    for t in targets:
        if not pd.api.types.is_numeric_dtype(frame[t]):
            raise ValueError(f"target column {t!r} of {name!r} is not numeric (dtype {frame[t].dtype})")
    if features is None:
        features = [c for c in frame.columns if c not in targets and c not in drop]
    else:
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise ValueError(f"feature column(s) {absent} not in {name!r}")
    if not features:
        raise ValueError(f"dataset {name!r} has no feature columns")
    gaps = frame[targets].isna().any()
    if gaps.any():
        raise ValueError(f"dataset {name!r} has missing values in target column(s) {gaps[gaps].index.tolist()}; "
                         "drop those rows first")
    gaps = frame[list(features)].isna().any()
    if missing == "refuse" and gaps.any():
        raise ValueError(f"dataset {name!r} has missing values in column(s) {gaps[gaps].index.tolist()} "
                         "(missing='impute' fills them: a category becomes its own level, a number the "
                         "training median with an indicator column)")
    parts, names = [], []
    for col in features:
        series = frame[col]
        if col in categorical_orders:
            order = list(categorical_orders[col])
            unknown = set(series.dropna().unique()) - set(order)
            if unknown:
                raise ValueError(f"column {col!r} has categories {sorted(unknown)} outside its order {order}")
            codes = series.map({v: i for i, v in enumerate(order)}).fillna(-1)  # missing: its own level
            parts.append(codes.to_numpy(np.float32)[:, None])
            names.append(col)
        elif pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            parts.append(series.to_numpy(np.float32)[:, None])
            names.append(col)
        else:
            labels = series.astype(str).where(series.notna(), MISSING_LEVEL)  # missing: its own level
            dummies = pd.get_dummies(labels, prefix=col, dtype=np.float32)
            parts.append(dummies.to_numpy())
            names.extend(dummies.columns)
    X = np.concatenate(parts, axis=1)
    y = frame[targets].to_numpy(np.float64)
    return Dataset(name=name, X=X, y=y, feature_names=names, target_names=targets, source=source,
                   missing=missing, **dataset_kwargs)
