"""``BeyondMSERegressor``: any torch recipe of :mod:`beyondmse.methods` as a scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .methods import build_model, is_peer
from .train import Trainer, seed_everything


class BeyondMSERegressor(RegressorMixin, BaseEstimator):
    """A deep regressor: MLP trunk + the head and regularizers of ``method``.

    Features are min-max scaled on the training data, targets min-max scaled to [0, 1]
    (a constant target is accepted: it is predicted exactly), a ``validation_fraction`` of the
    training data drives early stopping (none if fewer than 20 samples), and predictions are
    mapped back to the original target units.

    Parameters
    ----------
    method : str, default "ls"
        A recipe name (``beyondmse.methods.available_methods()``), with optional ``+reg``
        suffixes, e.g. ``"e2e-codec"`` or ``"mt+rot"``.
    params : dict or None
        Trunk, trainer and recipe knobs, as for ``beyondmse run --param``.
    max_epochs : int, default 100
    batch_size : int or "auto", default "auto"
        ``"auto"`` is ``min(256, max(2, n_train // 8))``: at least 8 steps per epoch on small data.
    lr : float, default 1e-3
    weight_decay : float, default 1e-4
    patience : int, default 10
    validation_fraction : float, default 0.15
    random_state : int or None
        Seeds the validation split, initialisation and batch order.
    device : str, default "cpu"

    Attributes
    ----------
    model_ : RegressionModel
    history_ : beyondmse.train.History
    n_features_in_ : int

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
                 validation_fraction: float = 0.15, random_state: int | None = None, device: str = "cpu"):
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def fit(self, X, y):
        if is_peer(self.method):
            raise ValueError(f"{self.method!r} is a scikit-learn baseline; use scikit-learn directly")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if len(X) < 2:
            raise ValueError(f"need at least 2 samples to fit, got n_samples = {len(X)}")
        self._y_was_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        seed = (int(self.random_state) if self.random_state is not None
                else int(np.random.randint(0, 2**31 - 1)))
        self.x_min_ = X.min(axis=0)
        x_span = X.max(axis=0) - self.x_min_
        self.x_scale_ = np.where(x_span > 0, x_span, 1.0)
        self.y_min_ = y2.min(axis=0)
        y_span = y2.max(axis=0) - self.y_min_
        self.y_scale_ = np.where(y_span > 0, y_span, 1.0)
        # a constant target column has nothing to learn: it is predicted as that constant
        self.constant_target_ = y_span == 0
        Xs = ((X - self.x_min_) / self.x_scale_).astype(np.float32)
        ys = ((y2 - self.y_min_) / self.y_scale_).astype(np.float32)

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(Xs))
        n_val = int(round(self.validation_fraction * len(Xs))) if len(Xs) >= 20 else 0
        val, tr = order[:n_val], order[n_val:]
        if len(tr) < 2:  # too little data to split: train on everything, without early stopping
            tr, val = order, order[:0]

        seed_everything(seed)
        params = dict(self.params or {})
        model, trainer_kw = build_model(self.method, (X.shape[1],), y2.shape[1], params)
        trainer_kw.update(max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
                          patience=self.patience)
        if "batch_size" not in params:
            auto = min(256, max(2, len(tr) // 8))
            trainer_kw["batch_size"] = auto if self.batch_size == "auto" else self.batch_size
        trainer = Trainer(seed=seed, device=self.device, **trainer_kw)
        if n_val:
            self.history_ = trainer.fit(model, Xs[tr], ys[tr], Xs[val], ys[val])
        else:
            self.history_ = trainer.fit(model, Xs[tr], ys[tr])
        self.model_ = model.cpu().eval()
        return self

    def predict(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Xs = torch.as_tensor(((X - self.x_min_) / self.x_scale_).astype(np.float32))
        with torch.no_grad():
            pred = torch.cat([self.model_(Xs[i:i + 8192]) for i in range(0, len(Xs), 8192)]).numpy()
        pred = pred.astype(np.float64) * self.y_scale_ + self.y_min_
        pred[:, self.constant_target_] = self.y_min_[self.constant_target_]
        return pred[:, 0] if self._y_was_1d else pred
