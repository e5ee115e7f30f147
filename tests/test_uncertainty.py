"""Distribution metrics in run records, the uncertainty peers, the estimator's predict_interval,
the suite and the report section (issue 19)."""

import numpy as np
import pytest
import torch

from beyondmse import metrics as M
from beyondmse.distributions import Mixture

RECORD_KEYS = {"crps", "pit_dev", "cov80", "width80", "cov90", "width90", "cov80_cqr", "width80_cqr", "cov90_cqr",
               "width90_cqr"}


def test_pit_histogram_by_hand():
    # a point PIT at 0.05 (bin 0), one at 0.5 (bin 5), one spread over [0, 1] (a tenth per bin),
    # one spread over [0.2, 0.4] (half in bin 2, half in bin 3)
    hist = M.pit_histogram([0.05, 0.5, 0.0, 0.2], [0.05, 0.5, 1.0, 0.4], bins=10)
    expect = np.full(10, 0.1 / 4)
    expect[0] += 1 / 4
    expect[5] += 1 / 4
    expect[2] += 0.5 / 4
    expect[3] += 0.5 / 4
    np.testing.assert_allclose(hist, expect, atol=1e-12)
    assert M.pit_deviation(np.full(10, 0.1)) == 0.0
    assert M.pit_deviation(np.eye(10)[0]) == pytest.approx(0.9)


def test_distribution_report_of_the_true_distribution_is_calibrated():
    rng = np.random.default_rng(0)

    def task(n):
        x = rng.uniform(0, 1, n)
        s = 0.05 + 0.3 * x
        return x, s, x + s * rng.normal(size=n)

    def truth(x, s):  # the true conditional law N(x, s^2): a one-atom Gaussian mixture
        n = len(x)
        return Mixture(torch.ones(n, 1, 1, dtype=torch.float64), torch.as_tensor(x)[:, None, None], "gaussian",
                       torch.as_tensor(s)[:, None, None])

    xv, sv, yv = task(3000)
    xt, st, yt = task(3000)
    metrics, curves = M.distribution_report(truth(xv, sv), yv[:, None], truth(xt, st), yt[:, None])
    assert set(metrics) == RECORD_KEYS
    assert abs(metrics["cov90"] - 0.9) < 0.02 and abs(metrics["cov80"] - 0.8) < 0.02
    assert abs(metrics["cov90_cqr"] - 0.9) < 0.02
    assert metrics["pit_dev"] < 0.03
    # width of N(x, s^2)'s central 90% interval: 2 * 1.645 * mean(s)
    assert metrics["width90"] == pytest.approx(2 * 1.6449 * st.mean(), rel=1e-3)
    # CRPS of N(mu, s^2) at y: s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)) (Gneiting & Raftery 2007)
    from scipy.stats import norm

    z = (yt - xt) / st
    crps = st * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert metrics["crps"] == pytest.approx(crps.mean(), rel=1e-9)
    np.testing.assert_allclose(curves["raw"], curves["nominal"], atol=0.03)
    # a law half as wide as the truth under-covers; CQR on the validation split restores nominal
    narrow, _ = M.distribution_report(truth(xv, sv / 2), yv[:, None], truth(xt, st / 2), yt[:, None])
    assert narrow["cov90"] < 0.7 and abs(narrow["cov90_cqr"] - 0.9) < 0.02 and abs(narrow["cov80_cqr"] - 0.8) < 0.02
    assert narrow["width90_cqr"] > narrow["width90"]


def test_distribution_report_with_a_tiny_calibration_set_gives_unbounded_intervals_not_errors():
    d = Mixture(torch.ones(12, 1, 1, dtype=torch.float64), torch.zeros(12, 1, 1), "gaussian", 1.0)
    y = np.linspace(-1, 1, 12)[:, None]
    metrics, curves = M.distribution_report(d, y, d, y)  # 12 points cannot certify 95%: unbounded there
    assert curves["cqr"][-1] == 1.0 and np.isfinite(metrics["width90_cqr"])
    assert M.interval_width([0.0], [np.inf]) == np.inf and M.interval_coverage([5.0], [-np.inf], [np.inf]) == 1.0


def test_distribution_report_of_a_conformal_peer_has_only_calibrated_numbers():
    d = Mixture(torch.ones(50, 1, 1, dtype=torch.float64), torch.zeros(50, 1, 1), "gaussian", 1.0)
    metrics, curves = M.distribution_report(d, np.zeros((50, 1)), d, np.zeros((50, 1)), conformal=True)
    assert "cov90" not in metrics and metrics["cov90_cqr"] == 1.0 and curves["raw"] is None


def test_run_record_of_a_codec_head_has_distribution_metrics_and_a_point_head_has_none():
    from beyondmse.experiment import run_experiment

    rec = run_experiment("softstep-heteroscedastic", "hl-gauss", 0, epochs=2, diagnostics=False)
    assert RECORD_KEYS <= set(rec["metrics"])
    assert 0.0 <= rec["metrics"]["cov90_cqr"] <= 1.0 and rec["metrics"]["width90_cqr"] > 0
    assert rec["uncertainty"]["nominal"][-2:] == [0.9, 0.95] and len(rec["uncertainty"]["pit_hist"]) == 10
    ls = run_experiment("softstep-heteroscedastic", "ls", 0, epochs=1, diagnostics=False)
    assert "crps" not in ls["metrics"] and "uncertainty" not in ls


