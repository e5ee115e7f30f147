"""Predictive distributions (issue 19): the Mixture's quantiles, cdf, CRPS and sampling against
hand-computed values and integrals, and the distributions the codec and neighbor heads build."""

import math

import numpy as np
import pytest
import torch

from beyondmse.distributions import Mixture, NoDistributionError, TargetGrid
from beyondmse.heads import NCA, Codec, DiffKNN, Linear, MultiTarget
from beyondmse.normalizers import Sparsemax

KERNELS = ("point", "uniform", "gaussian")


def _random_mixture(kernel: str, n: int = 5, m: int = 1, k: int = 7, seed: int = 0) -> Mixture:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, m, k, generator=g, dtype=torch.float64)
    c = torch.randn(n, m, k, generator=g, dtype=torch.float64)
    h = 0.3 * torch.rand(n, m, k, generator=g, dtype=torch.float64)
    h[:, :, 0] = 0.0  # a point mass among the kernels
    return Mixture(w, c, kernel, h)


def _crps_by_integration(mix: Mixture, y: torch.Tensor) -> torch.Tensor:
    """CRPS = int (F(t) - 1{t >= y})^2 dt by the midpoint rule on a fine grid whose nodes include
    every jump and kink (atoms, kernel ends, y), so steps are integrated exactly (the oracle)."""
    out = torch.empty(mix.batch_shape, dtype=torch.float64)
    for i in range(mix.batch_shape[0]):
        for d in range(mix.batch_shape[1]):
            w, c, h = mix.weights[i, d], mix.locs[i, d], mix.scale[i, d]
            nodes = torch.cat([torch.linspace(-9, 9, 200_001, dtype=torch.float64), c, c - h, c + h, y[i, d:d + 1]])
            nodes = nodes.sort().values
            t, dt = 0.5 * (nodes[1:] + nodes[:-1]), nodes[1:] - nodes[:-1]
            if mix.kernel == "point":
                F = (w * (t[:, None] >= c)).sum(1)
            elif mix.kernel == "uniform":
                hs = torch.where(h > 0, h, torch.ones_like(h))
                F = (w * torch.where(h > 0, ((t[:, None] - c + h) / (2 * hs)).clamp(0, 1),
                                     (t[:, None] >= c).double())).sum(1)
            else:
                hs = torch.where(h > 0, h, torch.ones_like(h))
                gauss = 0.5 * (1 + torch.erf((t[:, None] - c) / (hs * math.sqrt(2))))
                F = (w * torch.where(h > 0, gauss, (t[:, None] >= c).double())).sum(1)
            out[i, d] = (((F - (t >= y[i, d]).double()) ** 2) * dt).sum()
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_quantiles_are_monotone_and_invert_the_cdf(kernel):
    mix = _random_mixture(kernel, m=2)
    q = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    Q = mix.quantile(q)
    assert Q.shape == (5, 2, 41)
    assert bool((Q[..., 1:] >= Q[..., :-1]).all())
    # the lower quantile: F(Q(q)) >= q >= F(Q(q)-), equality F(Q(q)) = q off the point masses; a
    # bisection lands within ~1e-15 above a point mass, hence the left limit just below Q
    F, F_left = mix.cdf(Q), mix.cdf_left(Q - (0.0 if kernel == "point" else 1e-9))
    assert bool((F >= q - 1e-9).all()) and bool((F_left <= q + 1e-9).all())
    if kernel != "point":
        continuous = (F - F_left) < 1e-8  # no point mass in [Q - 1e-9, Q]
        assert continuous.float().mean() > 0.5
        torch.testing.assert_close(F[continuous], q.expand_as(F)[continuous], atol=1e-9, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_crps_equals_the_integral_of_the_squared_cdf_difference(kernel):
    mix = _random_mixture(kernel, n=3, m=1, k=5, seed=1)
    y = torch.tensor([[-0.4], [0.1], [2.5]], dtype=torch.float64)
    torch.testing.assert_close(mix.crps(y), _crps_by_integration(mix, y), atol=1e-8, rtol=0)


def test_crps_by_hand_for_a_point_mass_and_a_histogram():
    f64 = dict(dtype=torch.float64)
    point = Mixture(torch.tensor([1.0], **f64), torch.tensor([0.3], **f64))
    assert point.crps(torch.tensor([[0.5]], **f64)).item() == pytest.approx(0.2, abs=1e-15)  # |0.3 - 0.5|
    # bins [0, 0.5] (mass 1/4) and [0.5, 1] (mass 3/4), y = 0.6:
    # int_0^0.5 (t/2)^2 + int_0.5^0.6 (1/4 + 3/2 (t - 1/2))^2 + int_0.6^1 (1 - F)^2
    by_hand = 0.25 * 0.5 ** 3 / 3 + (0.4 ** 3 - 0.25 ** 3) / 4.5 + 0.6 ** 3 / 4.5
    hist = Mixture(torch.tensor([0.25, 0.75], **f64), torch.tensor([0.25, 0.75], **f64), "uniform", 0.25)
    assert hist.crps(torch.tensor([[0.6]], **f64)).item() == pytest.approx(by_hand, abs=1e-12)
    assert by_hand == pytest.approx(0.0691666666667)


def test_histogram_quantile_cdf_mean_and_interval_by_hand():
    hist = Mixture(torch.tensor([0.25, 0.75]), torch.tensor([0.25, 0.75]), "uniform", 0.25)
    assert hist.cdf(torch.tensor([[0.5]])).item() == pytest.approx(0.25)
    assert hist.quantile(0.625).item() == pytest.approx(0.75)  # 0.25 + 1.5 (t - 0.5) = 0.625
    assert hist.mean.item() == pytest.approx(0.25 * 0.25 + 0.75 * 0.75)
    lo, hi = hist.interval(0.5)[0, 0].tolist()  # quantiles at 0.25 and 0.75
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5 + 0.5 / 1.5)


