"""MinMaxScaling: the one min-max scaling of the splits and the estimator."""

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler

from beyondmse.data.scaling import MinMaxScaling


def test_matches_sklearn_and_flags_constant_columns():
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    X[:, 1] = 4.0  # constant: maps to 0, as scikit-learn does
    s = MinMaxScaling.fit(X)
    np.testing.assert_allclose(s.transform(X), MinMaxScaler().fit(X).transform(X), atol=1e-6)
    assert s.constant.tolist() == [False, True, False] and s.scale.dtype == np.float32
    np.testing.assert_allclose(s.inverse(s.transform(X)), X, atol=1e-6)


def test_rejects_empty_or_high_dimensional_input():
    with pytest.raises(ValueError, match="non-empty"):
        MinMaxScaling.fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="shape"):
        MinMaxScaling.fit(np.zeros((2, 2, 2)))