@pytest.mark.parametrize("peer", ["sk-mapie-hgb", "sk-qrf"])
def test_uncertainty_peers_run_on_the_same_splits(peer):
    pytest.importorskip("mapie", reason="the uncertainty peers need the optional 'uncertainty' extra")
    pytest.importorskip("quantile_forest", reason="the uncertainty peers need the optional 'uncertainty' extra")
    from beyondmse.experiment import run_experiment

    rec = run_experiment("softstep-heteroscedastic", peer, 0,
                         params={"n_estimators": 30} if peer == "sk-qrf" else {"max_iter": 60})
    m = rec["metrics"]
    assert {"crps", "cov90_cqr", "width90_cqr"} <= set(m)
    assert ("cov90" in m) == (peer == "sk-qrf")  # MAPIE's intervals are conformal already
    assert abs(m["cov90_cqr"] - 0.9) < 0.05  # 500 test points


def test_estimator_predict_interval_in_user_units():
    from beyondmse import BeyondMSERegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(500, 2))
    y = 100 + 50 * X[:, 0] + 10 * (0.2 + X[:, 1]) * rng.normal(size=500)
    reg = BeyondMSERegressor("soft-bin", max_epochs=5, random_state=0, validation_fraction=0.3).fit(X[:400], y[:400])
    iv, raw = reg.predict_interval(X[400:], 0.2), reg.predict_interval(X[400:], 0.2, conformal=False)
    assert iv.shape == (100, 2) and raw.shape == (100, 2)
    assert bool((iv[:, 0] <= iv[:, 1]).all()) and 60 < iv.mean() < 160  # user units, not [0, 1]
    dist = reg.predict_distribution(X[400:])
    np.testing.assert_allclose(dist.mean[:, 0].numpy(), reg.predict(X[400:]), rtol=1e-9)
    np.testing.assert_allclose(raw, dist.interval(0.2)[:, 0].numpy(), rtol=1e-9)
    # the correction CQR fitted on the held-out rows shifts both ends by the same amount
    np.testing.assert_allclose(raw[:, 0] - iv[:, 0], iv[:, 1] - raw[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        reg.predict_interval(X[:3], 1.0)
    no_val = BeyondMSERegressor("soft-bin", max_epochs=1, random_state=0, validation_fraction=0.0).fit(X, y)
    with pytest.raises(ValueError, match="held out none"):
        no_val.predict_interval(X[:3])
    assert no_val.predict_interval(X[:3], conformal=False).shape == (3, 2)
    point = BeyondMSERegressor("ls", max_epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="not a distribution"):
        point.predict_interval(X[:3])


def test_uncertainty_suite_and_report_section(tmp_path):
    from beyondmse.bench.suites import get_suite
    from beyondmse.plots.uncertainty import report_section

    suite = get_suite("uncertainty")
    methods = {s.method for s in suite.runs}
    assert {"sk-mapie-hgb", "sk-qrf", "hl-gauss", "nca-softstep-g"} <= methods
    assert len({s.dataset if isinstance(s.dataset, str) else s.dataset.name for s in suite.runs}) == 6

    def rec(ds, method, cov, width, seed):
        return {"dataset": ds, "method": method, "seed": seed,
                "metrics": {"crps": 0.1, "pit_dev": 0.05, "cov90_cqr": cov, "width90_cqr": width, "mae": 0.1},
                "uncertainty": {"nominal": [0.5, 0.9], "raw": [0.6, 0.95], "cqr": [0.5, cov], "pit_hist": [0.1] * 10}}

    records = [rec("a", "hl-gauss", 0.91, 0.2, s) for s in range(2)] + [rec("a", "sk-mapie-hgb", 0.9, 0.3, 0)]
    lines, figures = report_section(records, tmp_path)
    text = "\n".join(lines)
    assert "| `hl-gauss` | 2 |" in text and "narrower than `sk-mapie-hgb` (0.3000): `hl-gauss` (0.2000)" in text
    assert figures and figures[0].exists()
    assert report_section([{"dataset": "a", "method": "ls", "metrics": {"mae": 1.0}}], tmp_path) == ([], [])


def test_the_report_says_over_coverage_apart_from_nominal():
    from beyondmse.plots.uncertainty import _sentences

    def row(method, cov, width):
        return {"dataset": "d", "method": method, "cov90_cqr_mean": cov, "width90_cqr_mean": width}

    rows = [row("hl-gauss", 0.905, 0.2), row("nca", 0.968, 0.4), row("soft-bin", 0.86, 0.1),
            row("sk-mapie-hgb", 0.90, 0.3)]
    coverage, width = _sentences(rows, "d")
    assert coverage == ("- calibrated 90% coverage within 1 point of nominal: `hl-gauss`; above: `nca` (0.968); "
                        "below: `soft-bin` (0.860)")
    assert "`hl-gauss` (0.2000), `soft-bin` (0.1000)" in width and "nca" not in width