def test_point_atoms_quantile_is_the_lower_quantile():
    mix = Mixture(torch.tensor([0.2, 0.3, 0.5]), torch.tensor([3.0, 1.0, 2.0]))  # sorted: 1 (0.3), 2 (0.5), 3 (0.2)
    assert mix.quantile([0.1, 0.3, 0.31, 0.8, 0.81]).flatten().tolist() == [1.0, 1.0, 2.0, 2.0, 3.0]
    assert mix.cdf(torch.tensor([[2.0]])).item() == pytest.approx(0.8)
    assert mix.cdf_left(torch.tensor([[2.0]])).item() == pytest.approx(0.3)


@pytest.mark.parametrize("kernel", KERNELS)
def test_samples_follow_the_distribution(kernel):
    mix = _random_mixture(kernel, n=2, m=2, k=4, seed=3)
    s = mix.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (40_000, 2, 2)
    torch.testing.assert_close(s.mean(0), mix.mean, atol=0.03, rtol=0)
    emp = (s <= mix.quantile(0.3)).double().mean(0)  # empirical cdf at the 30% quantile
    torch.testing.assert_close(emp, mix.cdf(mix.quantile(0.3)), atol=0.02, rtol=0)


def test_affine_maps_to_user_units_and_a_zero_scale_is_a_point_mass():
    mix = _random_mixture("gaussian", m=2)
    out = mix.affine([10.0, 0.0], [100.0, 7.0])
    torch.testing.assert_close(out.mean[:, 0], 10.0 * mix.mean[:, 0] + 100.0)
    torch.testing.assert_close(out.quantile(0.2)[:, 0], 10.0 * mix.quantile(0.2)[:, 0] + 100.0)
    assert out.interval(0.1)[:, 1].tolist() == [[7.0, 7.0]] * 5


def test_from_quantiles_reproduces_the_given_quantiles():
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    values = torch.tensor([[0.0, 1.0, 1.5, 3.0, 4.0], [2.0, 2.0, 2.0, 2.5, 9.0]], dtype=torch.float64)
    mix = Mixture.from_quantiles(levels, values)
    torch.testing.assert_close(mix.quantile(levels)[:, 0], values, atol=1e-9, rtol=0)
    assert mix.cdf(torch.tensor([[0.5], [5.0]])).flatten().tolist() == pytest.approx([0.15, 0.75 + 0.2 * 2.5 / 6.5])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "x"])
