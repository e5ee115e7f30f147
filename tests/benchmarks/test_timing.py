"""The shared timing helper of benchmarks/: warm-up, interleaved repeats, ratios to the baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _timing  # noqa: E402


class FakeClock:
    """perf_counter that advances only when a timed function says so: deterministic timings."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_compare_interleaves_warms_up_and_divides_by_the_baseline(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_timing.time, "perf_counter", clock)
    calls = []

    def work(name, seconds):
        def fn():
            calls.append(name)
            clock.now += seconds * (2.0 if len(calls) > 12 else 1.0)  # the last two repeats run at double load
        return fn

    # absolute times drift with the load, the per-repeat ratios do not
    res = _timing.compare({"base": work("base", 1.0), "slow": work("slow", 3.0)}, "base",
                          repeats=4, warmup=2, number=2)
    assert calls[:4] == ["base", "base", "slow", "slow"]  # warm-up, untimed
    assert calls[4:] == ["base", "base", "slow", "slow"] * 4  # interleaved repeats of `number` calls
    np.testing.assert_allclose(res["base"].seconds, [1.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(res["slow"].ratio, 3.0)
    assert res["base"].ratio_median == 1.0 and res["slow"].median == 4.5 and res["slow"].iqr == 3.0
    assert res["slow"].row() == ["slow", "4500.000", "3000.000", "3.00 [3.00, 3.00]"]
    with pytest.raises(ValueError, match="baseline"):
        _timing.compare({"a": lambda: None}, "b")
    with pytest.raises(ValueError, match="repeats"):
        _timing.compare({"a": lambda: None}, "a", repeats=0)


def test_print_table(capsys):
    _timing.print_table(["a", "b"], [[1, "x"]])
    assert capsys.readouterr().out == "| a | b |\n|---|---|\n| 1 | x |\n"
