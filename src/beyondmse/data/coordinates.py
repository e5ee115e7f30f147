"""The coordinate-prediction task of PH-Reg (ICML 2024) and the tightness paper (Table 3).

3,000 points on a manifold in R^3 are the targets (their 3-D coordinates). The 100-D input
holds four linear combinations of the point itself, ``(x+y+z, x+y-z, x-y+z, -x+y+z)``,
followed by the same four combinations of 24 other, independently drawn points of the same
manifold (nuisance dimensions unrelated to the target row). The split is fixed: rows 0-99
train, 100-199 validation, 200-2999 test; targets are kept in raw units
(``target_scaling="none"``), so MSEs are comparable with the published ones, and so are the
inputs (``feature_scaling="none"``), as in PH-Reg's released script.

Manifolds (following the released generator, ``needylove/PH-Reg/data``):

* ``circle``  -- radius 1, 1,000 evenly spaced angles sampled with replacement, the plane
  randomly rotated into 3-D (every draw, nuisance ones included, gets its own rotation);
* ``torus``   -- tube-centre distance c = 4, tube radius a = 1, angles uniform on [0, 2 pi);
* ``mammoth`` -- points sampled without replacement from the 3-D mammoth point cloud
  ``mammoth_points.csv.gz`` (a 50k-point subsample; PH-Reg sampled the full scan, which is
  not distributable, so numbers are comparable in scale but not identical).

Registered as ``coords-circle``, ``coords-torus`` and ``coords-mammoth`` (seed 0). The
shipped PH-Reg files themselves are registered by the lead as ``circle``, ``torus`` and
``swiss_roll``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .registry import register_dataset

SHAPES = ("circle", "torus", "mammoth")
MAMMOTH_FILE = "mammoth_points.csv.gz"
N_POINTS = 3000
N_NUISANCE = 24
SPLIT_SIZES = (100, 100, 2800)

__all__ = ["make_coordinates", "sample_manifold", "combinations", "SHAPES"]


def _find_file(filename: str) -> Path | None:
    try:
        from .sources import find_data_file
    except ImportError:  # pragma: no cover - the lead's lookup is missing
        find_data_file = None
    if find_data_file is not None:
        path = find_data_file(filename)
        if path is not None:
            return Path(path)
    env = os.environ.get("BEYONDMSE_DATA")
    if env and (Path(env).expanduser() / filename).is_file():
        return Path(env).expanduser() / filename
    return None


_MAMMOTH_CACHE: dict[str, np.ndarray] = {}


def _mammoth_cloud() -> np.ndarray:
    path = _find_file(MAMMOTH_FILE)
    if path is None:
        raise ValueError(f"{MAMMOTH_FILE} not found; set BEYONDMSE_DATA to a folder that holds it")
    key = str(path)
    if key not in _MAMMOTH_CACHE:
        import pandas as pd

        _MAMMOTH_CACHE[key] = pd.read_csv(path)[["x", "y", "z"]].to_numpy(np.float64)
    return _MAMMOTH_CACHE[key]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    # the released generator's embedding: the Q factor of a uniform random matrix
    q, _ = np.linalg.qr(rng.random((3, 3)))
    return q


def sample_manifold(shape: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (n, 3) of ``shape`` and their intrinsic parameter (n,) (NaN if none)."""
    if shape == "circle":
        angles = rng.choice(np.linspace(0.0, 2.0 * np.pi, num=1000), size=n)
        flat = np.stack([np.cos(angles), np.sin(angles), np.zeros(n)], axis=1)
        return flat @ _random_rotation(rng), angles
    if shape == "torus":
        c, a = 4.0, 1.0
        theta = rng.random(n) * 2.0 * np.pi
        phi = rng.random(n) * 2.0 * np.pi
        pts = np.stack([(c + a * np.cos(theta)) * np.cos(phi), (c + a * np.cos(theta)) * np.sin(phi),
                        a * np.sin(theta)], axis=1)
        return pts, phi
    if shape == "mammoth":
        cloud = _mammoth_cloud()
        if n > len(cloud):
            raise ValueError(f"the mammoth cloud has {len(cloud)} points, asked for {n}")
        return cloud[rng.choice(len(cloud), size=n, replace=False)], np.full(n, np.nan)
    raise ValueError(f"unknown manifold {shape!r}; expected one of {SHAPES}")


def combinations(points: np.ndarray) -> np.ndarray:
    """The four input combinations ``(x+y+z, x+y-z, x-y+z, -x+y+z)`` of points (n, 3) -> (n, 4)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return np.stack([x + y + z, x + y - z, x - y + z, -x + y + z], axis=1)


def make_coordinates(shape: str, seed: int = 0, n: int = N_POINTS, n_nuisance: int = N_NUISANCE) -> Dataset:
    """Generate the coordinate-prediction task on ``shape``, deterministically from ``seed``.

    Parameters
    ----------
    shape : {"circle", "torus", "mammoth"}
    seed : int
        Seeds every random draw; the same seed gives the same arrays.
    n : int, default 3000
        Number of points; the first 100 are train, the next 100 validation, the rest test.
    n_nuisance : int, default 24
        Number of independent nuisance draws; the input has ``4 * (1 + n_nuisance)`` columns.

    Returns
    -------
    Dataset
        ``X`` (n, 100), ``y`` (n, 3) raw coordinates, ``split`` per row, ``target_scaling="none"``,
        ``extras["color"]`` the intrinsic parameter (angle) where the manifold has one.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown manifold {shape!r}; expected one of {SHAPES}")
    if n < sum(SPLIT_SIZES[:2]) + 1:
        raise ValueError(f"need n > {sum(SPLIT_SIZES[:2])} points for the 100/100/rest split, got {n}")
    if n_nuisance < 0:
        raise ValueError(f"n_nuisance must be >= 0, got {n_nuisance}")
    rng = np.random.default_rng(seed)
    points, color = sample_manifold(shape, n, rng)
    blocks = [combinations(points)] + [combinations(sample_manifold(shape, n, rng)[0]) for _ in range(n_nuisance)]
    X = np.concatenate(blocks, axis=1)
    split = np.array(["train"] * SPLIT_SIZES[0] + ["val"] * SPLIT_SIZES[1]
                     + ["test"] * (n - SPLIT_SIZES[0] - SPLIT_SIZES[1]))
    source = "generated" if shape != "mammoth" else f"generated from {_find_file(MAMMOTH_FILE)}"
    return Dataset(
        name=f"coords-{shape}", X=X, y=points, feature_names=[f"x{i}" for i in range(X.shape[1])],
        target_names=["y0", "y1", "y2"], source=source, split=split, target_scaling="none",
        feature_scaling="none", extras={"color": color, "seed": seed},
    )


def _where_mammoth() -> str:
    path = _find_file(MAMMOTH_FILE)
    return f"generated from {path}" if path else f"not found (put {MAMMOTH_FILE} in $BEYONDMSE_DATA)"


_SUMMARIES = {
    "circle": "coordinate prediction on a unit circle rotated into 3-D (100-D input, 3-D target)",
    "torus": "coordinate prediction on a torus c=4, a=1 (100-D input, 3-D target)",
    "mammoth": "coordinate prediction on the 3-D mammoth point cloud (100-D input, 3-D target)",
}

for _shape in SHAPES:
    register_dataset(f"coords-{_shape}", _SUMMARIES[_shape], lambda s=_shape: make_coordinates(s, seed=0),
                     _where_mammoth if _shape == "mammoth" else (lambda: "generated"),
                     "3000 rows, split 100/100/2800")
