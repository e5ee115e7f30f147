"""Image datasets from files: an ``.npz`` of arrays, or a folder of images with a CSV of targets.

Both return a :class:`~beyondmse.data.Dataset` whose ``X`` is ``(N, C, H, W)`` float32 in
[0, 1] (or standardised, see below), ready for the CNN trunk or a pretrained backbone.

``.npz`` keys: ``x`` (``N x H x W`` or ``N x H x W x C`` uint8, C in {1, 3}), ``y`` (``N`` or
``N x m``), optionally ``split`` (``N`` strings ``train``/``val``/``test``).

Folder: a CSV (default ``<folder>/targets.csv``) with a column naming each image file
(relative to the folder, default column ``file``), the target column(s) and optionally a
``split`` column. Images are read with Pillow and converted to RGB.

Dataset settings (both loaders):

* ``resize=(H, W)`` or ``resize=S``: bilinear (antialiased) resize of every image; a folder of
  images of different sizes needs it;
* ``standardize=True``: per-channel standardisation, ``(x - mean_c) / std_c``, with the
  statistics of the training rows (the ``split`` rows marked ``train``, or all rows when the
  file has no split; recorded in ``extras``). Leave it off for a pretrained backbone, which
  applies the standardisation it was trained with.

Every problem with a file is one ValueError line naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import Dataset

__all__ = ["load_image_npz", "load_image_folder", "images_to_dataset"]

SPLIT_NAMES = ("train", "val", "test")


def _size(resize: int | Sequence[int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    h, w = (resize, resize) if np.isscalar(resize) else tuple(resize)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"resize must be positive (H, W), got {resize!r}")
    return int(h), int(w)


def _check_split(split, n: int, where: str) -> np.ndarray | None:
    if split is None:
        return None
    split = np.asarray(split).astype(str)
    if split.shape != (n,):
        raise ValueError(f"{where}: split has shape {split.shape}, expected ({n},)")
    bad = sorted(set(split) - set(SPLIT_NAMES))
    if bad:
        raise ValueError(f"{where}: split values must be train/val/test, got {bad[:3]}")
    return split


def images_to_dataset(images: np.ndarray, y: np.ndarray, *, name: str, source: str, split=None,
                      target_names: list[str] | None = None, resize=None, standardize: bool = False) -> Dataset:
    """``images (N, H, W[, C])`` uint8 + targets ``(N[, m])`` -> Dataset with X ``(N, C, H', W')``."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{source}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"{source}: images must be N x H x W or N x H x W x C with C in (1, 3) and N >= 1, "
                         f"got shape {images.shape}")
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != len(images):
        raise ValueError(f"{source}: targets have shape {y.shape}, expected ({len(images)},) or ({len(images)}, m)")
    if not np.isfinite(y).all():
        raise ValueError(f"{source}: targets contain NaN or inf (first at row {int(np.argwhere(~np.isfinite(y))[0, 0])})")
    split = _check_split(split, len(images), source)
    X = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    size = _size(resize)
    if size is not None and size != X.shape[-2:]:
        import torch
        import torch.nn.functional as F

        X = F.interpolate(torch.from_numpy(X), size=size, mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1).numpy()
    extras: dict = {}
    if standardize:
        rows = X if split is None else X[split == "train"]
        if len(rows) == 0:
            raise ValueError(f"{source}: no training rows to compute the channel statistics from")
        mean = rows.mean(axis=(0, 2, 3), keepdims=True)
        std = rows.std(axis=(0, 2, 3), keepdims=True)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        X = (X - mean) / std
        extras.update(channel_mean=mean.ravel().tolist(), channel_std=std.ravel().tolist())
    m = y.shape[1]
    return Dataset(name, X, y, ["pixels"], target_names or (["y"] if m == 1 else [f"y{j}" for j in range(m)]),
                   source, split=split, extras=extras, feature_scaling="none")


def load_image_npz(path: str | Path, *, name: str | None = None, resize=None, standardize: bool = False) -> Dataset:
    """Load ``x``, ``y`` and optional ``split`` from an ``.npz`` (see the module docstring)."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as .npz: {err}") from None
    with npz:
        missing = [k for k in ("x", "y") if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; an image .npz holds x (N x H x W[x C] uint8), "
                             f"y (N[x m]) and optionally split; found {npz.files}")
        x, y = npz["x"], npz["y"]
        split = npz["split"] if "split" in npz.files else None
    return images_to_dataset(x, y, name=name or path.stem, source=str(path), split=split,
                             resize=resize, standardize=standardize)


def load_image_folder(folder: str | Path, target: str | list[str], *, csv: str | Path | None = None,
                      image_column: str = "file", split_column: str = "split", name: str | None = None,
                      resize=None, standardize: bool = False) -> Dataset:
    """Images of ``folder`` listed in a CSV (default ``folder/targets.csv``) with their targets."""
    import pandas as pd
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    csv = Path(csv) if csv is not None else folder / "targets.csv"
    if not csv.is_file():
        raise ValueError(f"no target CSV {csv}: an image folder needs one (column {image_column!r} + target column(s))")
    frame = pd.read_csv(csv)
    targets = [target] if isinstance(target, str) else list(target)
    missing = [c for c in (image_column, *targets) if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv}: no column(s) {missing}; columns are {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{csv} lists no images")
    size = _size(resize)
    images = []
    for file in frame[image_column].astype(str):
        path = folder / file
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from None
        if images[-1].shape != images[0].shape:
            raise ValueError(f"image {path} is {images[-1].shape[1]}x{images[-1].shape[0]}, the first is "
                             f"{images[0].shape[1]}x{images[0].shape[0]}; pass resize=(H, W)")
    y = frame[targets].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    split = frame[split_column].to_numpy(str) if split_column in frame.columns else None
    return images_to_dataset(np.stack(images), y, name=name or folder.name, source=f"{folder} ({csv.name})",
                             split=split, target_names=targets, standardize=standardize)
