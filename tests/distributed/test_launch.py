"""The launcher: a rank that fails or hangs ends the job with a clear error, never a hang."""

from __future__ import annotations

import signal
import time

import pytest
import torch
import torch.distributed as dist

from beyondmse import distributed
from beyondmse.distributed import DistributedRunError, launch


def _rank_1_breaks():
    if distributed.rank() == 1:
        raise RuntimeError("rank 1 broke on purpose")
    t = torch.ones(1)
    dist.all_reduce(t)  # rank 0 waits here for a rank that is gone
    return float(t)


def _rank_1_hangs():
    if distributed.rank() == 1:
        time.sleep(120)  # stuck: never reaches the collective
    t = torch.ones(1)
    dist.all_reduce(t)
    return float(t)


@pytest.mark.timeout(120)
def test_a_failing_rank_ends_the_job_with_its_error():
    start = time.perf_counter()
    with pytest.raises(DistributedRunError, match=r"rank 1 of 2 failed: RuntimeError: rank 1 broke on purpose") as err:
        launch(_rank_1_breaks, nproc=2, threads=1, timeout_s=60)
    assert "_rank_1_breaks" in str(err.value)  # the failing rank's traceback comes with it
    assert time.perf_counter() - start < 60  # the launcher stopped rank 0 instead of letting it wait


def _rank_value():
    return distributed.rank()


@pytest.mark.timeout(120)
def test_launch_gives_back_the_callers_signal_handlers():
    """The elastic launcher turns SIGINT/SIGTERM into its own exception and leaves that installed;
    after launch Ctrl-C must raise KeyboardInterrupt again (and a forked bench worker die on SIGTERM)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert launch(_rank_value, nproc=1, threads=1, timeout_s=60) == {0: 0}
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with pytest.raises(DistributedRunError):  # and after a failed job
        launch(_rank_1_breaks, nproc=2, threads=1, timeout_s=60)
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stuck_rank_ends_the_job_after_the_timeout():
    start = time.perf_counter()
    with pytest.raises(DistributedRunError, match=r"rank 0 of 2 failed: .*(?i:timeout|timed out)"):
        launch(_rank_1_hangs, nproc=2, threads=1, timeout_s=3)
    assert time.perf_counter() - start < 60  # not the 120 s rank 1 sleeps


def test_launch_checks_the_process_count():
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="nproc"):
            launch(_rank_1_breaks, nproc=bad)


def test_without_a_process_group_the_gather_is_the_identity():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main_process()
    z, y = torch.randn(5, 3, requires_grad=True), torch.randn(5, 1)
    gz, gy = distributed.gather_batch(z, y)
    assert gz is z and gy is y
    assert distributed.local_part(z) is z
