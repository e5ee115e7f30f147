"""The share of test rows that repeat a training row exactly: computed per run, stated in the report."""

import numpy as np

from beyondmse.bench import ResultStore, adhoc_suite, run_suite, write_report
from beyondmse.data import Dataset, make_splits


def copies_dataset(n: int = 200, copies: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    y = X[:, 0] - X[:, 1] ** 2
    src = rng.choice(n, size=copies, replace=False)
    X, y = np.vstack([X, X[src]]), np.concatenate([y, y[src]])  # exact copies, same label
    return Dataset("copies-toy", X, y, ["a", "b", "c"], ["t"], "generated")


def test_share_of_test_rows_seen_in_training_matches_a_brute_force_count():
    sp = make_splits(copies_dataset(), seed=3, protocol="default")
    expected = np.mean([any(np.array_equal(t, r) for r in sp.X_train) for t in sp.X_test])
    assert 0 < expected < 1
    assert sp.test_rows_in_train() == expected
    clean = make_splits(copies_dataset(copies=0), seed=3, protocol="default")
    assert clean.test_rows_in_train() == 0.0


def test_the_report_states_the_share(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    run_suite(adhoc_suite([copies_dataset()], ["ls", "sk-knn"], seeds=2, epochs=1), store, progress=False,
              diagnostics=False, threads=1)
    shares = [r["test_rows_in_train"] for r in store.rows()]
    assert len(shares) == 4 and all(0 < s < 1 for s in shares)
    md = write_report(store, tmp_path / "rep", family=False)["report"].read_text()
    assert f"{100 * np.mean(shares):.1f}% of test rows repeat a training row exactly" in md
