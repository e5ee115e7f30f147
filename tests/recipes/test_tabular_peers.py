"""RealMLP and TabM peers (issue 20): registered always, runnable where pytabkit is installed."""

from __future__ import annotations

import numpy as np
import pytest

from beyondmse.data import Dataset
from beyondmse.experiment import run_experiment
from beyondmse.recipes import PEERS, is_peer, split_params


def test_peers_are_registered_with_their_knobs():
    assert is_peer("realmlp") and is_peer("tabm")
    assert split_params("realmlp", {"n_epochs": 3})[2] == {"n_epochs": 3}
    assert PEERS["tabm"].knobs["tabm_k"] == 32
    with pytest.raises(ValueError, match="unknown parameter"):
        split_params("realmlp", {"lr": 0.1})


@pytest.mark.slow  # importing pytabkit alone takes ~10 s on 2 cores
@pytest.mark.parametrize("method", ["realmlp", "tabm"])
def test_peer_runs_on_our_splits(method):
    pytest.importorskip("pytabkit", reason="the realmlp/tabm peers need the tabular-peers extra (pytabkit)")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    ds = Dataset("toy", X, X[:, 0] ** 2 + X[:, 1], ["a", "b", "c"], ["t"], "test")
    rec = run_experiment(ds, method, seed=0, params={"n_epochs": 3}, protocol="default")
    assert rec["params"]["n_epochs"] == 3
    assert 0 <= rec["metrics"]["mae"] < 0.5  # targets are scaled to [0, 1]; a fit, not noise
    again = run_experiment(ds, method, seed=0, params={"n_epochs": 3}, protocol="default")
    assert again["metrics"]["mae"] == rec["metrics"]["mae"]  # seeded
