"""Peer baselines for predictive uncertainty: conformal intervals around gradient boosting (MAPIE)
and quantile regression forests (quantile-forest).

What a user picks today when they want intervals from a tabular regressor. Both are run by
:mod:`beyondmse.experiment` on the same splits as the deep recipes and scored with the same
distribution metrics (:func:`beyondmse.metrics.distribution_report`):

* ``sk-mapie-hgb``: scikit-learn's ``HistGradientBoostingRegressor`` (the ``sk-hgb`` knobs)
  fitted on the training split, then MAPIE's split-conformal regressor (absolute residual score,
  ``prefit=True``) conformalized on the validation split -- the split our heads calibrate on.
  Its intervals are conformal already, so the run record carries only the calibrated
  (``_cqr``) coverage and width. Its "distribution" (for CRPS and the PIT) is the one MAPIE's
  intervals imply: the point prediction plus the symmetric conformal residual quantiles.
* ``sk-qrf``: ``RandomForestQuantileRegressor`` (Meinshausen 2006). Its raw intervals are the
  forest's quantiles; the calibrated ones come from the same CQR step as our heads.

Each estimator answers ``predict_distribution(X)`` with a
:class:`~beyondmse.distributions.Mixture` built from its quantiles at :data:`QUANTILE_LEVELS`
(:meth:`Mixture.from_quantiles`: piecewise-linear cdf through them), so the 80% and 90%
intervals are exactly the model's own. Scalar targets only.

The packages are an optional extra (``pip install 'beyondmse[uncertainty]'``); without them
building these peers raises ImportError saying so.

References
----------
1. N. Meinshausen, "Quantile Regression Forests", JMLR 7, 2006.
2. T. Cordier et al., "Flexible and Systematic Uncertainty Estimation with Conformal
   Prediction via the MAPIE library", COPA 2023.
"""

from __future__ import annotations

import numpy as np

from .base import PeerBaseline, register

#: quantile levels a peer's distribution is built from: 0.01 .. 0.99 plus the 95% interval's ends
QUANTILE_LEVELS = tuple(sorted({round(0.01 * i, 2) for i in range(1, 100)} | {0.025, 0.975}))


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"this peer needs {package!r}: pip install 'beyondmse[uncertainty]' "
                          f"(or pip install {package})") from err


def _scalar_target(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] != 1:
        raise ValueError(f"this uncertainty peer handles scalar targets only, got {y.shape[1]} columns")
    return y.reshape(-1)


class ConformalHGB:
    """HistGradientBoosting + MAPIE split conformal, calibrated by :meth:`calibrate`.

    ``fit(X, y)`` fits the booster; ``calibrate(X_cal, y_cal)`` conformalizes it on held-out
    data (the harness passes the validation split); ``predict_distribution(X)`` needs both.
    """

    #: the intervals are conformal: the harness reports them as calibrated, without CQR on top
    conformal = True

    def __init__(self, knobs: dict, seed: int):
        self.knobs, self.seed = dict(knobs), seed

    def fit(self, X, y):
        from sklearn.ensemble import HistGradientBoostingRegressor

        k = self.knobs
        self.model_ = HistGradientBoostingRegressor(
            max_iter=k["max_iter"], learning_rate=k["learning_rate"], max_leaf_nodes=k["max_leaf_nodes"],
            min_samples_leaf=k["min_samples_leaf"], l2_regularization=k["l2_regularization"],
            random_state=self.seed).fit(X, _scalar_target(y))
        self.mapie_ = None
        return self

    def predict(self, X) -> np.ndarray:
        return self.model_.predict(X)

    def calibrate(self, X_cal, y_cal):
        mapie = _require("mapie.regression", "mapie")
        levels = sorted({round(abs(2 * t - 1), 6) for t in QUANTILE_LEVELS} - {0.0})
        self.mapie_ = mapie.SplitConformalRegressor(self.model_, confidence_level=levels, prefit=True)
        self.mapie_.conformalize(X_cal, _scalar_target(y_cal))
        self._levels = levels
        return self

    def predict_distribution(self, X):
        from ..distributions import Mixture

        if getattr(self, "mapie_", None) is None:
            raise ValueError("call calibrate(X_cal, y_cal) before predict_distribution")
        pred, pis = self.mapie_.predict_interval(X)  # pis: (n, 2, levels)
        taus = [(1 - c) / 2 for c in self._levels] + [0.5] + [(1 + c) / 2 for c in self._levels]
        values = np.concatenate([pis[:, 0, :], np.asarray(pred).reshape(-1, 1), pis[:, 1, :]], axis=1)
        order = np.argsort(taus)
        return Mixture.from_quantiles(np.asarray(taus)[order], np.asarray(values)[:, order])


class QuantileForest:
    """``quantile_forest.RandomForestQuantileRegressor``: mean prediction, quantile distribution."""

    conformal = False

    def __init__(self, knobs: dict, seed: int):
        self.knobs, self.seed = dict(knobs), seed

    def fit(self, X, y):
        qf = _require("quantile_forest", "quantile-forest")
        k = self.knobs
        self.model_ = qf.RandomForestQuantileRegressor(
            n_estimators=k["n_estimators"], min_samples_leaf=k["min_samples_leaf"], max_features=k["max_features"],
            random_state=self.seed, n_jobs=1).fit(X, _scalar_target(y))
        return self

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.model_.predict(X, quantiles="mean")).reshape(-1)

    def predict_distribution(self, X):
        from ..distributions import Mixture

        values = np.asarray(self.model_.predict(X, quantiles=list(QUANTILE_LEVELS)))
        return Mixture.from_quantiles(QUANTILE_LEVELS, values.reshape(len(X), -1))


_HGB_KNOBS = {"max_iter": 500, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
              "l2_regularization": 0.0}

register(PeerBaseline(
    "sk-mapie-hgb", "HistGradientBoosting (sk-hgb's knobs) + MAPIE split-conformal intervals calibrated on the "
    "validation split", ConformalHGB, knobs=dict(_HGB_KNOBS)))
register(PeerBaseline(
    "sk-qrf", "quantile regression forest (quantile-forest), 100 trees, leaves of >= 5 samples",
    QuantileForest, knobs={"n_estimators": 100, "min_samples_leaf": 5, "max_features": 1.0},
    search={"min_samples_leaf": ("int", 1, 50)}))

__all__ = ["QUANTILE_LEVELS", "ConformalHGB", "QuantileForest"]
