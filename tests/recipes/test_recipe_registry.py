"""A recipe registered from a new module of ``beyondmse.recipes`` reaches every consumer:
the registry, the CLI, the suites (ad hoc and TOML) and the report with its family figure hook."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import beyondmse.recipes as recipes
from beyondmse.bench import ResultStore, adhoc_suite, load_suite_file, run_suite, write_report
from beyondmse.cli import main as cli_main

NEW_MODULE = '''
"""A family that exists only in this test: a head and a recipe in one new module."""
from pathlib import Path

from torch import nn

from beyondmse.heads import Linear
from beyondmse.recipes import Recipe, register


class ToyHead(Linear):
    """A linear head under a new name (stands in for a new file in heads/)."""


register(Recipe("toy-head", "toyfamily", "a head registered from a new recipes module",
                lambda d, m, k: ToyHead(d, m, loss="mse"), knobs={"toy_knob": 1}, plots=__name__))

CALLS = []


def report_figures(records, out_dir):
    CALLS.append(sorted({r["method"] for r in records}))
    path = Path(out_dir) / "toyfamily.png"
    path.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n")
    return [path]
'''


@pytest.fixture
def new_family(tmp_path, monkeypatch):
    pkg_dir = tmp_path / "extra_recipes"
    pkg_dir.mkdir()
    (pkg_dir / "toyfamily.py").write_text(NEW_MODULE)
    monkeypatch.setattr(recipes, "__path__", [*recipes.__path__, str(pkg_dir)])
    try:
        assert "toyfamily" in recipes.load_families()
        yield sys.modules["beyondmse.recipes.toyfamily"]
    finally:
        recipes.RECIPES.pop("toy-head", None)
        sys.modules.pop("beyondmse.recipes.toyfamily", None)


def _csv(path, n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    y = X[:, 0] - 0.5 * X[:, 1] + 0.05 * rng.normal(size=n)
    rows = ["a,b,c,y"] + [f"{a:.5f},{b:.5f},{c:.5f},{t:.5f}" for (a, b, c), t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_registry_knows_the_new_family(new_family):
    assert "toy-head" in recipes.available_methods()
    assert recipes.methods_in_family("toyfamily") == ["toy-head"]
    assert "toyfamily" in recipes.families()
    model, _ = recipes.build_model("toy-head+rot", 3, 1)
    assert type(model.head).__name__ == "ToyHead" and len(model.regularizers) == 1


def test_cli_runs_the_new_recipe(new_family, tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    out = tmp_path / "r.json"
    rc = cli_main(["run", "--dataset", str(data), "--target", "y", "--method", "toy-head", "--epochs", "2",
                   "--param", "toy_knob=3", "--json", str(out), "-q"])
    assert rc == 0
    record = json.loads(out.read_text())
    record = record[0] if isinstance(record, list) else record
    assert record["method"] == "toy-head" and np.isfinite(record["metrics"]["mae"])
    # and an unknown name's error lists it among the valid ones
    assert cli_main(["run", "--dataset", str(data), "--target", "y", "--method", "no-such-head"]) == 2
    assert "toy-head" in capsys.readouterr().err


def test_suites_and_report_pick_up_the_new_recipe(new_family, tmp_path):
    from beyondmse.data import load_dataset

    data = _csv(tmp_path / "d.csv")
    ds = load_dataset(str(data), target="y")
    suite = adhoc_suite([ds], ["ls", "toy-head"], seeds=2, epochs=2)
    assert {r.method for r in suite.runs} == {"ls", "toy-head"}
    toml = tmp_path / "s.toml"
    toml.write_text(textwrap.dedent("""
        datasets = ["wine_quality-num"]
        methods = ["ls", "toy-head"]
        seeds = 1
    """))
    assert "toy-head" in {r.method for r in load_suite_file(toml).runs}

    store = ResultStore(tmp_path / "res.sqlite")
    result = run_suite(suite, store, progress=False, diagnostics=False, threads=1)
    assert result.failed == 0
    rep = write_report(store, tmp_path / "rep")
    md = rep["report"].read_text()
    assert "`toy-head`" in md
    assert new_family.CALLS == [["toy-head"]]  # the hook saw exactly its family's runs
    assert "toyfamily.png" in {p.name for p in rep["figures"]}
    assert "beyondmse.recipes.toyfamily" in md


def test_report_prints_a_family_notes_hook(new_family, tmp_path, monkeypatch):
    from beyondmse.bench.report import family_notes

    monkeypatch.setattr(new_family, "report_notes", lambda records: [f"toy note: {len(records)} run(s)"],
                        raising=False)
    runs = [{"method": "toy-head", "dataset": "d", "seed": s} for s in range(2)] + [{"method": "ls", "dataset": "d"}]
    assert family_notes(runs) == ["toy note: 2 run(s)"]
