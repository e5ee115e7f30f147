"""Issue 12: matched comparisons. One trunk and trainer for every head unless a setting is
overridden (and then the record and the report say so), the baseline on each head's footing,
the best-epoch-at-the-cap flag, equal tuning budgets, and dataset presets."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from beyondmse.bench import ResultStore, adhoc_suite, load_suite_file, run_suite, write_report
from beyondmse.bench.stats import compare_to_baseline
from beyondmse.cli import main as cli_main
from beyondmse.data import Dataset
from beyondmse.recipes import Recipe, split_params


def toy(n: int = 150, seed: int = 0, name: str = "fair-toy") -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    y = X[:, 0] * X[:, 1] + 0.3 * X[:, 2] + 0.05 * rng.normal(size=n)
    return Dataset(name, X, y, ["a", "b", "c"], ["t"], "generated")


def _records(store):
    return {(r["method"], json.dumps(r["params"], sort_keys=True), r["seed"]): r for r in store.rows()}


def test_every_method_gets_the_same_trunk_and_trainer(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    suite = adhoc_suite([toy()], ["ls", "nca", "hl-gauss", "mt+rot"], seeds=1, epochs=2)
    assert [r.method for r in suite.runs] == ["ls", "nca", "hl-gauss", "mt+rot"]  # nothing to match
    run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    configs = [r["config"] for r in store.rows()]
    assert len(configs) == 4
    for c in configs:
        assert c["trunk"] == configs[0]["trunk"] and c["trainer"] == configs[0]["trainer"]
        assert c["overrides"] == {} and c["preset"] is None
    assert configs[0]["trunk"]["class"] == "MLP" and configs[0]["trainer"]["select"] == "mse"
    # the knobs each head used are recorded too
    assert {"k", "hl_sigma"} <= set(next(r for r in store.rows() if r["method"] == "hl-gauss")["config"]["knobs"])


def test_an_override_is_recorded_and_the_baseline_runs_on_its_footing(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        datasets = ["wine_quality-num"]
        methods = ["ls"]
        seeds = [0]
        epochs = 1
        [[grid]]
        method = "nca"
        batch_size = 64
    """))
    suite = load_suite_file(path)
    specs = {(r.method, json.dumps(r.params, sort_keys=True)) for r in suite.runs}
    # the matched baseline was added: ls at the neighbor head's batch size
    assert specs == {("ls", "{}"), ("nca", '{"batch_size": 64}'), ("ls", '{"batch_size": 64}')}
    store = ResultStore(tmp_path / "s.sqlite")
    run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    recs = store.rows()
    nca = next(r for r in recs if r["method"] == "nca")
    # the suite's batch size, and the dataset preset's selection metric (the Beyond Binning sets select on RMSE)
    assert nca["config"]["overrides"] == {"batch_size": "params", "select": "preset"}
    assert nca["config"]["trainer"]["batch_size"] == 64
    rows = compare_to_baseline(recs, "ls", metric="mae")
    nca_row = next(r for r in rows if r["base_method"] == "nca")
    assert nca_row["vs"] == "ls batch_size=64" and nca_row["matched"]
    md = write_report(store, tmp_path / "rep", family=False)["report"].read_text()
    assert "`ls batch_size=64`" in md and "batch_size (params)" in md


def test_matched_baseline_differs_from_the_default_one():
    """The paired test uses the matched run's seeds, not the default baseline's."""
    def rec(method, params, seed, mae, batch):
        return {"dataset": "d", "method": method, "seed": seed, "params": params, "metrics": {"mae": mae},
                "config": {"trunk": {"class": "MLP"}, "trainer": {"batch_size": batch}}}

    records = [rec("ls", {}, s, 0.10 + 0.001 * s, 256) for s in range(3)]
    records += [rec("ls", {"batch_size": 32}, s, 0.30 + 0.001 * s, 32) for s in range(3)]
    records += [rec("nca", {"batch_size": 32}, s, 0.20 + 0.002 * s, 32) for s in range(3)]
    rows = compare_to_baseline(records, "ls", metric="mae")
    nca = next(r for r in rows if r["base_method"] == "nca")
    # better than ls at its own batch size, although worse than ls at the default one
    assert nca["vs"] == "ls batch_size=32" and nca["verdict"] == "better" and nca["norm"] < 1


