"""Split-conformal calibration (CQR): the conformal quantile by hand, and nominal coverage on a
synthetic heteroscedastic task over many draws (NumPy only, no training)."""

import numpy as np
import pytest

from beyondmse.conformal import CQR, conformal_quantile, cqr_scores


def test_conformal_quantile_is_the_ceil_n_plus_1_rank():
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0])  # n = 9
    assert conformal_quantile(scores, 0.2) == 8.0  # ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(scores, 0.1) == 9.0  # ceil(10 * 0.9) = 9th
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    two = conformal_quantile(np.stack([scores, -scores], 1), 0.2)
    assert two.tolist() == [8.0, -2.0]  # per column: 8th smallest of -scores is -2
    with pytest.warns(RuntimeWarning, match="unbounded"):
        assert conformal_quantile(scores, 0.05) == np.inf  # ceil(10 * 0.95) = 10 > n


def test_cqr_scores_and_apply_by_hand():
    lo, hi, y = np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]), np.array([0.5, 1.5, -0.25])
    assert cqr_scores(lo, hi, y).tolist() == [-0.5, 0.5, 0.25]
    cqr = CQR(alpha=0.1, correction=np.float64(0.25), n=3)
    new_lo, new_hi = cqr.apply(lo, hi)
    assert new_lo.tolist() == [-0.25] * 3 and new_hi.tolist() == [1.25] * 3
    narrow = CQR(alpha=0.1, correction=np.float64(-0.75), n=3).apply(lo, hi)  # crossing: the midpoint
    assert narrow[0].tolist() == [0.5] * 3 and narrow[1].tolist() == [0.5] * 3


@pytest.mark.parametrize("bad", [0.0, 1.0, -1.0, 2.0])
def test_bad_alpha_raises(bad):
    with pytest.raises(ValueError, match="alpha"):
        conformal_quantile(np.arange(5.0), bad)
    with pytest.raises(ValueError, match="alpha"):
        CQR.fit(np.zeros(5), np.ones(5), np.zeros(5), bad)


def _heteroscedastic(rng, n):
    x = rng.uniform(0.0, 2.0, n)
    return x, np.sin(3 * x) + (0.05 + 0.5 * x) * rng.normal(size=n)


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_cqr_reaches_nominal_coverage_on_a_heteroscedastic_task(alpha):
    """A misspecified quantile model (right centre, constant width: too wide where the noise is
    small and too narrow where it is large) covers far from 1 - alpha; after CQR on 400
    calibration points the coverage over 300 draws is within 2 points of nominal."""
    rng = np.random.default_rng(0)
    raw, cal = [], []
    for _ in range(300):
        x_cal, y_cal = _heteroscedastic(rng, 400)
        x_te, y_te = _heteroscedastic(rng, 400)

        def bounds(x):
            return np.sin(3 * x) - 0.2, np.sin(3 * x) + 0.2

        cqr = CQR.fit(*bounds(x_cal), y_cal, alpha)
        lo, hi = bounds(x_te)
        raw.append(((y_te >= lo) & (y_te <= hi)).mean())
        clo, chi = cqr.apply(lo, hi)
        cal.append(((y_te >= clo) & (y_te <= chi)).mean())
    assert abs(np.mean(raw) - (1 - alpha)) > 0.1  # the raw intervals are badly off
    assert abs(np.mean(cal) - (1 - alpha)) <= 0.02
    assert np.mean(cal) >= 1 - alpha - 0.005  # the guarantee is a lower bound (up to sampling noise)
