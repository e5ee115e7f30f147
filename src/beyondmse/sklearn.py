"""``BeyondMSERegressor``: any torch recipe of :mod:`beyondmse.recipes` as a scikit-learn estimator."""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .data.missing import MedianImputation, check_missing_policy
from .data.scaling import MinMaxScaling
from .recipes import build_model, is_peer
from .train import Trainer, seed_everything

#: Trainer settings that are estimator parameters; ``params`` may not repeat them (see ``fit``).
_ESTIMATOR_TRAINER_KEYS = ("max_epochs", "batch_size", "lr", "weight_decay", "patience")


class BeyondMSERegressor(RegressorMixin, BaseEstimator):
    """A deep regressor: MLP trunk + the head and regularizers of ``method``.

    Features are min-max scaled on the training data, targets min-max scaled to [0, 1]
    (a constant target is accepted: it is predicted exactly), a ``validation_fraction`` of the
    training data drives early stopping (none if fewer than 20 samples), and predictions are
    mapped back to the original target units.

    Parameters
    ----------
    method : str, default "ls"
        A recipe name (``beyondmse.recipes.available_methods()``), with optional ``+reg``
        suffixes, e.g. ``"e2e-codec"`` or ``"mt+rot"``.
    params : dict or None
        Trunk, trainer and recipe knobs, as for ``beyondmse run --param``. The training
        settings that are parameters of this estimator (``max_epochs``, ``batch_size``, ``lr``,
        ``weight_decay``, ``patience``) may not appear here: ``fit`` raises ValueError naming
        the estimator parameter to set instead, so that ``get_params``, ``GridSearchCV`` and
        ``clone`` always see the values that are actually used.
    max_epochs : int, default 100
    batch_size : int or "auto", default "auto"
        ``"auto"`` is ``min(256, max(2, n_train // 8))``: at least 8 steps per epoch on small data.
    lr : float, default 1e-3
    weight_decay : float, default 1e-4
    patience : int, default 10
        Validations without a relative gain of the Trainer's ``min_delta`` (0.2%) before
        training stops; the best epoch's weights are kept.
    validation_fraction : float, default 0.15
    random_state : int or None
        Seeds the validation split, initialisation and batch order.
    device : str, default "cpu"
    trunk : torch.nn.Module or None
        Your own trunk instead of the recipe's MLP (e.g. a pretrained backbone): any module from
        ``(N, *input_shape)`` to embeddings ``(N, d)``; ``d`` is found by one dry forward pass.
        ``fit`` trains a deep copy, so the module you pass is left as it was.
    input_shape : tuple of int or None
        One sample's shape when ``X`` holds flattened samples (scikit-learn takes 2-D ``X``): e.g.
        ``(3, 28, 28)`` for images given as rows of 2,352 values; rows are reshaped before the trunk.
    feature_scaling : {"minmax", "none"}, default "minmax"
        ``"none"`` passes ``X`` as it is (images in [0, 1] for a pretrained backbone, which
        standardises them itself).
    missing : {"impute", "refuse"}, default "impute"
        NaN in ``X``: ``"impute"`` fills each gap with the column's median on the ``fit`` data and
        appends a 0/1 indicator column per column that had a gap there
        (:class:`beyondmse.data.missing.MedianImputation`; a gap at predict time in another column
        is filled without indicator); ``"refuse"`` raises ValueError, as scikit-learn's estimator
        checks expect of an estimator without NaN support. NaN in ``y`` always raises.

    Attributes
    ----------
    model_ : RegressionModel
        The trained model, converted to float64 after training so that predictions do not
        depend on how the rows are batched.
    history_ : beyondmse.train.History
    n_features_in_ : int
    n_outputs_ : int
        Number of target columns ``m``.
    y_was_1d_ : bool
        Whether ``y`` was 1-D; ``predict`` then returns shape ``(n,)``, else ``(n, m)``.
    imputation_ : beyondmse.data.missing.MedianImputation or None
        The median imputation fitted on ``X`` (None with ``missing="refuse"``).
    x_scaling_, y_scaling_ : beyondmse.data.scaling.MinMaxScaling
        The min-max scalings of features and targets, fitted on all of ``X`` and ``y``.
    calibration_X_, calibration_y_ : ndarray
        The held-out validation rows (scaled features and targets) that
        :meth:`predict_interval` calibrates on; empty when nothing was held out.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = X[:, 0] ** 2
    >>> reg = BeyondMSERegressor(max_epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    def __init__(self, method: str = "ls", *, params: dict | None = None, max_epochs: int = 100,
                 batch_size: int | str = "auto", lr: float = 1e-3, weight_decay: float = 1e-4, patience: int = 10,
                 validation_fraction: float = 0.15, random_state: int | None = None, device: str = "cpu",
                 trunk: torch.nn.Module | None = None, input_shape: tuple[int, ...] | None = None,
                 feature_scaling: str = "minmax", missing: str = "impute"):
        self.method = method
        self.params = params
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.trunk = trunk
        self.input_shape = input_shape
        self.feature_scaling = feature_scaling
        self.missing = missing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = self.missing == "impute"
        return tags

    def _finite(self):
        return "allow-nan" if check_missing_policy(self.missing) == "impute" else True

    def _features(self, X) -> np.ndarray:
        """Validated ``X`` of a fitted estimator, gaps imputed, min-max scaled, float32."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=self._finite())
        if self.imputation_ is not None:
            X = self.imputation_.transform(X)
        return self.x_scaling_.transform(X).astype(np.float32)

    def fit(self, X, y):
        if is_peer(self.method):
            raise ValueError(f"{self.method!r} is a scikit-learn baseline; use scikit-learn directly")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        params = dict(self.params or {})
        clash = [k for k in _ESTIMATOR_TRAINER_KEYS if k in params]
        if clash:
            # scikit-learn sees only estimator parameters (get_params, GridSearchCV, clone): a second,
            # hidden copy in ``params`` would make one of the two silently ignored
            raise ValueError(f"params {clash} repeat estimator parameters; set them on the estimator instead, "
                             f"e.g. BeyondMSERegressor({clash[0]}={params[clash[0]]!r})")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64,
                             ensure_all_finite=self._finite())
        if not np.isfinite(y).all():  # validate_data lets NaN through in y when X may have it
            raise ValueError("y contains NaN or inf; missing targets cannot be imputed")
        self.imputation_ = MedianImputation.fit(X) if self.missing == "impute" else None
        if self.imputation_ is not None:
            X = self.imputation_.transform(X)
        if len(X) < 2:
            raise ValueError(f"need at least 2 samples to fit, got n_samples = {len(X)}")
        self.y_was_1d_ = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        seed = (int(self.random_state) if self.random_state is not None
                else int(np.random.randint(0, 2**31 - 1)))
        self.x_scaling_ = self._fit_x_scaling(X)
        # a constant target column has nothing to learn: predict maps it back to that constant
        self.y_scaling_ = MinMaxScaling.fit(y2)
        Xs = self.x_scaling_.transform(X).astype(np.float32)
        ys = self.y_scaling_.transform(y2).astype(np.float32)

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(Xs))
        n_val = int(round(self.validation_fraction * len(Xs))) if len(Xs) >= 20 else 0
        val, tr = order[:n_val], order[n_val:]
        if len(tr) < 2:  # too little data to split: train on everything, without early stopping
            tr, val = order, order[:0]

        seed_everything(seed)
        Xs = self._shaped(Xs)
        user_trunk = None if self.trunk is None else copy.deepcopy(self.trunk)
        model, trainer_kw = build_model(self.method, Xs.shape[1:], y2.shape[1], params, trunk=user_trunk)
        auto = min(256, max(2, len(tr) // 8))
        trainer_kw.update(max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
                          patience=self.patience, batch_size=auto if self.batch_size == "auto" else self.batch_size)
        trainer = Trainer(seed=seed, device=self.device, **trainer_kw)
        if n_val:
            self.history_ = trainer.fit(model, Xs[tr], ys[tr], Xs[val], ys[val])
        else:
            self.history_ = trainer.fit(model, Xs[tr], ys[tr])
        # predictions in float64: float32 matrix products round differently for different batch
        # sizes, and an estimator's predict(X[:k]) must equal predict(X)[:k]
        self.model_ = model.cpu().double().eval()
        # the held-out validation rows (scaled) calibrate predict_interval (split conformal)
        self.calibration_X_, self.calibration_y_ = Xs[val].astype(np.float64), ys[val].astype(np.float64)
        return self

    def predict(self, X):
        Xs = torch.as_tensor(self._shaped(self._features(X)), dtype=torch.float64)
        with torch.no_grad():
            pred = torch.cat([self.model_(Xs[i:i + 8192]) for i in range(0, len(Xs), 8192)]).numpy()
        pred = self.y_scaling_.inverse(pred.astype(np.float64))
        const = self.y_scaling_.constant
        pred[:, const] = self.y_scaling_.offset[const]
        return pred[:, 0] if self.y_was_1d_ else pred

    def _scaled_distribution(self, Xs: np.ndarray):
        with torch.no_grad():
            return self.model_.predict_distribution(torch.as_tensor(self._shaped(Xs), dtype=torch.float64))

    def _fit_x_scaling(self, X: np.ndarray) -> MinMaxScaling:
        if self.feature_scaling == "minmax":
            return MinMaxScaling.fit(X)
        if self.feature_scaling == "none":
            d = X.shape[1]
            return MinMaxScaling(np.zeros(d), np.ones(d), np.zeros(d, dtype=bool))
        raise ValueError(f"feature_scaling must be 'minmax' or 'none', got {self.feature_scaling!r}")

    def _shaped(self, Xs: np.ndarray) -> np.ndarray:
        """Rows ``(n, D)`` reshaped to ``(n, *input_shape)`` when ``input_shape`` is set."""
        if self.input_shape is None:
            return Xs
        shape = tuple(int(s) for s in self.input_shape)
        if Xs.shape[1:] == shape:  # already shaped (the held-out calibration rows)
            return Xs
        if int(np.prod(shape)) != Xs.shape[1]:
            raise ValueError(f"input_shape {shape} holds {int(np.prod(shape))} values but X has {Xs.shape[1]} columns")
        return Xs.reshape(len(Xs), *shape)

    def _unscale(self, dist):
        scale = np.where(self.y_scaling_.constant, 0.0, self.y_scaling_.scale)  # a constant column: a point mass
        return dist.affine(scale.astype(np.float64), self.y_scaling_.offset.astype(np.float64))

    def predict_distribution(self, X):
        """The head's predictive distribution of each row, in the units of ``y``.

        Returns a :class:`beyondmse.distributions.Mixture` with batch shape (n, m) (``mean``,
        ``quantile(q)``, ``interval(alpha)``, ``cdf(y)``, ``sample(k)``, ``crps(y)``; for m > 1
        the m marginals). Needs a method with a distribution (codec or neighbor heads); a point
        method (``ls``, ``mt``, ...) raises :class:`beyondmse.distributions.NoDistributionError`,
        a ValueError. These raw distributions are not calibrated: see :meth:`predict_interval`.
        """
        return self._unscale(self._scaled_distribution(self._features(X)))

    def predict_interval(self, X, alpha: float = 0.1, conformal: bool = True) -> np.ndarray:
        """Prediction intervals of level ``1 - alpha``: shape (n, 2) of (lower, upper) bounds, or
        (n, m, 2) when ``y`` was 2-D, in the units of ``y``.

        The raw interval is the central interval of :meth:`predict_distribution`,
        :math:`[F^{-1}(\\alpha/2), F^{-1}(1 - \\alpha/2)]`. With ``conformal=True`` (the default)
        it is calibrated by conformalized quantile regression (:class:`beyondmse.conformal.CQR`)
        on the validation rows the estimator held out in ``fit`` (``validation_fraction``), so
        that on exchangeable data it covers at least ``1 - alpha`` of new targets (marginally,
        per target column). Those rows also chose the early-stopping epoch, a mild reuse that
        the coverage guarantee does not account for. ``conformal=False`` returns the raw
        interval (no calibration data needed).
        """
        from .conformal import CQR
        from .distributions import check_alpha

        alpha = check_alpha(alpha)
        dist = self._scaled_distribution(self._features(X))
        lo, hi = dist.interval(alpha).numpy().transpose(2, 0, 1)  # each (n, m), scaled units
        if conformal:
            if len(self.calibration_y_) == 0:
                raise ValueError("predict_interval(conformal=True) calibrates on the validation rows held out in fit, "
                                 "but this fit held out none (validation_fraction=0 or fewer than 20 samples); "
                                 "refit with validation_fraction > 0 or pass conformal=False for the raw interval")
            cal = self._scaled_distribution(self.calibration_X_.astype(np.float32)).interval(alpha).numpy()
            lo, hi = CQR.fit(cal[..., 0], cal[..., 1], self.calibration_y_, alpha).apply(lo, hi)
        scale = np.where(self.y_scaling_.constant, 0.0, self.y_scaling_.scale)
        out = np.stack([lo * scale + self.y_scaling_.offset, hi * scale + self.y_scaling_.offset], axis=-1)
        return out[:, 0] if self.y_was_1d_ else out
