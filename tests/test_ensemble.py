"""params["ensemble"] = k: k members on one split, scored on the mean of their predictions."""

import numpy as np
import pytest

from beyondmse.bench import ResultStore, adhoc_suite, run_suite
from beyondmse.bench.matching import matched_baseline_runs
from beyondmse.bench.stats import compare_to_baseline
from beyondmse.data import Dataset
from beyondmse.experiment import run_experiment


def toy(n: int = 150, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    y = np.sin(3 * X[:, 0]) * X[:, 1] + 0.3 * X[:, 2] + 0.05 * rng.normal(size=n)
    return Dataset("ens-toy", X, y, ["a", "b", "c"], ["t"], "generated")


def test_ensemble_scores_the_mean_of_distinct_members():
    ds = toy()
    single = run_experiment(ds, "ls", seed=1, epochs=3, diagnostics=False)
    ens = run_experiment(ds, "ls", seed=1, epochs=3, params={"ensemble": 3}, diagnostics=False)
    members = ens["ensemble"]["member_test_mae"]
    assert ens["ensemble"]["members"] == 3 and ens["params"]["ensemble"] == 3 and len(members) == 3
    # the first member is the run itself; the others start from other seeds (distinct models)
    assert members[0] == pytest.approx(single["metrics"]["mae"], abs=1e-12)
    assert len(set(ens["ensemble"]["seeds"])) == 3 and len({round(m, 10) for m in members}) == 3
    # the mean prediction: |mean(p) - y| <= mean |p - y| pointwise (Jensen), and it is not one member
    assert ens["metrics"]["mae"] <= np.mean(members) + 1e-12
    assert min(abs(ens["metrics"]["mae"] - m) for m in members) > 1e-9
    # the run's fit time is every member's (no timing comparison: times are noisy)
    assert len(ens["ensemble"]["fit_seconds"]) == 3 and ens["fit_seconds"] == sum(ens["ensemble"]["fit_seconds"])
    again = run_experiment(ds, "ls", seed=1, epochs=3, params={"ensemble": 3}, diagnostics=False)
    assert again["metrics"]["mae"] == ens["metrics"]["mae"]  # deterministic


def test_ensemble_of_one_is_the_plain_run_and_bad_sizes_are_errors():
    ds = toy()
    one = run_experiment(ds, "ls", seed=0, epochs=2, params={"ensemble": 1}, diagnostics=False)
    plain = run_experiment(ds, "ls", seed=0, epochs=2, diagnostics=False)
    assert one["metrics"]["mae"] == plain["metrics"]["mae"] and "ensemble" not in one
    for bad in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="ensemble"):
            run_experiment(ds, "ls", seed=0, epochs=1, params={"ensemble": bad})
    with pytest.raises(ValueError, match="peer"):
        run_experiment(ds, "sk-ridge", seed=0, params={"ensemble": 2})


def test_an_ensemble_is_compared_with_an_ensemble_of_the_baseline(tmp_path):
    # a plain ls and a 2-member huber: the suite must add ls with 2 members to compare with
    suite = adhoc_suite([toy()], ["ls"], seeds=1, epochs=2)
    suite.runs += adhoc_suite([toy()], ["huber"], seeds=1, epochs=2, params={"ensemble": 2}).runs
    extra = matched_baseline_runs(suite.runs, "ls")
    assert [(r.method, r.params) for r in extra] == [("ls", {"ensemble": 2})]
    suite.runs += extra
    store = ResultStore(tmp_path / "s.sqlite")
    run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    row = next(r for r in compare_to_baseline(store.rows(), "ls", metric="mae") if r["base_method"] == "huber")
    assert row["matched"] and row["vs"] == "ls ensemble=2"
