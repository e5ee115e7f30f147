"""The datasets this package knows by name (the files of ``shared/datasets/MANIFEST.md``).

Each tabular set comes in two versions:

* ``NAME`` -- every column, categorical ones encoded (what a user would expect);
* ``NAME-num`` -- the numeric-feature variant used by "Beyond Binning" (Grinsztajn et al.'s
  rule: numeric columns with at least 10 distinct values). Kept columns:
  ``diamonds-num`` carat, depth, table, x, y, z (6; paper: 6);
  ``wine_quality-num`` the 11 physico-chemical columns (paper: 7 -- its extra selection is
  not documented, so ours keeps all 11);
  ``ailerons-num`` 33 of 40 (the 7 diffSeTime columns with < 10 values dropped; paper 33);
  ``elevators-num`` 16 of 18 (diffSaTime2, diffSaTime4 dropped; paper 16);
  ``cpu_act-num`` all 21 (paper 21); ``bike_sharing-num`` mnth, hr, temp, atemp, hum,
  windspeed (paper 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dataset import Dataset
from .registry import register_dataset
from .sources import find_data_file, search_dirs, verify_sha256, where
from .tables import frame_to_dataset, paper_numeric_columns, read_table

DIAMOND_ORDERS = {
    "cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"],
    "color": ["J", "I", "H", "G", "F", "E", "D"],  # worst -> best
    "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
}


@dataclass(frozen=True)
class TableSpec:
    name: str
    filename: str
    targets: tuple[str, ...]
    sha256: str
    summary: str
    rows: int
    paper_sizes: tuple[int, int, int] | None = None
    categorical_orders: dict = field(default_factory=dict)


TABLES = [
    TableSpec("diamonds", "diamonds.csv.gz", ("price",),
              "ab11a58136e3e3253881cf4986b98991bb9074cd75a6bb9a2c5c84da61099bf4",
              "ggplot2 diamonds price (DM); embedded in the package", 53940,
              (43152, 5394, 5394), DIAMOND_ORDERS),
    TableSpec("wine_quality", "wine_quality.csv.gz", ("quality",),
              "41922d6fb8dd51edcf8f9ff244ecbbb66ebe4b74977c6063cef53ee8b34c5748",
              "UCI wine quality, red + white (WN)", 6497, (5197, 650, 650)),
    TableSpec("ailerons", "ailerons.csv.gz", ("goal",),
              "4f20013af79f40088e521f34ae4a5eb497e1c642cc49f4aaf4d3bd563179194d",
              "Torgo's Ailerons (AE)", 13750, (11000, 1375, 1375)),
    TableSpec("elevators", "elevators.csv.gz", ("Goal",),
              "12168b9de8ea803efb7e2aac5efe15b2a995224b1cf36c47f59861ec8c52f980",
              "Torgo's Elevators (EL)", 16599, (13279, 1660, 1660)),
    TableSpec("cpu_act", "cpu_act.csv.gz", ("usr",),
              "bfc2f1adabcfbb115fecb8feada82bec4805a195f3caf3799bc37aff0997401c",
              "DELVE computer activity (CA)", 8192, (6554, 819, 819)),
    TableSpec("bike_sharing", "bike_sharing_hourly.csv.gz", ("cnt",),
              "b93c1979e9da9b259e23a0e80fa283fcbaf58bcd2b8228941f972d849be569e2",
              "UCI bike sharing, hourly counts (BS)", 17379, (13903, 1738, 1738)),
]

COORDINATE_FILES = [
    ("circle", "circle.csv.gz", "e88927bb2db15401b3f3d8d0a738ffaef50f251a15ec5cffcb964287283bce7d"),
    ("torus", "torus.csv.gz", "f2792d954835721d87d6aea5f6d98d147b8cb29e37f9983880b78bc79e63c951"),
    ("swiss_roll", "swiss_roll.csv.gz", "35e0d9b8f4b9e9bf56d47731e84813d27a47a966cdb7963f9d3d09c028e738d1"),
]


TATE_TEXT_FILE = ("tate_text.csv.gz", "b7c83e994408db37465b38b8fef2c30a86d212dde1e988cced4d651be081739a")


def locate(filename: str, sha256: str | None):
    path = find_data_file(filename)
    if path is None:
        looked = ", ".join(f"{label} ({folder})" for label, folder in search_dirs())
        raise ValueError(f"{filename} not found in: {looked}; set BEYONDMSE_DATA to the folder that holds it")
    verify_sha256(path, sha256)
    return path


def _load_table(spec: TableSpec, numeric: bool) -> Dataset:
    path = locate(spec.filename, spec.sha256)
    frame = read_table(path)
    features = paper_numeric_columns(frame, spec.targets) if numeric else None
    return frame_to_dataset(frame, list(spec.targets), name=spec.name + ("-num" if numeric else ""),
                            source=str(path), features=features,
                            categorical_orders=spec.categorical_orders, paper_sizes=spec.paper_sizes)


def _load_coordinates(name: str, filename: str, sha256: str) -> Dataset:
    path = locate(filename, sha256)
    frame = read_table(path)
    xs = [c for c in frame.columns if c.startswith("x")]
    extras = {"color": frame["color"].to_numpy()} if "color" in frame.columns else {}
    return frame_to_dataset(frame, ["y0", "y1", "y2"], name=name, source=str(path), features=xs,
                            split=frame["split"].to_numpy(str), target_scaling="none", extras=extras)


def _load_retinamnist() -> Dataset:
    path = locate("retinamnist.npz", "254915f5f0a2074665c4676356824cf4ef4a3bcab233894b4bafcaf48962bd69")
    with np.load(path) as npz:
        parts = [(s, npz[f"{s}_images"], npz[f"{s}_labels"]) for s in ("train", "val", "test")]
    X = np.concatenate([p[1] for p in parts]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.concatenate([p[2] for p in parts]).astype(np.float64)
    split = np.concatenate([[s] * len(p[1]) for s, p in zip(("train", "val", "test"), parts)])
    return Dataset("retinamnist", X, y, ["pixels"], ["grade"], str(path), split=split)


def _load_tate_text(n_features: int = 512) -> Dataset:
    # Stateless hashing of word n-grams: no vocabulary is fitted, so no test text leaks into
    # the features; a learned text encoder is out of scope for a tabular library.
    from sklearn.feature_extraction.text import HashingVectorizer

    path = locate(*TATE_TEXT_FILE)
    frame = read_table(path)
    text = (frame["title"].astype(str) + " | " + frame["medium"].astype(str) + " | "
            + frame["artist"].astype(str))
    vec = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm="l2")
    X = vec.transform(text).toarray().astype(np.float32)
    return Dataset("tate_text", X, frame["year"].to_numpy(np.float64),
                   [f"hash{i}" for i in range(n_features)], ["year"], str(path))


def _load_tate_tfidf() -> Dataset:
    """Year from title and medium: TF-IDF -> truncated SVD (256) fitted on the training rows of a
    split drawn once with seed 0 (:mod:`beyondmse.data.text`)."""
    from .text import load_text_csv

    path = locate(*TATE_TEXT_FILE)
    return load_text_csv(path, text=["title", "medium"], target="year", name="tate_text-tfidf")


def _load_diamonds_subsample(rows: int = 10_000) -> Dataset:
    """A fixed subsample of the embedded diamonds (all columns), small enough for the demo."""
    full = _load_table(TABLES[0], numeric=False)
    idx = np.sort(np.random.default_rng(0).choice(full.n_samples, rows, replace=False))
    return Dataset(f"diamonds-{rows // 1000}k", full.X[idx], full.y[idx], full.feature_names, full.target_names,
                   f"{full.source} (fixed {rows}-row subsample, numpy seed 0)")


def _load_diamonds_xy() -> Dataset:
    """A real two-dimensional target: a diamond's length and width ``(x, y)`` in mm.

    Inputs are carat, cut, colour, clarity, depth %, table % and price (``z``, the third
    dimension, is left out: with depth % it nearly fixes ``(x, y)``). Rows with a zero dimension
    (unmeasured, 20 rows) or a width above 20 mm (2 recording errors, up to 58.9 mm) are dropped,
    because min-max target scaling would otherwise squeeze every real diamond into a few cells
    of a 25 x 25 codec grid.
    """
    spec = TABLES[0]
    path = locate(spec.filename, spec.sha256)
    frame = read_table(path)
    keep = (frame[["x", "y", "z"]] > 0).all(axis=1) & (frame["y"] <= 20)
    return frame_to_dataset(frame[keep].reset_index(drop=True), ["x", "y"], name="diamonds-xy",
                            source=f"{path} (x, y as targets)", drop=("z",),
                            categorical_orders=spec.categorical_orders)


def register_builtin() -> None:
    for spec in TABLES:
        size = f"{spec.rows} rows"
        register_dataset(spec.name, spec.summary + ", all columns",
                         lambda s=spec: _load_table(s, numeric=False), lambda s=spec: where(s.filename), size)
        register_dataset(spec.name + "-num", spec.summary + ", paper numeric-feature variant",
                         lambda s=spec: _load_table(s, numeric=True), lambda s=spec: where(s.filename), size)
    for name, filename, sha in COORDINATE_FILES:
        register_dataset(name, f"PH-Reg synthetic {name} (3-D coordinates from 100-D input)",
                         lambda n=name, f=filename, s=sha: _load_coordinates(n, f, s),
                         lambda f=filename: where(f), "3000 rows, split 100/100/2800")
    register_dataset("diamonds-10k", "diamonds, all columns, a fixed 10,000-row subsample (the demo set; "
                     "default 80/20 then 85/15 split)", _load_diamonds_subsample,
                     lambda: where("diamonds.csv.gz"), "10000 rows")
    register_dataset("diamonds-xy", "diamonds, a real 2-D target: length and width (x, y, mm) from carat, cut, "
                     "colour, clarity, depth, table and price (k = 625 = 25 x 25 codec grid)", _load_diamonds_xy,
                     lambda: where("diamonds.csv.gz"), "53918 rows")
    register_dataset("retinamnist", "RetinaMNIST 28x28 RGB, diabetic-retinopathy grade 0-4",
                     _load_retinamnist, lambda: where("retinamnist.npz"), "1600 images")
    register_dataset("tate_text", "Tate artworks: year from title/medium/artist text (hashed n-grams)",
                     _load_tate_text, lambda: where("tate_text.csv.gz"), "4284 rows")
    register_dataset("tate_text-tfidf", "Tate artworks: year from title and medium, TF-IDF -> SVD(256) fitted on "
                     "the training split (fixed split, seed 0)", _load_tate_tfidf, lambda: where("tate_text.csv.gz"),
                     "4284 rows, split 2913/514/857")
