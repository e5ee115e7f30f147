"""Missing values (issue 20): a missing category is its own level, a missing number the training
median plus an indicator column, missing='refuse' keeps the old error, NaN targets always raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from beyondmse import BeyondMSERegressor
from beyondmse.data import Dataset, load_dataset, make_splits
from beyondmse.data.missing import MedianImputation
from beyondmse.data.tables import frame_to_dataset
from beyondmse.experiment import run_experiment

NAN = np.nan


def test_median_imputation_from_the_definition():
    a = np.array([[1.0, 5.0, NAN], [NAN, 7.0, NAN], [4.0, 6.0, NAN], [10.0, 8.0, NAN]])
    imp = MedianImputation.fit(a)
    assert imp.fill.tolist() == [4.0, 6.5, 0.0]  # median of {1, 4, 10}; of {5, 6, 7, 8}; nothing observed
    assert imp.indicate.tolist() == [0, 2]
    out = imp.transform(np.array([[NAN, NAN, 3.0]]))
    # gaps filled (column 1 had none in fit: filled, no indicator), then the indicators of 0 and 2
    assert out.tolist() == [[4.0, 6.5, 3.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="inf"):
        MedianImputation.fit(np.array([[1.0], [np.inf]]))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        imp.transform(np.zeros((2, 2)))


def _frame():
    return pd.DataFrame({
        "num": [1.0, NAN, 3.0, 4.0, 100.0, 6.0, NAN, 8.0],
        "kind": ["a", "b", None, "a", "b", "a", "b", None],
        "grade": ["lo", "hi", "mid", None, "lo", "hi", "mid", "lo"],
        "t": np.arange(8.0),
    })


def test_categories_get_a_missing_level_numbers_stay_nan_until_the_split():
    ds = frame_to_dataset(_frame(), "t", name="toy", source="test", categorical_orders={"grade": ["lo", "mid", "hi"]})
    assert ds.feature_names == ["num", "kind_(missing)", "kind_a", "kind_b", "grade"]
    assert ds.X[:, 1].tolist() == [0, 0, 1, 0, 0, 0, 0, 1]  # rows 2 and 7 had no kind
    assert ds.X[:, 4].tolist() == [0, 2, 1, -1, 0, 2, 1, 0]  # a missing grade is its own code
    assert np.isnan(ds.X[:, 0]).tolist() == [False, True, False, False, False, False, True, False]


def test_refuse_and_nan_targets_raise_naming_the_columns():
    with pytest.raises(ValueError, match=r"missing values in column\(s\) \['num', 'kind', 'grade'\]"):
        frame_to_dataset(_frame(), "t", name="toy", source="test", missing="refuse")
    frame = _frame().assign(t=[1.0, NAN, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match=r"missing values in target column\(s\) \['t'\]"):
        frame_to_dataset(frame, "t", name="toy", source="test")
    with pytest.raises(ValueError, match="missing must be one of"):
        frame_to_dataset(_frame(), "t", name="toy", source="test", missing="drop")
    with pytest.raises(ValueError, match="features contain NaN"):
        Dataset("x", np.array([[NAN], [1.0]]), np.array([1.0, 2.0]), ["a"], ["t"], "test", missing="refuse")
    with pytest.raises(ValueError, match="NaN or inf"):
        Dataset("x", np.array([[np.inf], [1.0]]), np.array([1.0, 2.0]), ["a"], ["t"], "test")


def test_split_imputes_with_training_medians_and_appends_indicators():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    x[::7] = NAN
    X = np.stack([x, rng.normal(size=200)], axis=1)
    ds = Dataset("gaps", X, rng.normal(size=200), ["x", "z"], ["t"], "test", feature_scaling="none")
    sp = make_splits(ds, seed=1, protocol="default")
    assert sp.X_train.shape[1] == 3 and not np.isnan(sp.X_train).any() and not np.isnan(sp.X_test).any()
    train_median = np.nanmedian(X[sp.train_index, 0])
    gap_test = np.isnan(X[sp.test_index, 0])
    assert gap_test.any()
    np.testing.assert_allclose(sp.X_test[gap_test, 0], train_median, rtol=1e-6)
    assert sp.X_test[:, 2].tolist() == gap_test.astype(float).tolist()  # the indicator column
    assert not np.isclose(train_median, np.nanmedian(X[:, 0]))  # the oracle tells train from all rows


def test_a_file_with_gaps_runs_end_to_end_and_refuse_stops_it(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y", None], size=n)})
    frame["t"] = frame["a"].fillna(0) * 2 + (frame["c"] == "x")
    frame.loc[::5, "a"] = NAN
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    ds = load_dataset(str(path), target="t")
    for method in ("ls", "sk-hgb"):
        rec = run_experiment(ds, method, seed=0, epochs=2, params={} if method == "sk-hgb" else
                             {"trunk": "tabular", "hidden": 8, "depth": 1}, protocol="default", diagnostics=False)
        assert np.isfinite(rec["metrics"]["mae"])
    with pytest.raises(ValueError, match=r"missing values in column\(s\) \['a', 'c'\]"):
        load_dataset(str(path), target="t", missing="refuse")


def test_estimator_imputes_by_default_and_refuses_on_request():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(120, 3))
    y = 3 * X[:, 0] + X[:, 1]
    X[::4, 0] = NAN
    reg = BeyondMSERegressor(max_epochs=3, random_state=0).fit(X, y)
    assert reg.imputation_.indicate.tolist() == [0]
    assert reg.model_.trunk.net[0].in_features == 4  # the model sees 3 columns + 1 indicator
    pred = reg.predict(np.array([[NAN, 0.5, 0.1], [0.2, NAN, 0.1]]))
    assert np.isfinite(pred).all()
    with pytest.raises(ValueError, match="NaN"):
        BeyondMSERegressor(max_epochs=3, missing="refuse").fit(X, y)
    with pytest.raises(ValueError, match="y contains NaN"):
        BeyondMSERegressor(max_epochs=3).fit(X[:, 1:], np.where(np.arange(120) == 3, NAN, y))


def test_sklearn_nan_check_passes_when_the_user_refuses_missing_values():
    from sklearn.utils.estimator_checks import check_estimators_nan_inf

    check_estimators_nan_inf("BeyondMSERegressor", BeyondMSERegressor(max_epochs=2, missing="refuse"))
    assert BeyondMSERegressor().__sklearn_tags__().input_tags.allow_nan
    assert not BeyondMSERegressor(missing="refuse").__sklearn_tags__().input_tags.allow_nan
