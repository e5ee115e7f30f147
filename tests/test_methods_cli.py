import json

import pytest

from beyondmse.cli import _parse_params, main
from beyondmse.recipes import build_model, parse_method, split_params


def test_parse_method_and_suffixes():
    assert parse_method("ls") == ("ls", [])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        parse_method("nope")
    with pytest.raises(ValueError, match="unknown regularizer suffix"):
        parse_method("ls+bogus")


def test_params_are_routed_and_unknown_ones_rejected():
    trunk, trainer, knobs = split_params("huber", {"hidden": 64, "lr": 0.01, "huber_delta": 0.5})
    assert trunk["hidden"] == 64 and trainer["lr"] == 0.01 and knobs["huber_delta"] == 0.5
    with pytest.raises(ValueError, match="unknown parameter"):
        split_params("ls", {"k": 3})
    model, _ = build_model("ls", 6, 2, {"hidden": 16, "depth": 1, "embedding_dim": 0})
    assert model.trunk.out_features == 16 and model.target_dim == 2  # embedding_dim 0: no embedding layer
    model, _ = build_model("ls", 6, 2, {"hidden": 16, "depth": 1})
    assert model.trunk.out_features == 64  # the shared trunk's embedding layer


def test_cli_params_parse_json_and_none_like_suite_files():
    got = _parse_params(["lr=0.01", "learn_scale=true", "batch_size=none", "patience=null", "select=mae"])
    assert got == {"lr": 0.01, "learn_scale": True, "batch_size": None, "patience": None, "select": "mae"}
    with pytest.raises(ValueError, match="key=value"):
        _parse_params(["lr"])


def test_cli_run_writes_design_json(tmp_path, capsys, shared_data):
    out = tmp_path / "out.json"
    code = main(["run", "--dataset", "wine_quality-num", "--method", "ls", "--seeds", "2", "--epochs", "1",
                 "--json", str(out), "-q"])
    assert code == 0
    records = json.loads(out.read_text())
    assert [r["seed"] for r in records] == [0, 1]
    for r in records:
        assert {"dataset", "method", "seed", "params", "metrics", "fit_seconds", "epochs"} <= set(r)
        assert r["dataset"] == "wine_quality-num" and {"mae", "rmse", "r2"} <= set(r["metrics"])
    assert "MAE" in capsys.readouterr().out


def test_cli_run_on_user_csv(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.random(80), "b": rng.random(80)})
    frame["t"] = frame.a * 2 + frame.b
    frame.to_csv(tmp_path / "mine.csv", index=False)
    assert main(["run", "--dataset", str(tmp_path / "mine.csv"), "--target", "t", "--method", "ls",
                 "--epochs", "1", "-q", "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["dataset"] == "mine.csv"
    assert main(["run", "--dataset", str(tmp_path / "mine.csv"), "--target", "t,b", "--method", "ls",
                 "--epochs", "1", "-q", "--json", str(tmp_path / "two.json")]) == 0
    assert np.isfinite(json.loads((tmp_path / "two.json").read_text())["metrics"]["mae"])


def test_cli_run_and_bench_on_a_text_csv(tmp_path, capsys):
    """--text turns CSV text columns into features in run and in an ad-hoc bench suite alike;
    the runs see the text (a target that only the words carry is learned)."""
    import numpy as np

    from beyondmse.bench import ResultStore

    rng = np.random.default_rng(0)
    words = ["oil", "canvas", "bronze", "print", "ink", "gold"]
    rows = ["title,medium,year"]
    for i in range(300):  # every title is unique: read as a category, it carries nothing
        title = " ".join(rng.choice(words, 3))
        rows.append(f"{title} lot{i},{rng.choice(words)},{1900 + 40 * title.count('gold') + rng.integers(0, 5)}")
    path = tmp_path / "art.csv"
    path.write_text("\n".join(rows) + "\n")
    assert main(["run", "--dataset", str(path), "--target", "year", "--text", "title,medium", "--method", "ls",
                 "--epochs", "30", "-q", "--json", str(tmp_path / "run.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["metrics"]["r2"] > 0.5
    store = tmp_path / "b.sqlite"
    assert main(["bench", "--datasets", str(path), "--target", "year", "--text", "title,medium", "--methods",
                 "ls,sk-ridge", "--seeds", "1", "--epochs", "30", "-q", "--no-diagnostics", "--store", str(store)]) == 0
    rows = ResultStore(store).rows()
    assert sorted(r["method"] for r in rows) == ["ls", "sk-ridge"]
    assert all(r["metrics"]["r2"] > 0.5 for r in rows)
    assert main(["bench", "--suite", "quick", "--text", "title", "--store", str(store)]) == 2
    assert "apply to ad-hoc suites" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["run", "--dataset", "nope", "--method", "ls"], "unknown dataset 'nope'"),
    (["run", "--dataset", "wine_quality", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--dataset", "x.csv", "--method", "ls", "--target", "t"], "no such data file"),
])
def test_cli_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_datasets_lists_sources(capsys, shared_data):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "diamonds-num" in out and "embedded" in out or "$BEYONDMSE_DATA" in out
