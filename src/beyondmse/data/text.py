"""Text datasets from a CSV: one or more text columns -> feature vectors, by a named text encoder.

The default encoder, ``"tfidf-svd"``, needs no download: TF-IDF of word 1-2-grams
(scikit-learn's ``TfidfVectorizer``, sublinear term frequency, terms in at least 2 training
texts) followed by a truncated SVD to ``n_components`` dimensions (latent semantic analysis),
both **fitted on the training rows only** and applied to all rows. The features then go to the
usual MLP trunk. Because the encoder is fitted on one split, a text dataset carries that split
(``Dataset.split``): the file's ``split`` column, or one drawn once with ``split_seed``
(the ``default`` protocol's sizes: 20% test, then 15% of the rest for validation), so every
seed of a benchmark sees the same encoder; seeds then vary initialisation and batch order.

A pretrained encoder plugs in with :func:`register_text_encoder`: a function
``encode(texts, train) -> (N, d)`` given all texts (list of str) and the boolean mask of the
training rows (to fit anything it fits). For instance, with a sentence-transformers model that
is already on disk::

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer("/path/to/all-MiniLM-L6-v2")
    register_text_encoder("minilm", lambda texts, train: model.encode(texts))
    load_text_csv("reviews.csv", text="review", target="score", encoder="minilm")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .dataset import Dataset

__all__ = ["TEXT_ENCODERS", "register_text_encoder", "tfidf_svd", "load_text_csv", "text_dataset"]

TextEncoder = Callable[[list, np.ndarray], np.ndarray]
TEXT_ENCODERS: dict[str, TextEncoder] = {}


def register_text_encoder(name: str, encode: TextEncoder) -> TextEncoder:
    """Make ``encoder=name`` available to :func:`load_text_csv` (``encode(texts, train_mask) -> (N, d)``)."""
    if not callable(encode):
        raise ValueError(f"a text encoder must be callable, got {type(encode).__name__}")
    if name in TEXT_ENCODERS:
        raise ValueError(f"text encoder {name!r} is registered twice")
    TEXT_ENCODERS[name] = encode
    return encode


def tfidf_svd(texts: list, train: np.ndarray, n_components: int = 256, seed: int = 0) -> np.ndarray:
    """TF-IDF (1-2-grams, fitted on ``texts[train]``) -> truncated SVD to ``n_components``: ``(N, d)`` float32."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = np.asarray(train, dtype=bool)
    fit_texts = [t for t, keep in zip(texts, train) if keep]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    try:
        tfidf_train = vec.fit_transform(fit_texts)
    except ValueError as err:  # e.g. "empty vocabulary"
        raise ValueError(f"the TF-IDF encoder found no usable words in the {len(fit_texts)} training texts: {err}") from None
    d = max(1, min(n_components, tfidf_train.shape[1] - 1, len(fit_texts) - 1))
    svd = TruncatedSVD(n_components=d, random_state=seed).fit(tfidf_train)
    return svd.transform(vec.transform(texts)).astype(np.float32)


register_text_encoder("tfidf-svd", tfidf_svd)


def _fixed_split(n: int, seed: int) -> np.ndarray:
    perm = np.random.default_rng(seed).permutation(n)
    n_te = int(round(0.2 * n))
    n_va = int(round(0.15 * (n - n_te)))
    split = np.full(n, "train", dtype=object)
    split[perm[:n_te]] = "test"
    split[perm[n_te:n_te + n_va]] = "val"
    return split.astype(str)


def text_dataset(texts: Sequence[str], y, *, name: str, source: str, split=None, encoder: str = "tfidf-svd",
                 split_seed: int = 0, target_names: list[str] | None = None, feature_scaling: str | None = None,
                 **encoder_options) -> Dataset:
    """Encode ``texts`` (fitting on the training rows of ``split``) into a Dataset with targets ``y``.

    ``feature_scaling`` defaults to ``"none"`` for ``tfidf-svd`` (projections of unit-norm TF-IDF
    rows lie in [-1, 1]; min-max scaling would blow up the trailing components, whose range on
    the training rows can be tiny) and to ``"minmax"`` for other encoders.
    """
    if feature_scaling is None:
        feature_scaling = "none" if encoder == "tfidf-svd" else "minmax"
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    if not texts or not any(t.strip() for t in texts):
        raise ValueError(f"{source}: the text column is empty")
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; registered: {sorted(TEXT_ENCODERS)}")
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if len(y) != len(texts):
        raise ValueError(f"{source}: {len(texts)} texts but {len(y)} targets")
    if not np.isfinite(y).all():
        raise ValueError(f"{source}: targets contain NaN or inf (first at row {int(np.argwhere(~np.isfinite(y))[0, 0])})")
    split = _fixed_split(len(texts), split_seed) if split is None else np.asarray(split).astype(str)
    bad = sorted(set(split) - {"train", "val", "test"})
    if bad:
        raise ValueError(f"{source}: split values must be train/val/test, got {bad[:3]}")
    X = np.asarray(TEXT_ENCODERS[encoder](texts, split == "train", **encoder_options), dtype=np.float32)
    if X.ndim != 2 or len(X) != len(texts):
        raise ValueError(f"text encoder {encoder!r} returned shape {X.shape}, expected ({len(texts)}, d)")
    m = y.shape[1]
    return Dataset(name, X, y, [f"{encoder}:{i}" for i in range(X.shape[1])],
                   target_names or (["y"] if m == 1 else [f"y{j}" for j in range(m)]),
                   f"{source} (text -> {encoder}, fitted on the training split)", split=split,
                   feature_scaling=feature_scaling)


def load_text_csv(path: str | Path, *, text: str | Sequence[str], target: str | Sequence[str],
                  name: str | None = None, encoder: str = "tfidf-svd", split_column: str = "split",
                  split_seed: int = 0, **encoder_options) -> Dataset:
    """A CSV (or .csv.gz) with text column(s) ``text`` (joined by ``" | "``) and target column(s)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as CSV: {err}") from None
    texts_cols = [text] if isinstance(text, str) else list(text)
    targets = [target] if isinstance(target, str) else list(target)
    missing = [c for c in (*texts_cols, *targets) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {list(frame.columns)}")
    parts = frame[texts_cols].astype(object).where(frame[texts_cols].notna(), "").astype(str)
    joined = parts.apply(lambda row: " | ".join(s for s in row if s.strip()), axis=1).tolist() if len(frame) else []
    y = frame[targets].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    split = frame[split_column].to_numpy(str) if split_column in frame.columns else None
    return text_dataset(joined, y, name=name or path.name.split(".")[0], source=str(path), split=split,
                        encoder=encoder, split_seed=split_seed, target_names=targets, **encoder_options)
