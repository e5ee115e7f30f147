"""``load_dataset``: a registered name, ``openml:ID``, or a user CSV/Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import Dataset
from .missing import check_missing_policy
from .registry import DATASETS
from .sources import fetch_openml_frame
from .tables import frame_to_dataset, read_table


def load_dataset(name: str, *, target: str | list[str] | None = None, download: bool = True,
                 text: str | list[str] | None = None, missing: str = "impute", **options) -> Dataset:
    """Load a dataset by registered name, ``"openml:<id>"`` or file path.

    Parameters
    ----------
    name : str
        A name from ``beyondmse datasets`` (e.g. ``"diamonds"``, ``"diamonds-num"``),
        ``"openml:<id>"`` (downloaded once into the user cache), or a path to a CSV/Parquet file.
    target : str or list of str, optional
        Target column(s); required for files, optional for OpenML (defaults to its target).
    download : bool
        Allow OpenML downloads (the cache is always tried first).
    text : str or list of str, optional
        Text column(s) of a CSV file: the text becomes features (:func:`beyondmse.data.text.load_text_csv`).
    missing : {"impute", "refuse"}
        Missing feature values of a table: ``"impute"`` (a missing category is its own level, a
        missing number is filled after the split with the training median plus an indicator
        column; :mod:`beyondmse.data.missing`) or ``"refuse"`` (ValueError naming the columns).
        Missing targets are always an error.
    options
        Settings of the file loaders: ``resize``, ``standardize`` for an image ``.npz`` or folder
        (:mod:`beyondmse.data.images`), ``encoder``, ``n_components`` for text.

    An ``.npz`` path is an image dataset (``x``, ``y``, optional ``split``); a folder is a folder
    of images with ``targets.csv``.

    >>> ds = load_dataset("diamonds-num")
    >>> ds.X.shape, ds.target_names
    ((53940, 6), ['price'])
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if name in DATASETS:
        if target is not None:
            raise ValueError(f"dataset {name!r} has a fixed target; --target is for files and OpenML")
        if text is not None or options:
            raise ValueError(f"dataset {name!r} is registered with its settings; text= and {sorted(options)} are for files")
        check_missing_policy(missing)
        ds = DATASETS[name].load()
        if missing == "refuse" and ds.X.ndim == 2 and np.isnan(ds.X).any():
            bad = [ds.feature_names[j] for j in np.flatnonzero(np.isnan(ds.X).any(axis=0))]
            raise ValueError(f"dataset {name!r} has missing values in column(s) {bad}")
        return ds
    if name.startswith("openml:"):
        try:
            data_id = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"expected openml:<integer id>, got {name!r}") from None
        frame, meta = fetch_openml_frame(data_id, download=download)
        target = target or meta.get("target")
        if target is None:
            raise ValueError(f"OpenML dataset {data_id} has no default target; pass target=")
        return frame_to_dataset(frame, target, name=f"openml:{data_id}", source=f"openml:{data_id}", missing=missing)
    path = Path(name).expanduser()
    if path.suffix == ".npz":  # images: x, y, optional split (beyondmse.data.images)
        from .images import load_image_npz

        if target is not None:
            raise ValueError(f"an image .npz carries its targets (array y); drop --target for {name!r}")
        return load_image_npz(path, **options)
    if path.is_dir():  # a folder of images with a CSV of targets
        from .images import load_image_folder

        if target is None:
            raise ValueError(f"loading the image folder {name!r} needs a target column of its targets.csv (--target)")
        return load_image_folder(path, target, **options)
    if text is not None:  # text column(s) of a CSV -> features (beyondmse.data.text)
        from .text import load_text_csv

        if target is None:
            raise ValueError(f"loading the text file {name!r} needs a target column (--target COLUMN)")
        return load_text_csv(path, text=text, target=target, **options)
    if path.suffix or path.exists():
        if target is None:
            raise ValueError(f"loading the file {name!r} needs a target column (--target COLUMN)")
        return frame_to_dataset(read_table(path), target, name=path.name, source=str(path), missing=missing)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))} "
                     "(or openml:<id>, or a .csv/.parquet path)")
