import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from beyondmse import BeyondMSERegressor


@parametrize_with_checks([BeyondMSERegressor(max_epochs=60)])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    return X, 10 + 5 * X[:, 0] ** 2 + 3 * X[:, 1]


def test_grid_search_and_cross_val_score():
    X, y = _data()
    cv = cross_val_score(BeyondMSERegressor(max_epochs=20, random_state=0), X, y, cv=3)
    assert cv.shape == (3,) and (cv > 0.5).all()
    gs = GridSearchCV(BeyondMSERegressor(max_epochs=10, random_state=0), {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert gs.best_params_["lr"] in (1e-3, 1e-2)


def test_predictions_in_original_units_and_deterministic():
    X, y = _data()
    a = BeyondMSERegressor(max_epochs=20, random_state=3).fit(X, y)
    b = BeyondMSERegressor(max_epochs=20, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert abs(a.predict(X).mean() - y.mean()) < 1.0


def test_constant_target_is_predicted_exactly():
    X, _ = _data(50)
    reg = BeyondMSERegressor(max_epochs=3, random_state=0).fit(X, np.full(50, 4.2))
    np.testing.assert_allclose(reg.predict(X), 4.2, atol=1e-6)


def test_estimator_errors():
    X, y = _data(30)
    with pytest.raises(ValueError, match="unknown method"):
        BeyondMSERegressor(method="nope").fit(X, y)
    with pytest.raises(ValueError, match="scikit-learn baseline"):
        BeyondMSERegressor(method="sk-hgb").fit(X, y)
    with pytest.raises(ValueError, match="unknown parameter"):
        BeyondMSERegressor(params={"bogus": 1}).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        BeyondMSERegressor(missing="refuse").fit(np.full((30, 3), np.nan), y)


def test_params_may_not_repeat_estimator_parameters():
    # before: params={"lr": ...} was silently overridden by the estimator's own lr
    X, y = _data(40)
    with pytest.raises(ValueError, match=r"repeat estimator parameters.*BeyondMSERegressor\(lr=0.05\)"):
        BeyondMSERegressor(params={"lr": 0.05}, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"\['batch_size'\]"):
        BeyondMSERegressor(params={"batch_size": 8}, max_epochs=1).fit(X, y)


def test_estimator_lr_is_the_lr_used(monkeypatch):
    import beyondmse.sklearn as sk

    seen = []

    class Spy(sk.Trainer):
        def __init__(self, **kw):
            seen.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(sk, "Trainer", Spy)
    X, y = _data(40)
    BeyondMSERegressor(lr=0.05, batch_size=8, max_epochs=1, random_state=0).fit(X, y)
    assert seen[-1]["lr"] == 0.05 and seen[-1]["batch_size"] == 8 and seen[-1]["max_epochs"] == 1


def test_fitted_attributes_follow_the_sklearn_convention():
    X, y = _data(40)
    reg = BeyondMSERegressor(max_epochs=1, random_state=0).fit(X, y)
    assert reg.n_outputs_ == 1 and reg.y_was_1d_ and reg.predict(X).shape == (40,)
    assert not any(k.startswith("_") and not k.startswith("__") for k in vars(reg) if k != "_sklearn_version")
    two = np.c_[y, 2 * y]
    reg2 = BeyondMSERegressor(max_epochs=1, random_state=0).fit(X, two)
    assert reg2.n_outputs_ == 2 and not reg2.y_was_1d_ and reg2.predict(X).shape == (40, 2)
    col = BeyondMSERegressor(max_epochs=1, random_state=0).fit(X, y[:, None])
    assert col.n_outputs_ == 1 and col.predict(X).shape == (40, 1)