def test_best_epoch_at_the_cap_is_flagged(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    run_suite(adhoc_suite([toy()], ["ls"], seeds=1, epochs=2), store, progress=False, diagnostics=False, threads=1)
    rec = store.rows()[0]
    assert rec["best_epoch"] == 2 and rec["cap_bound"] is True  # still improving at the cap of 2
    md = write_report(store, tmp_path / "rep", family=False)["report"].read_text()
    assert "⚠" in md and "best epoch within 10% of the epoch cap" in md


def test_best_epoch_far_from_the_cap_is_not_flagged():
    from beyondmse.experiment import run_experiment

    rec = run_experiment(toy(), "ls", 0, epochs=40, params={"patience": 2, "lr": 0.05}, diagnostics=False)
    assert rec["best_epoch"] < 36 and rec["cap_bound"] is False


def test_selection_metric_is_a_setting():
    from beyondmse.experiment import run_experiment

    a = run_experiment(toy(), "ls", 0, epochs=3, params={"select": "mae"}, diagnostics=False)
    assert a["config"]["trainer"]["select"] == "mae" and a["history"]["val_score"] == a["history"]["val_mae"]
    b = run_experiment(toy(), "ls", 0, epochs=3, diagnostics=False)
    assert b["history"]["val_score"] != b["history"]["val_mae"]  # MSE by default
    with pytest.raises(ValueError, match="unknown selection metric"):
        run_experiment(toy(), "ls", 0, epochs=1, params={"select": "r2"})


def test_a_recipe_departing_from_the_shared_settings_must_say_why():
    with pytest.raises(ValueError, match="without saying why"):
        Recipe("x", "f", "s", lambda d, m, k: None, trainer={"batch_size": 32})
    Recipe("x", "f", "s", lambda d, m, k: None, trainer={"batch_size": 32}, why="needs neighbors")
    with pytest.raises(ValueError, match="not one of its knobs"):
        Recipe("x", "f", "s", lambda d, m, k: None, search={"nope": ("log", 1, 2)})


def test_tuning_gives_every_method_exactly_n_trials(tmp_path):
    optuna = pytest.importorskip("optuna")
    from beyondmse.bench.tune import tune_suite

    store = ResultStore(tmp_path / "t.sqlite")
    suite = adhoc_suite([toy()], ["ls", "huber", "sk-ridge", "sk-knn", "sk-hgb"], seeds=2, epochs=1)
    tuned = tune_suite(suite, 3, store, log=lambda m: None)
    studies = optuna.get_all_study_summaries(storage=f"sqlite:///{store.path}")
    assert sorted(s.study_name.split(":")[2] for s in studies) == ["huber", "ls", "sk-hgb", "sk-knn", "sk-ridge"]
    assert all(s.n_trials == 3 for s in studies)
    # default and tuned runs side by side, every seed
    tags = sorted((r.method, r.tag) for r in tuned.runs)
    assert tags == sorted([(m, t) for m in ("ls", "huber", "sk-ridge", "sk-knn", "sk-hgb") for t in ("", "tuned")] * 2)
    knn = next(r for r in tuned.runs if r.method == "sk-knn" and r.tag)
    assert 1 <= knn.params["n_neighbors"] <= 64
    run_suite(tuned, store, progress=False, diagnostics=False, threads=1)
    rows = compare_to_baseline(store.rows(), "ls", metric="mae")
    assert {"ls", "ls [tuned]", "sk-knn", "sk-knn [tuned]"} <= {r["method"] for r in rows}
    # tuned against tuned (the same budget), default against default
    vs = {r["method"]: r["vs"] for r in rows}
    assert vs["huber [tuned]"] == "ls [tuned]" and vs["huber"] == "ls" and vs["sk-hgb [tuned]"] == "ls [tuned]"
    # a tuned peer keeps the value the search chose (no second selection on top)
    rec = next(r for r in store.rows() if r["method"] == "sk-knn" and r["tag"] == "tuned")
    assert rec["params"]["n_neighbors"] == knn.params["n_neighbors"]
    # the report says how the best tuned deep recipe fares against tuned gradient boosting
    md = write_report(store, tmp_path / "rep", family=False)["report"].read_text()
    assert "fair-toy (tuned):" in md and "`ls [tuned]`" in md


def test_dataset_preset_is_applied_by_run_and_disabled_by_protocol_default(tmp_path, shared_data):
    out = tmp_path / "a.json"
    assert cli_main(["run", "--dataset", "circle", "--method", "rot", "--epochs", "2", "--json", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["preset"] == "circle" and rec["protocol"] == "predefined"
    assert rec["config"]["trunk"]["hidden"] == 100 and rec["config"]["trainer"]["optimizer"] == "adamw"
    assert rec["config"]["trainer"]["batch_size"] is None and rec["config"]["trainer"]["clip_norm"] is None  # full batch
    assert rec["config"]["trunk"]["weight_init"] == "normal-0.001"  # the released script's N(0, 0.001^2)
    assert rec["config"]["knobs"]["rot_gamma"] == 0.03  # the manifold's validated gamma
    assert rec["config"]["knobs"]["rot_max_points"] == 50  # plans on a random half of the batch each step
    assert rec["config"]["overrides"]["hidden"] == "preset"
    # what the user says wins over the preset
    assert cli_main(["run", "--dataset", "circle", "--method", "rot", "--epochs", "2", "--param", "rot_gamma=0.1",
                     "--json", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["config"]["knobs"]["rot_gamma"] == 0.1
    assert cli_main(["run", "--dataset", "circle", "--method", "rot", "--epochs", "2", "--protocol", "default",
                     "--json", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["preset"] is None and rec["config"]["trunk"]["hidden"] == 200
    assert rec["config"]["knobs"]["rot_gamma"] == split_params("rot", {})[2]["rot_gamma"]


def test_datasets_command_shows_presets(capsys):
    assert cli_main(["datasets"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("circle "))
    assert " yes " in line


def test_bench_takes_a_target_for_the_users_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(120, 2))
    lines = ["u,v,price"] + [f"{a:.4f},{b:.4f},{a + 2 * b:.4f}" for a, b in X]
    data = tmp_path / "mine.csv"
    data.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s.sqlite"
    assert cli_main(["bench", "--datasets", str(data), "--methods", "ls,sk-ridge", "--target", "price",
                     "--seeds", "1", "--epochs", "2", "--store", str(store), "-q", "--no-diagnostics"]) == 0
    rows = ResultStore(store).rows()
    assert sorted(r["method"] for r in rows) == ["ls", "sk-ridge"]
    assert all(r["dataset"].startswith("mine") for r in rows), [r["dataset"] for r in rows]


def test_suite_file_names_the_target_of_the_users_file(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(size=(100, 2))
    (tmp_path / "mine.csv").write_text("\n".join(["u,v,price"] + [f"{a:.4f},{b:.4f},{a - b:.4f}" for a, b in X]))
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        datasets = ["mine.csv"]
        methods = ["ls", "sk-ridge"]
        seeds = 1
        epochs = 1
        [targets]
        "mine.csv" = "price"
    """))
    suite = load_suite_file(path)  # the relative path is taken from the suite file's folder
    assert [r.dataset_name.startswith("mine") for r in suite.runs] == [True, True]
    store = ResultStore(tmp_path / "s.sqlite")
    assert run_suite(suite, store, progress=False, diagnostics=False, threads=1).failed == 0
    path.write_text(path.read_text().replace("seeds = 1", "seeds = 1\ntune = 0"))
    with pytest.raises(ValueError, match="'tune' must be"):
        load_suite_file(path)


def test_runs_made_under_an_old_recipe_default_are_flagged(tmp_path, monkeypatch, capsys):
    import dataclasses

    from beyondmse import recipes
    from beyondmse.bench.runner import stale_runs
    from beyondmse.cli import _warn_stale

    store = ResultStore(tmp_path / "s.sqlite")
    suite = adhoc_suite([toy()], ["ls", "nca"], seeds=1, epochs=1)
    run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    assert stale_runs(suite, store) == []  # same code, same defaults
    # a later version changes nca's default: the stored run is kept (same key), and flagged
    nca = recipes.RECIPES["nca"]
    stored = nca.knobs["learn_scale"]
    changed = dataclasses.replace(nca, knobs={**nca.knobs, "learn_scale": not stored})
    monkeypatch.setitem(recipes.RECIPES, "nca", changed)
    stale = stale_runs(suite, store)
    assert [(spec.method, diff) for spec, diff in stale] == [("nca", {"learn_scale": (stored, not stored)})]
    assert [r.method for r in suite.runs if r.key in store.keys("finished")] == ["ls", "nca"]  # not re-run
    _warn_stale(suite, store)
    assert f"nca learn_scale: {stored!r} -> {not stored!r}" in capsys.readouterr().out
    # a knob the user set explicitly is the same request either way: not stale
    explicit = adhoc_suite([toy()], ["nca"], seeds=1, epochs=1, params={"learn_scale": not stored})
    run_suite(explicit, store, progress=False, diagnostics=False, threads=1)
    assert stale_runs(explicit, store) == []


def test_runs_made_under_an_old_shared_trainer_default_are_flagged(tmp_path, monkeypatch):
    from beyondmse.bench import matching
    from beyondmse.bench.runner import stale_runs

    store = ResultStore(tmp_path / "s.sqlite")
    suite = adhoc_suite([toy()], ["ls"], seeds=1)
    run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    assert stale_runs(suite, store) == []
    shared = matching._shared_defaults()
    monkeypatch.setattr(matching, "_shared_defaults", lambda: {**shared, "patience": shared["patience"] + 5})
    patience = shared["patience"]
    assert [diff for _, diff in stale_runs(suite, store)] == [{"patience": (patience, patience + 5)}]
