"""Suites as data: the built-in TOML files, their published numbers, the suite-file format,
and that a suite run gives exactly what a direct ``run_experiment`` call gives."""

from __future__ import annotations

import math
import re
import textwrap

import numpy as np
import pytest

from beyondmse.bench import ResultStore, adhoc_suite, load_suite_file, run_suite, write_report
from beyondmse.bench.suites import Published, builtin_suites, get_suite, published_for
from beyondmse.experiment import run_experiment
from beyondmse.recipes import methods_in_family

PAPER_SUITES = ("quick", "bb-tabular", "softstep-synthetic", "tightness-coords")


# --------------------------------------------------------------------------- built-in files
def test_every_builtin_suite_loads(shared_data):
    names = builtin_suites()
    assert set(PAPER_SUITES) <= set(names)
    for name in list(names) + ["all"]:
        suite = get_suite(name)
        assert len(suite) > 0, name
        assert suite.baseline in {r.method for r in suite.runs}, name
        assert not suite.skipped, (name, suite.skipped)  # everything is installed and on disk here
        if name != "all":  # seed-major: a suite stopped early has every method on its first seeds
            assert [r.seed for r in suite.runs] == sorted(r.seed for r in suite.runs)
    all_names = {r.key for r in get_suite("all").runs}
    assert {r.key for n in PAPER_SUITES for r in get_suite(n).runs} == all_names


def test_quick_suite_is_the_demo():
    """The demo's runs: embedded diamonds subsample, 8 methods x 3 seeds, 10 epochs, batch 256
    and the tabular trunk with a cosine schedule for the torch methods, ls on the plain MLP too,
    a cheaper ROT plan for mt+rot, peers at their own settings."""
    suite = get_suite("quick")
    methods = ["ls", "huber", "sk-hgb", "sk-ridge", "e2e-codec", "hl-gauss", "nca-softstep-i", "mt+rot", "ls"]
    assert [(r.seed, r.method) for r in suite.runs] == [(s, m) for s in range(3) for m in methods]
    assert {r.dataset for r in suite.runs} == {"diamonds-10k"} and {r.epochs for r in suite.runs} == {10}
    assert all(r.protocol is None for r in suite.runs)
    for i, r in enumerate(suite.runs):
        expected = {} if r.method.startswith("sk-") else {"batch_size": 256, "trunk": "tabular", "schedule": "cosine"}
        if r.method == "mt+rot":
            expected["rot_max_points"] = 128
        if i % len(methods) == len(methods) - 1:  # the grid's ls on the plain MLP
            expected.update(trunk="mlp", schedule="constant")
        assert r.params == expected, r.method
    assert "at most 10 epochs" in suite.summary
    short = get_suite("quick", seeds=1, epochs=2)
    assert len(short) == len(methods) and "at most 2 epochs" in short.summary


def test_codec_methods_come_from_the_family():
    suite = get_suite("bb-tabular")
    codec = {r.method for r in suite.runs if "k" in r.params}
    assert codec == set(methods_in_family("codec")) and len(codec) >= 6
    assert {r.params["k"] for r in suite.runs if "k" in r.params} == {5, 15, 25}
    retina = [r for r in suite.runs if r.dataset == "retinamnist"]
    assert retina and all(r.protocol == "predefined" and r.params["weight_decay"] == 0.01 for r in retina)
    assert not any(r.method.startswith("sk-") for r in retina)  # the peers take feature vectors only
    assert {r.protocol for r in suite.runs if r.dataset != "retinamnist"} == {"paper"}