def test_bad_alpha_raises(bad):
    mix = _random_mixture("uniform")
    with pytest.raises(ValueError, match="alpha"):
        mix.interval(bad)


def test_bad_levels_and_inputs_raise():
    mix = _random_mixture("point")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        mix.quantile([0.5, 1.0])
    with pytest.raises(ValueError, match="shape"):
        mix.cdf(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="NaN"):
        mix.crps(torch.full((5, 1), float("nan")))
    with pytest.raises(ValueError, match="positive sum"):
        Mixture(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="kernel"):
        Mixture(torch.ones(3), torch.zeros(3), "cauchy")


# --------------------------------------------------------------------------- heads
def test_codec_one_hot_pi_is_a_point_mass_at_its_centre():
    head = Codec.for_mode("hl-gauss", 3, 1, k=5)
    head.fit_targets(torch.linspace(0, 1, 50)[:, None])
    with torch.no_grad():
        head.g.weight.zero_()
        head.g.bias.copy_(torch.tensor([0.0, 0.0, 200.0, 0.0, 0.0]))  # pi = e_3 (to float rounding)
    d = head.predict_distribution(torch.randn(4, 3), kernel="point")
    centre = float(head.mu[2, 0])
    assert d.quantile([0.01, 0.5, 0.99]).flatten().tolist() == pytest.approx([centre] * 12)
    assert d.crps(torch.full((4, 1), centre + 0.2)).flatten().tolist() == pytest.approx([0.2] * 4)
    # the default kernel of a binning codec spreads that class's mass over its bin
    hist = head.predict_distribution(torch.randn(4, 3))
    assert hist.interval(0.0001)[0, 0].tolist() == pytest.approx([0.4, 0.6], abs=1e-4)  # bin 3 of [0, 1]


@pytest.mark.parametrize("mode, kernel", [("hl-gauss", "uniform"), ("hard-bin", "uniform"), ("soft-bin", "gaussian"),
                                          ("e2e-codec", "gaussian"), ("ls-softmax", "point")])
def test_codec_distribution_mean_is_the_prediction(mode, kernel):
    torch.manual_seed(0)
    head = Codec.for_mode(mode, 4, 1, k=6)
    head.fit_targets(torch.rand(80, 1))
    z = torch.randn(9, 4)
    d = head.predict_distribution(z)
    assert d.kernel == kernel and d.batch_shape == (9, 1) and d.n_atoms == 6
    torch.testing.assert_close(d.mean.float(), head(z), atol=1e-6, rtol=0)
    if kernel == "gaussian":
        assert bool((d.scale == head.sigma.item()).all())


def test_codec_multi_target_distribution_is_per_marginal():
    head = Codec.for_mode("hl-gauss", 4, 2, k=16)
    head.fit_targets(torch.rand(80, 2))
    z = torch.randn(5, 4)
    d = head.predict_distribution(z)
    assert d.batch_shape == (5, 2) and d.interval(0.1).shape == (5, 2, 2)
    torch.testing.assert_close(d.mean.float(), head(z), atol=1e-6, rtol=0)


def _trained_neighbor_memory(head, targets):
    torch.manual_seed(0)
    z = torch.randn(200, 4)
    head.loss(z[:64], targets[:64])  # records the training neighbor-set size
    head.eval()
    head.fit_memory(z, targets)
    return head


@pytest.mark.parametrize("make", [lambda: NCA(4), lambda: NCA(4, softstep="global"),
                                  lambda: NCA(4, normalizer=Sparsemax()), lambda: DiffKNN(4)],
                         ids=["nca", "nca-softstep", "nca-sparsemax", "dknn"])
