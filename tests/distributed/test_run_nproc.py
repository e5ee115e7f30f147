"""``beyondmse run --nproc 2`` against one process, on the shared cpu_act data (slow: three runs)."""

from __future__ import annotations

import json

import pytest

from beyondmse.cli import main

ARGS = ["run", "--dataset", "cpu_act-num", "--method", "nca,rot", "--epochs", "2", "-q",
        "--param", "dropout=0", "--param", "patience=null"]


def _run(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    assert main([*ARGS, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_processes_give_the_one_process_result_and_repeat_exactly(shared_data, tmp_path):
    one = _run(tmp_path, "one")
    two = _run(tmp_path, "two", "--nproc", "2")
    again = _run(tmp_path, "again", "--nproc", "2")
    assert [r["method"] for r in two] == [r["method"] for r in one] == ["nca", "rot"]
    for a, b, c in zip(one, two, again):
        assert b["epochs"] == a["epochs"] == 2
        assert b["sizes"] == a["sizes"]
        # no dropout: the same batches, losses and gradients, so the same model up to float32 rounding
        for key in ("mae", "rmse"):
            assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=2e-3), (a["method"], key)
        assert b["metrics"]["r2"] == pytest.approx(a["metrics"]["r2"], abs=2e-3)
        assert b["metrics"]["r2"] > 0.5, "the comparison should be between trained models"
        # the same seed gives the same numbers on two processes
        assert c["metrics"] == b["metrics"]
        assert c["val_metrics"] == b["val_metrics"]