def test_tightness_coords_carries_the_scripts_protocol():
    suite = get_suite("tightness-coords")
    runs = {(r.dataset, r.method): r for r in suite.runs if r.seed == 0}
    ls = runs[("coords-circle", "ls")]
    assert ls.epochs == 10000 and ls.protocol == "predefined"
    assert ls.params == {"hidden": 100, "depth": 2, "dropout": 0.0, "embedding_dim": 0,
                         "weight_init": "normal-0.001", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01,
                         "batch_size": None, "clip_norm": None, "patience": None, "eval_every": 100,
                         "select": "mse"}
    assert (runs[("coords-torus", "rot")].params["rot_weight"], runs[("coords-torus", "rot")].params["rot_gamma"]) \
        == (10.0, 0.01)
    assert runs[("coords-mammoth", "ph-reg")].params["ph_reg_topo_weight"] == 10000.0
    assert runs[("coords-circle", "ph-reg")].params["ph_reg_topo_weight"] == 100.0
    assert runs[("coords-circle", "mt+rot")].params["n_targets"] == 8
    assert {runs[(d, m)].params["rot_max_points"] for d in ("coords-circle", "coords-torus", "coords-mammoth")
            for m in ("rot", "mt+rot")} == {50}


# --------------------------------------------------------------------------- published numbers
SOURCE = re.compile(r"'[^']{10,}', Table \d")  # a quoted paper title, then its table


def test_published_numbers_parse_and_cite_a_source():
    counts = {}
    for name, path in builtin_suites().items():
        pubs = published_for([name])
        counts[name] = len(pubs)
        for p in pubs:
            assert SOURCE.search(p.source), (name, p.source)
            assert math.isfinite(p.value) and (p.spread is None or p.spread >= 0)
    # Beyond Binning Tables 3-5: 17 rows (ls, huber, 5 codecs x 3 k) x 7 datasets here x 3 metrics
    assert counts["bb-tabular"] == 17 * 7 * 3
    assert counts["tightness-coords"] == 6 * 3  # Table 3: six rows x three manifolds
    bb = published_for(["bb-tabular"])
    e2e = [p for p in bb if p.dataset == "diamonds-num" and p.method == "e2e-codec" and p.metric == "mae"]
    assert {p.params["k"]: p.value for p in e2e} == {5: 0.048, 15: 0.047, 25: 0.047}
    assert {p.metric for p in bb} == {"mae", "rmse", "r2"}
    assert all("Beyond Binning" in p.source for p in bb)


def test_every_published_number_has_its_run_in_the_suite():
    """So a report over a full suite never says a published row was not run."""
    for name in PAPER_SUITES:
        suite = get_suite(name)
        for p in suite.published:
            assert any(r.dataset_name == p.dataset and r.method == p.method
                       and all(r.params.get(k) == v for k, v in p.params.items()) for r in suite.runs), (name, p)


def test_published_matches_the_report_row_with_its_params():
    p = Published("d", "soft-bin", "mae", 0.1, "'Some Paper Title', Table 3", params={"k": 25})
    assert p.label == "soft-bin k=25"
    row = {"dataset": "d", "method": "soft-bin k=25", "base_method": "soft-bin", "params": {"k": 25}}
    assert p.matches(row)
    assert not p.matches({**row, "params": {"k": 5}, "method": "soft-bin k=5"})
    # a run that left k at its default still matches through the resolved params
    assert p.matches({**row, "method": "soft-bin", "params": {}, "resolved_params": {"k": 25}})
    assert not p.matches({**row, "dataset": "other"})
    with pytest.raises(ValueError, match="source"):
        Published("d", "m", "mae", 0.1, "")


def test_report_puts_published_numbers_next_to_the_stored_runs(tmp_path):
    """A store holding bb-tabular runs (k sweep) gets the paper's numbers for exactly those runs."""
    store = ResultStore(tmp_path / "s.sqlite")
    for seed in range(2):
        for k, mae in ((5, 0.050), (25, 0.040)):
            rec = {"dataset": "diamonds-num", "method": "e2e-codec", "seed": seed, "params": {"k": k},
                   "metrics": {"mae": mae + 0.001 * seed, "rmse": 0.06, "r2": 0.9}, "epochs": 3}
            store.record(key=f"e{k}-{seed}", dataset="diamonds-num", method="e2e-codec", seed=seed, epochs=3,
                         protocol="paper", params={"k": k}, status="finished", suite="bb-tabular", result=rec)
    text = (write_report(store, tmp_path / "rep", family=False)["report"]).read_text()
    table = text.split("## Published numbers next to ours")[1].split("\n## ")[0]
    lines = [line for line in table.splitlines() if line.startswith("| diamonds-num")]
    assert len(lines) == 2 * 3  # k = 5 and 25, three metrics each; nothing for runs that do not exist
    k25 = next(line for line in lines if "`e2e-codec k=25`" in line and "| mae |" in line)
    assert "0.047" in k25 and "0.0405" in k25 and "Beyond Binning" in k25
    assert "not run" not in table


