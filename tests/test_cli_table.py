"""``beyondmse run`` prints the report's text table (one implementation of mean ± 2σ over seeds)."""

import json

import numpy as np
import pandas as pd

from beyondmse.cli import main


def test_run_prints_the_report_table_with_seed_statistics(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.random(80), "b": rng.random(80)})
    frame["t"] = frame.a * 2 + frame.b
    frame.to_csv(tmp_path / "toy.csv", index=False)
    out = tmp_path / "runs.json"
    assert main(["run", "--dataset", str(tmp_path / "toy.csv"), "--target", "t", "--method", "ls", "--seeds", "3",
                 "--epochs", "2", "-q", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    records = json.loads(out.read_text())
    assert "MAE ± 2σ" in text and "verdict" not in text  # the report's table, without a baseline column
    row = next(line for line in text.splitlines() if line.startswith("ls ") and "±" in line)
    for metric in ("mae", "rmse", "r2"):
        v = np.array([r["metrics"][metric] for r in records])
        assert f"{v.mean():.4f} ± {2 * v.std(ddof=1):.4f}" in row, (metric, row)
