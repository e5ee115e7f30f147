"""One multi-process run as a Ray Train job (TorchTrainer), the same code path as ``--nproc``,
with the numbers of the elastic launcher and (no dropout) of one process.

Slow (starts a local Ray instance); skipped with its reason where Ray Train is not installed
(``pip install "beyondmse[ray]"``).
"""

from __future__ import annotations

from functools import partial

import pytest

from beyondmse import distributed
from beyondmse.experiment import run_experiment

# a function of the package, so that Ray's workers can import it (a function of this test module
# they could not)
JOB = partial(run_experiment, epochs=2, params={"dropout": 0.0, "patience": None}, diagnostics=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_ray_train_job_trains_one_run_on_two_workers_like_the_elastic_launcher(shared_data):
    pytest.importorskip("ray.train.torch", reason="Ray Train is an optional extra: pip install 'beyondmse[ray]'")
    import ray

    try:
        on_ray = distributed.launch_ray(JOB, ("cpu_act-num", "nca", 0), nproc=2)
    finally:
        ray.shutdown()
    on_elastic = distributed.launch(JOB, ("cpu_act-num", "nca", 0), nproc=2, threads=1)[0]
    one = JOB("cpu_act-num", "nca", 0)
    assert on_ray["epochs"] == on_elastic["epochs"] == 2
    assert on_ray["fit_seconds"] != on_elastic["fit_seconds"]  # two runs, not one record twice
    for key in ("mae", "rmse", "r2"):  # same batches, same gloo reductions: the same numbers up to rounding
        assert on_ray["metrics"][key] == pytest.approx(on_elastic["metrics"][key], rel=1e-4), key
        assert on_ray["metrics"][key] == pytest.approx(one["metrics"][key], rel=2e-3), key