# --------------------------------------------------------------------------- the file format
def test_suite_file_and_adhoc(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        name = "mine"
        seeds = 2
        epochs = 3
        datasets = ["diamonds", "wine_quality-num"]
        methods = ["ls", "sk-ridge"]
        [params]
        batch_size = 64
        [[grid]]
        method = "huber"
        huber_delta = [0.05, 0.2]
    """))
    suite = load_suite_file(path)
    assert suite.name == "mine" and suite.baseline == "ls"
    assert len(suite) == 2 * 2 * 2 + 2 * 2 * 2  # (ls, ridge) x 2 datasets x 2 seeds + huber 2 deltas x 2 x 2
    ridge = [r for r in suite.runs if r.method == "sk-ridge"]
    assert all(r.params == {} for r in ridge)  # trainer params go to torch methods only
    assert {r.params["huber_delta"] for r in suite.runs if r.method == "huber"} == {0.05, 0.2}
    with pytest.raises(ValueError, match="unknown method"):
        adhoc_suite(["diamonds"], ["no-such-method"])
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["x"]\nmethods = ["ls"]\ncolour = 1\n')
    with pytest.raises(ValueError, match="unknown key"):
        load_suite_file(bad)


def test_epochs_for_sets_one_datasets_budget(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('seeds = 1\nepochs = 20\ndatasets = ["a", "b"]\nmethods = ["ls"]\n[epochs_for]\nb = 300\n')
    assert {r.dataset: r.epochs for r in load_suite_file(path).runs} == {"a": 20, "b": 300}
    # an explicit --epochs is the user's budget for every dataset
    assert {r.epochs for r in load_suite_file(path, epochs=5).runs} == {5}
    path.write_text('datasets = ["a"]\nmethods = ["ls"]\n[epochs_for]\na = 0\n')
    with pytest.raises(ValueError, match="epochs_for.a"):
        load_suite_file(path)


def test_max_epochs_next_to_the_suites_epochs_is_refused(tmp_path):
    # a run's epochs replace its max_epochs: the cap the file asks for would be silently ignored
    path = tmp_path / "s.toml"
    for where in ('[params]\nmax_epochs = 400\n', '[[override]]\ndatasets = ["a"]\nmax_epochs = 400\n'):
        path.write_text('epochs = 200\ndatasets = ["a"]\nmethods = ["ls"]\n' + where)
        with pytest.raises(ValueError, match="epochs_for"):
            load_suite_file(path)
    # without a suite-wide epochs, an override's max_epochs is the cap (the unstructured suite's way)
    path.write_text('seeds = 1\ndatasets = ["a"]\nmethods = ["ls"]\n[[override]]\ndatasets = ["a"]\nmax_epochs = 60\n')
    (run,) = load_suite_file(path).runs
    assert run.epochs is None and run.params["max_epochs"] == 60


def test_overrides_families_and_none(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent("""
        seeds = [4]
        protocol = "paper"
        datasets = ["a", "b"]
        methods = ["ls", "sk-knn"]
        families = ["neighbors"]
        [protocols]
        b = "default"
        [params]
        batch_size = "none"
        [[override]]
        families = ["neighbors"]
        learn_scale = true
        [[override]]
        methods = ["nca", "sk-knn"]
        datasets = ["b"]
        chunk_size = 7
        [[grid]]
        family = "codec"
        datasets = ["a"]
        k = [5, 15]
    """))
    suite = load_suite_file(path)
    runs = {(r.dataset, r.method, r.params.get("k")): r for r in suite.runs}
    assert {r.seed for r in suite.runs} == {4}
    assert runs[("a", "ls", None)].params == {"batch_size": None} and runs[("a", "ls", None)].protocol == "paper"
    assert runs[("b", "ls", None)].protocol == "default"
    assert runs[("a", "nca", None)].params == {"batch_size": None, "learn_scale": True}
    assert runs[("b", "nca", None)].params == {"batch_size": None, "learn_scale": True, "chunk_size": 7}
    assert runs[("a", "sk-knn", None)].params == {} and runs[("b", "sk-knn", None)].params == {"chunk_size": 7}
    neighbors = set(methods_in_family("neighbors"))
    assert {m for _, m, _ in runs} == {"ls", "sk-knn"} | neighbors | set(methods_in_family("codec"))
    assert not any(d == "b" and k for d, _, k in runs)  # the codec grid is restricted to dataset a
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["a"]\nfamilies = ["no-such-family"]\n')
    with pytest.raises(ValueError, match="no-such-family"):
        load_suite_file(bad)
    bad.write_text('datasets = ["a"]\nmethods = ["ls"]\n[[override]]\nlr = 1.0\n')
    with pytest.raises(ValueError, match="filter"):
        load_suite_file(bad)


def test_builtin_suites_leave_out_what_is_missing(tmp_path, monkeypatch):
    from beyondmse.bench import suites

    (tmp_path / "x.toml").write_text('datasets = ["diamonds-10k", "no-such-set"]\nmethods = ["ls", "no-such-method"]\n')
    monkeypatch.setattr(suites, "BUILTIN_DIR", tmp_path)
    suite = get_suite("x")
    assert {(r.dataset, r.method) for r in suite.runs} == {("diamonds-10k", "ls")}
    assert len(suite.skipped) == 2
    with pytest.raises(ValueError, match="unknown method"):
        load_suite_file(tmp_path / "x.toml")  # a user's file is strict


# --------------------------------------------------------------------------- same seed, same result
def test_suite_run_equals_direct_run_experiment(tmp_path):
    """A tiny coordinate-table cell through a suite file + the runner + the store gives exactly
    the numbers of a direct run_experiment call with the same seed and settings."""
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent("""
        seeds = [1]
        epochs = 4
        protocol = "predefined"
        datasets = ["coords-circle"]
        methods = ["rot"]
        [params]
        hidden = 16
        weight_init = "normal-0.001"
        optimizer = "adamw"
        weight_decay = 0.01
        batch_size = "none"
        clip_norm = "none"
        patience = "none"
        eval_every = 2
        rot_gamma = 0.03
    """))
    suite = load_suite_file(path)
    store = ResultStore(tmp_path / "s.sqlite")
    assert run_suite(suite, store, progress=False, threads=1, diagnostics=False).finished == 1
    stored = store.rows()[0]
    direct = run_experiment("coords-circle", "rot", 1, epochs=4, protocol="predefined", diagnostics=False,
                            params={"hidden": 16, "weight_init": "normal-0.001", "optimizer": "adamw",
                                    "weight_decay": 0.01, "batch_size": None, "clip_norm": None,
                                    "patience": None, "eval_every": 2, "rot_gamma": 0.03})
    for m in ("mae", "mse", "rmse", "r2"):
        assert stored["metrics"][m] == direct["metrics"][m], m
    assert stored["history"]["val_mae"] == direct["history"]["val_mae"]


def test_softstep_synthetic_pins_the_studys_settings():
    """One trunk for every head; the neighbor heads at batch 256 on a learnable squared-L2 scale."""
    suite = get_suite("softstep-synthetic")
    trunk = {"hidden": 200, "depth": 2, "dropout": 0.1, "embedding_dim": 64, "patience": 10, "min_delta": 0.0,
             "select": "mae"}
    for r in suite.runs:
        spiral = r.dataset_name == "softstep-spiral"  # a plateau, then slow learning: no early stopping, 400 epochs
        assert r.epochs == (400 if spiral else 100)
        trunk["patience"] = None if spiral else 10
        if r.method.startswith("sk-"):
            assert r.params == {}
        elif r.method == "ls":
            assert r.params == {**trunk, "batch_size": 32}
        else:
            assert r.params == {**trunk, "batch_size": 256, "similarity": "l2sq", "learn_scale": True,
                                "l2_scale": 30.0}, r.method
    assert {r.method for r in suite.runs} >= set(methods_in_family("neighbors"))
