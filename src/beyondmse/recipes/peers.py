"""Peer baselines a user would pick instead of a deep head, run on the same splits and scaling.

Registered into :data:`beyondmse.recipes.PEERS`; :mod:`beyondmse.experiment` fits them on the
training split, picks ``select``-ed hyperparameters on the validation split only, and scores
the test split exactly like the deep recipes. scikit-learn is imported when a peer is built,
not when the registry is (it costs about a second of start-up).
"""

from __future__ import annotations

from .base import PeerBaseline, register


def _hgb(knobs, seed):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.multioutput import MultiOutputRegressor

    # HistGradientBoosting is single-output; wrap it for m > 1 (experiment passes 2-D y).
    return MultiOutputRegressor(HistGradientBoostingRegressor(
        max_iter=knobs["max_iter"], learning_rate=knobs["learning_rate"], max_leaf_nodes=knobs["max_leaf_nodes"],
        min_samples_leaf=knobs["min_samples_leaf"], l2_regularization=knobs["l2_regularization"],
        random_state=seed))


def _ridge(knobs, seed):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=knobs["alpha"])


def _knn(knobs, seed):
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor(n_neighbors=knobs["n_neighbors"], weights="distance")


register(PeerBaseline(
    "sk-hgb", "scikit-learn HistGradientBoostingRegressor (early stopping on its own 10% holdout)",
    _hgb, knobs={"max_iter": 500, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                 "l2_regularization": 0.0},
    search={"learning_rate": ("log", 0.01, 0.3), "max_leaf_nodes": ("int", 8, 128),
            "min_samples_leaf": ("int", 2, 100), "l2_regularization": ("log", 1e-6, 10.0)},
))
register(PeerBaseline("sk-ridge", "scikit-learn Ridge regression on the scaled features", _ridge, knobs={"alpha": 1.0},
                      search={"alpha": ("log", 1e-4, 100.0)}))
register(PeerBaseline(
    "sk-knn", "scikit-learn KNeighborsRegressor, k chosen on the validation split",
    _knn, knobs={"n_neighbors": 10}, select=("n_neighbors", (1, 3, 5, 10, 20, 50)),
    search={"n_neighbors": ("int", 1, 64)},
))

__all__: list[str] = []
