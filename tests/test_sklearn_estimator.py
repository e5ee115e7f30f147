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
        BeyondMSERegressor().fit(np.full((30, 3), np.nan), y)