def test_neighbor_distribution_matches_the_dense_inference_weights(make):
    torch.manual_seed(1)
    y = torch.randint(0, 6, (200, 1)).float() / 5  # 6 distinct targets: the grid is exact
    head = _trained_neighbor_memory(make(), y)
    zq = torch.randn(30, 4)
    d = head.predict_distribution(zq, bandwidth=None)  # point masses: the weighted neighbor targets themselves
    W = head.inference_weights(zq).double()  # (30, 200), the oracle
    for v in (0.0, 0.4, 0.5, 1.0):
        oracle = (W * (y[:, 0] <= v).double()).sum(1)
        torch.testing.assert_close(d.cdf(torch.full((30, 1), v))[:, 0], oracle, atol=1e-6, rtol=0)
    torch.testing.assert_close(d.mean.float(), head(zq), atol=1e-6, rtol=0)
    smooth = head.predict_distribution(zq)  # the default on a discrete target: a Gaussian of half the gap
    assert smooth.kernel == "gaussian" and bool(((smooth.scale - 0.1).abs() < 1e-6).all())
    torch.testing.assert_close(smooth.mean, d.mean)


def test_neighbor_distribution_on_a_coarse_grid_keeps_the_mean_and_bounded_atoms():
    torch.manual_seed(2)
    y = torch.rand(200, 2)  # 200 distinct values per column, 16 atoms
    head = _trained_neighbor_memory(NCA(4, 2, softstep="global"), y)
    zq = torch.randn(25, 4)
    d = head.predict_distribution(zq, n_atoms=16)
    assert d.n_atoms == 16 and d.batch_shape == (25, 2)
    torch.testing.assert_close(d.mean.float(), head(zq), atol=1e-6, rtol=0)
    smooth = head.predict_distribution(zq, n_atoms=16, bandwidth=0.05)
    assert smooth.kernel == "gaussian"
    torch.testing.assert_close(smooth.mean, d.mean)
    auto = head.predict_distribution(zq, n_atoms=16, bandwidth="auto")  # no discrete column: point masses
    torch.testing.assert_close(auto.quantile([0.1, 0.9]), d.quantile([0.1, 0.9]), atol=1e-9, rtol=0)


@pytest.mark.parametrize("make", [lambda: NCA(4, softstep="global"), lambda: DiffKNN(4)], ids=["nca", "dknn"])
def test_a_single_neighbor_is_a_point_mass_at_its_target(make):
    head = make()
    head.loss(torch.randn(8, 4), torch.rand(8, 1))
    head.eval()
    head.fit_memory(torch.randn(1, 4), torch.tensor([[0.37]]))
    d = head.predict_distribution(torch.randn(6, 4))
    assert d.quantile([0.001, 0.5, 0.999]).flatten().tolist() == pytest.approx([0.37] * 18)
    assert d.crps(torch.full((6, 1), 0.5)).flatten().tolist() == pytest.approx([0.13] * 6)


def test_target_grid_splits_each_target_between_its_two_atoms():
    y = torch.tensor([[0.0], [0.1], [0.35], [1.0], [0.6]])
    grid = TargetGrid(y, n_atoms=3)  # 5 distinct > 3: quantiles at 0, 0.5, 1 -> atoms 0, 0.35, 1
    assert grid.locs[0].tolist() == pytest.approx([0.0, 0.35, 1.0])
    codes = grid.codes().reshape(5, 3)
    torch.testing.assert_close(codes.sum(1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(codes @ grid.locs[0], y[:, 0].double())  # the mean is kept
    assert codes[1].tolist() == pytest.approx([1 - 0.1 / 0.35, 0.1 / 0.35, 0.0])


def test_auto_bandwidth_smooths_discrete_target_dimensions_only():
    g = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)  # gaps 0.25, 0.25, 0.5
    y = torch.stack([levels[torch.randint(0, 4, (200,), generator=g)],
                     torch.rand(200, generator=g, dtype=torch.float64)], 1)  # discrete, continuous
    y[:4, 0] = levels  # every level present
    grid = TargetGrid(y, n_atoms=16)  # 4 distinct <= 16 (exact); 200 distinct > 16 (quantile atoms)
    assert grid.discrete_gap.tolist() == pytest.approx([0.25, 0.0])
    w = torch.zeros(1, 2, 16, dtype=torch.float64)
    w[0, 0, 2] = 1.0  # all mass on the level 0.5
    w[0, 1, 5] = 1.0  # all mass on one quantile atom
    mix = grid.mixture(w, "auto")
    a = grid.locs[1, 5].item()
    cdf = mix.cdf(torch.tensor([[0.5 + 0.125, a]], dtype=torch.float64))[0]
    # N(0.5, 0.125^2) at one standard deviation above; a point mass at a: F(a) = 1
    assert cdf.tolist() == pytest.approx([0.5 * math.erfc(-1 / math.sqrt(2)), 1.0], abs=1e-9)
    assert grid.mixture(w, None).cdf(torch.tensor([[0.6, a]], dtype=torch.float64))[0].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="auto"):
        grid.mixture(w, "silverman")


