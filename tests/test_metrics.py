import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from beyondmse import metrics as M


def test_basic_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert M.rmse(y, p) == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert M.r2(y, p) == pytest.approx(r2_score(y, p))
    assert M.r2(np.ones(5), np.ones(5)) == 1.0 and M.r2(np.ones(5), np.zeros(5)) == 0.0


def test_delta_1_by_hand():
    y = np.array([1.0, 2.0, 4.0, 10.0])
    p = np.array([1.2, 3.0, -1.0, 8.5])  # ratios 1.2, 1.5, miss, 1.176
    assert M.delta_1(y, p) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        M.delta_1(np.array([0.0, 1.0]), np.array([1.0, 1.0]))


def test_shot_buckets_by_training_frequency():
    y_train = np.concatenate([np.zeros(200), np.full(50, 0.5), np.full(5, 1.0)])
    y_test = np.array([0.0, 0.5, 1.0])
    pred = np.array([0.1, 0.7, 0.6])
    out = M.shot_mae(y_test, pred, y_train, n_bins=10)
    assert out == pytest.approx({"mae_many": 0.1, "mae_medium": 0.2, "mae_few": 0.4})


def test_ordinality_and_volume():
    y = np.random.default_rng(1).random((40, 1))  # no tied distances
    perfect = M.ordinality(3 * y, y)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["kendall"] == pytest.approx(1.0)
    noise = M.ordinality(np.random.default_rng(0).normal(size=(40, 5)), y)
    assert abs(noise["spearman"]) < 0.3
    assert M.volume(np.ones((10, 3))) == pytest.approx(1.0)
    assert M.volume(np.array([[1.0, 0], [-1.0, 0]])) == pytest.approx(-1.0)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        M.mae(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        M.mae(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        M.rmse(np.array([np.nan]), np.array([0.0]))
