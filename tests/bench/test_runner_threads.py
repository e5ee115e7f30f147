"""Threads per run: an explicit OMP_NUM_THREADS wins over sharing out the cores."""

from beyondmse.bench.runner import default_threads


def test_explicit_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(2) == 3


def test_cores_shared_out_without_it(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_threads(1) == 8 and default_threads(2) == 4 and default_threads(16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # empty or junk: ignored
    assert default_threads(4) == 2