def _binomial_forecasts(rng, n: int, trials: int = 4):
    """Targets k / trials with k ~ Binomial(trials, p), p ~ U(0.05, 0.95), and the true pmf of
    each as its forecast weights (a calibrated discrete forecast), shapes (n, 1, trials + 1), (n,)."""
    p = rng.uniform(0.05, 0.95, n)
    k = rng.binomial(trials, p)
    j = np.arange(trials + 1)
    pmf = np.array([math.comb(trials, i) for i in j])[None] * p[:, None] ** j * (1 - p[:, None]) ** (trials - j)
    return torch.as_tensor(pmf)[:, None, :], k / trials


def test_cqr_reaches_nominal_coverage_on_a_discrete_target_with_auto_bandwidth():
    """Point-mass quantiles of a discrete target tie the CQR scores at 0, so calibration cannot
    pull the 90% interval in (coverage ~0.98); with bandwidth='auto' it lands on 0.90."""
    from beyondmse.conformal import CQR

    grid = TargetGrid(torch.arange(5, dtype=torch.float64)[:, None] / 4, n_atoms=5)
    coverage = {None: [], "auto": []}
    for draw in range(8):
        rng = np.random.default_rng(draw)
        (w_cal, y_cal), (w_test, y_test) = _binomial_forecasts(rng, 1000), _binomial_forecasts(rng, 4000)
        for bandwidth, got in coverage.items():
            q_cal = grid.mixture(w_cal, bandwidth).quantile([0.05, 0.95])[:, 0].numpy()
            q_test = grid.mixture(w_test, bandwidth).quantile([0.05, 0.95])[:, 0].numpy()
            lo, hi = CQR.fit(q_cal[:, 0], q_cal[:, 1], y_cal, 0.1).apply(q_test[:, 0], q_test[:, 1])
            got.append(((y_test >= lo) & (y_test <= hi)).mean())
    assert np.mean(coverage[None]) > 0.95  # ties: over-coverage left in place
    assert abs(np.mean(coverage["auto"]) - 0.90) < 0.015  # sd of the mean over 8 draws ~0.004


@pytest.mark.parametrize("head", [Linear(4), MultiTarget(4)], ids=["linear", "mt"])
def test_point_heads_have_no_distribution(head):
    with pytest.raises(NoDistributionError, match="not a distribution|not a predictive distribution"):
        head.predict_distribution(torch.randn(3, 4))
    assert issubclass(NoDistributionError, ValueError)


def test_model_and_trainer_give_the_heads_distribution():
    from beyondmse.recipes import build_model
    from beyondmse.train import Trainer

    torch.manual_seed(0)
    X, y = np.random.default_rng(0).uniform(size=(120, 3)).astype(np.float32), None
    y = (X[:, :1] + 0.1 * X[:, 1:2]).astype(np.float32)
    model, kw = build_model("soft-bin", 3, 1)
    trainer = Trainer(max_epochs=2, device="cpu", batch_size=32)
    trainer.fit(model, X, y)
    d = trainer.predict_distribution(model, X[:10])
    torch.testing.assert_close(d.mean.float(), trainer.predict(model, X[:10]), atol=1e-6, rtol=0)
    model.eval()
    torch.testing.assert_close(model.predict_distribution(torch.as_tensor(X[:10])).mean, d.mean)
    ls, _ = build_model("ls", 3, 1)
    with pytest.raises(NoDistributionError):
        trainer.predict_distribution(ls, X[:3])
