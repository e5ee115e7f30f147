"""Diagnostics of the tightness family: the learned feature manifold and the feature-similarity
matrix sorted by target (the tightness paper's Figures 1 and 4).

Both functions take embeddings ``z`` (N, d) and targets ``y`` (N,) or (N, m) as arrays or
tensors, draw on a given or new matplotlib Axes, and return it. They import matplotlib
lazily, so the rest of the library does not need it. Both need trained embeddings, which the
results store does not keep, so :func:`report_figures` (the report's hook) draws nothing.
"""

from __future__ import annotations

import numpy as np

from ._mpl import pyplot

__all__ = ["project_features", "plot_feature_manifold", "plot_similarity_matrix", "target_colour", "report_figures"]


def _as_array(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"{name} must have shape (N,) or (N, k) with N >= 1, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def _subsample(n: int, max_points: int | None, seed: int) -> np.ndarray:
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def target_colour(y) -> np.ndarray:
    """A scalar per sample to colour by: the target itself for m = 1, else its first principal
    component (so nearby targets get nearby colours)."""
    y = _as_array(y, "y")
    if y.shape[1] == 1:
        return y[:, 0]
    yc = y - y.mean(0)
    _, _, vt = np.linalg.svd(yc, full_matrices=False)
    return yc @ vt[0]


def project_features(z, dim: int = 2) -> np.ndarray:
    """PCA projection of ``z`` (N, d) onto its top ``dim`` (2 or 3) principal axes, (N, dim)."""
    z = _as_array(z, "z")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    zc = z - z.mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    out = zc @ vt[:dim].T
    if out.shape[1] < dim:  # fewer feature dimensions than requested
        out = np.pad(out, ((0, 0), (0, dim - out.shape[1])))
    return out


def plot_feature_manifold(z, y, ax=None, dim: int = 2, max_points: int | None = 2000, seed: int = 0,
                          title: str | None = None, cmap: str = "viridis"):
    """Scatter the PCA projection of the features, coloured by target (``target_colour``).

    A tight representation shows a thin curve/surface with colours ordered along it; a loose
    one shows a blob where colours mix.
    """
    plt = pyplot()

    z, y = _as_array(z, "z"), _as_array(y, "y")
    if len(z) != len(y):
        raise ValueError(f"z has {len(z)} rows but y has {len(y)}")
    idx = _subsample(len(z), max_points, seed)
    p = project_features(z[idx], dim)
    c = target_colour(y[idx])
    if ax is None:
        fig = plt.figure(figsize=(4.5, 4))
        ax = fig.add_subplot(111, projection="3d" if dim == 3 else None)
    if dim == 3:
        sc = ax.scatter(p[:, 0], p[:, 1], p[:, 2], c=c, s=4, cmap=cmap)
    else:
        sc = ax.scatter(p[:, 0], p[:, 1], c=c, s=4, cmap=cmap)
    ax.figure.colorbar(sc, ax=ax, shrink=0.8, label="target" if y.shape[1] == 1 else "target (1st PC)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "feature manifold")
    return ax


def plot_similarity_matrix(z, y, ax=None, max_points: int | None = 500, seed: int = 0,
                           title: str | None = None, cmap: str = "magma"):
    """Cosine-similarity matrix of the features with samples sorted by target (``target_colour``).

    Ordinal features give a band that decays smoothly away from the diagonal.
    """
    plt = pyplot()

    z, y = _as_array(z, "z"), _as_array(y, "y")
    if len(z) != len(y):
        raise ValueError(f"z has {len(z)} rows but y has {len(y)}")
    idx = _subsample(len(z), max_points, seed)
    z = z[idx]
    order = np.argsort(target_colour(y[idx]), kind="stable")
    zn = z[order] / np.maximum(np.linalg.norm(z[order], axis=1, keepdims=True), 1e-12)
    sim = zn @ zn.T
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(sim, cmap=cmap, vmin=-1 if sim.min() < 0 else 0, vmax=1, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    ax.set_xlabel("samples sorted by target")
    ax.set_ylabel("samples sorted by target")
    ax.set_title(title or "feature similarity")
    return ax


def report_figures(records, out_dir) -> list:
    """The report's hook. The feature manifold and the similarity matrix need trained embeddings;
    the store keeps metrics, not models, so there is nothing to draw from records alone."""
    return []
