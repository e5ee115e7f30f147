"""Training on several processes (``torch.distributed``) with batch losses that see the global batch.

Every head and regularizer of this library is a *batch-level* loss ``L(Z, Y)``: NCA and DiffKNN
weigh each sample against the others of the batch, ROT-Reg, RankSim, Ordinal Entropy and PH-Reg
compare all pairs. Under data parallelism rank ``r`` embeds only its shard ``z_r (B_r, d)`` of the
global batch ``Z = [z_0; ...; z_{P-1}] (B, d)``; computed on the shard, these losses would change
meaning with the process count. :func:`gather_batch` all-gathers ``Z`` and ``Y`` so that every rank
computes ``L`` on the global batch (the idea of pytorch-metric-learning's ``DistributedLossWrapper``).

Why the gradients are exactly those of one process with batch B (no loss scaling)
--------------------------------------------------------------------------------
The backward of :func:`gather_rows` *sums* ``dL_s/dZ`` over ranks (one all-reduce) and returns the
rows of the local part, so rank r gets ``sum_s dL_s/dz_r``; every rank computes the same ``L``, so
that is ``P dL/dz_r``. DistributedDataParallel then averages parameter gradients over ranks:

* trunk weights: ``(1/P) sum_r J_r^T (P dL/dz_r) = sum_r J_r^T dL/dz_r = dL/dtheta``;
* the head's own parameters (NCA temperature, SoftStep ``(l, u, t)``, DiffKNN's k, codecs), which
  see the gathered batch on every rank: ``(1/P) sum_r dL/dphi = dL/dphi``.

A gather whose backward returns only the local slice of the local gradient would leave the trunk
with ``1/P`` of its gradient after DDP's average; scaling the loss by ``P`` to compensate would
count the head's parameters ``P`` times. With the sum, both are right, and if the ranks' losses
differ (say a regularizer subsamples with a different random stream on each rank) the gradient is
that of the mean of the ranks' losses. ``tests/distributed`` checks ``P x B/P == 1 x B`` for NCA,
DiffKNN + SoftStep, ROT-Reg, RankSim, OE and PH-Reg.

Why a hand-written gather: ``torch.distributed.nn.functional.all_gather`` needs equal shapes on
all ranks, and a batch of B rows split over P ranks is uneven whenever P does not divide B (the
Trainer's last batch); here rows are padded to the largest shard and trimmed after the gather.

The rest of the module is glue: rank queries, :class:`TrainingStep` (the module DDP wraps, so the
head's parameters are synchronised with the trunk's), :func:`init_from_env` (the environment
``torchrun`` / elastic / Ray Train set) and :func:`launch` (P local processes through
``torch.distributed``'s own elastic launcher, the engine behind ``torchrun``).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
import pickle
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

#: seconds a collective waits for the other ranks before the job fails (a dead or stuck rank)
DEFAULT_TIMEOUT_S = float(os.environ.get("BEYONDMSE_DIST_TIMEOUT", 600))


class DistributedRunError(RuntimeError):
    """A multi-process run failed: the message names the failing rank and its error."""


# --------------------------------------------------------------------------- rank queries
def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Rank 0 (or no process group): the process that logs, prints and writes records."""
    return rank() == 0


def local_part(t: Tensor) -> Tensor:
    """This rank's contiguous part of ``t`` along dim 0 (``t.tensor_split(P)[rank]``); the parts
    of ranks ``0..P-1`` concatenated in rank order give ``t`` back, which is the order in which
    :func:`gather_rows` reassembles them. Without a process group: ``t``."""
    return t.tensor_split(world_size())[rank()] if is_distributed() else t


# --------------------------------------------------------------------------- the gather
def _row_counts(n: int, device: torch.device, group=None) -> list[int]:
    """The number of rows every rank contributes (one small all-gather)."""
    mine = torch.tensor([n], dtype=torch.long, device=device)
    counts = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, mine, group=group)
    return [int(c) for c in counts]


class _GatherRows(torch.autograd.Function):
    """Forward: concatenate every rank's rows ``(n_r, ...)`` in rank order -> ``(sum n_r, ...)``.
    Backward: all-reduce (sum) the gradient over ranks, return this rank's rows."""

    @staticmethod
    def forward(ctx, local: Tensor, counts: list[int], group) -> Tensor:
        me = dist.get_rank(group)
        top = max(counts)
        padded = local.contiguous()
        if len(local) < top:  # all_gather needs one shape on every rank
            padded = local.new_zeros((top, *local.shape[1:]))
            padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded, group=group)
        ctx.group, ctx.start, ctx.n = group, sum(counts[:me]), counts[me]
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.start: ctx.start + ctx.n], None, None


def gather_rows(local: Tensor, group=None, counts: list[int] | None = None) -> Tensor:
    """All ranks' rows of ``local (n_r, ...)`` concatenated in rank order, ``(sum_r n_r, ...)``.

    Differentiable: the gradient reaching rank r's rows is the sum over ranks of the gradients
    of their losses with respect to those rows (see the module docstring for why the sum). Every
    rank must call it (a collective), with the same trailing shape and dtype; row counts may
    differ. Without a process group it returns ``local``.
    """
    if not is_distributed():
        return local
    if counts is None:
        counts = _row_counts(len(local), local.device, group)
    return _GatherRows.apply(local, counts, group)


def gather_batch(z: Tensor, y: Tensor, group=None) -> tuple[Tensor, Tensor]:
    """The global batch ``(Z (B, d), Y (B, m))`` from every rank's ``(z (B_r, d), y (B_r, m))``:
    the embeddings with gradients flowing back to each rank's rows, the targets as data.
    Identity without a process group. Use it between the trunk and any batch-level loss::

        z, y = gather_batch(trunk(x), y)
        loss = head.loss(z, y).total + sum(reg(z, y) for reg in regularizers)
    """
    if not is_distributed():
        return z, y
    if len(z) != len(y):
        raise ValueError(f"z has {len(z)} rows but y has {len(y)}")
    counts = _row_counts(len(z), z.device, group)
    return gather_rows(z, group, counts), gather_rows(y.detach(), group, counts)


# --------------------------------------------------------------------------- DDP glue
class TrainingStep(nn.Module):
    """``forward(x, y) -> model.training_loss(x, y)`` (a :class:`~beyondmse.heads.base.LossOutput`).

    DistributedDataParallel synchronises the gradients of the module it wraps when that module's
    ``forward`` runs; wrapping this step (rather than the trunk) puts the head's own parameters
    under DDP too, and the gather inside ``training_loss`` makes the loss see the global batch.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor):
        return self.model.training_loss(x, y)


def wrap_for_training(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(TrainingStep(model))`` inside a process group of more than one
    process, else ``TrainingStep(model)``. Buffers are not broadcast: the neighbor heads' memory
    bank is a buffer that every rank builds itself from the gathered embeddings."""
    step = TrainingStep(model)
    if not is_distributed():
        return step
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    # not syncing buffers in forward: "forward_sync_buffers" since torch 2.13, "broadcast_buffers" before
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters \
        else "broadcast_buffers"
    return DistributedDataParallel(step, device_ids=ids, **{no_sync: False})


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_from_env(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group described by the environment that ``torchrun`` / elastic / Ray
    Train set (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); on GPU
    bind this process to ``cuda:LOCAL_RANK``. Returns False (and does nothing) when the
    environment names no group; True once joined (or already joined). ``timeout_s`` bounds every
    collective's wait, so a dead rank ends the job instead of hanging it."""
    if dist.is_initialized():
        return True
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return False
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _worker(fn: Callable[..., Any], args: tuple, backend: str | None, timeout_s: float, threads: int | None,
            error_dir: str):
    """What each launched process runs: join the group, run ``fn(*args)``, leave the group. An
    error is written to ``error_dir`` with its time, so the launcher can name the rank that failed
    first (the others then fail too, with "connection closed by peer")."""
    if threads:
        torch.set_num_threads(threads)
    try:
        init_from_env(backend, timeout_s)
        out = fn(*args)
    except BaseException as err:
        import traceback

        text = "".join(traceback.format_exception(err))
        Path(error_dir, f"rank{os.environ.get('RANK', '?')}.txt").write_text(f"{time.time()}\n{text}")
        raise
    shutdown()
    return out


def _first_error(error_dir: str) -> tuple[str, str] | None:
    """``(rank, traceback)`` of the earliest error the workers wrote, if any."""
    found = []
    for path in Path(error_dir).glob("rank*.txt"):
        stamp, _, text = path.read_text().partition("\n")
        found.append((float(stamp), path.stem[4:], text))
    return min(found)[1:] if found else None


_LAUNCHER_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
                          if hasattr(signal, name))


def launch(fn: Callable[..., Any], args: tuple = (), *, nproc: int, backend: str | None = None,
           timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None) -> dict[int, Any]:
    """Run ``fn(*args)`` on ``nproc`` local processes through torch.distributed's elastic launcher
    (what ``torchrun --standalone --nproc-per-node nproc`` does), each inside the process group.
    ``fn`` must be importable by name (processes are spawned). Returns ``{rank: fn's return}``.

    A rank that raises ends the job: the launcher stops the others and this raises
    :class:`DistributedRunError` naming the rank and its error. A rank that hangs makes the
    others fail after ``timeout_s`` in their next collective.
    """
    if not (isinstance(nproc, int) and nproc >= 1):
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"beyondmse-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.5, start_method="spawn")
    elastic_log = logging.getLogger("torch.distributed.elastic")
    level = elastic_log.level
    elastic_log.setLevel(logging.CRITICAL)  # its per-worker error dumps repeat what we raise
    # the launcher installs handlers that turn SIGTERM/SIGINT/SIGHUP/SIGQUIT into exceptions and
    # leaves them behind: Ctrl-C would no longer raise KeyboardInterrupt in the caller
    handlers = {sig: signal.getsignal(sig) for sig in _LAUNCHER_SIGNALS}
    with tempfile.TemporaryDirectory(prefix="beyondmse-launch-") as error_dir:
        try:
            return elastic_launch(config, _worker)(fn, args, backend, timeout_s, threads, error_dir)
        except ChildFailedError as err:
            first = _first_error(error_dir)
            if first is None:  # killed without a Python error (signal, out of memory)
                rank_, failure = err.get_first_failure()
                raise DistributedRunError(f"rank {rank_} of {nproc} died (exit code {failure.exitcode}) "
                                          "without a Python error (killed? out of memory?)") from None
            rank_, text = first
            last = text.strip().splitlines()[-1]
            raise DistributedRunError(f"rank {rank_} of {nproc} failed: {last}\n"
                                      f"its traceback:\n{text.rstrip()}") from None
        finally:
            elastic_log.setLevel(level)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _ray_train_loop(config: dict) -> None:
    """One Ray Train worker: Ray Train has already joined it to the process group. Rank 0's
    return value travels back as a checkpoint (Ray Train keeps only checkpointed reports)."""
    import ray.train

    out = config["fn"](*config["args"])
    if not is_main_process():
        ray.train.report({"rank": rank()})
        return
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "result.pkl").write_bytes(pickle.dumps(out))
        ray.train.report({"rank": 0}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def launch_ray(fn: Callable[..., Any], args: tuple = (), *, nproc: int, use_gpu: bool = False,
               timeout_s: float = DEFAULT_TIMEOUT_S, storage_path: str | None = None) -> Any:
    """Run ``fn(*args)`` as one Ray Train job: a ``TorchTrainer`` with ``nproc`` workers, which
    joins them in a torch.distributed process group (gloo on CPU, nccl with ``use_gpu``) before
    ``fn`` runs, so ``fn`` is the same code as under :func:`launch` (the Trainer sees the group and
    trains on its part of every batch). Connects to the Ray cluster ``ray.init()`` finds (set
    ``RAY_ADDRESS`` for a remote one) or starts a local one. Returns rank 0's return value (it
    must be picklable); a failing worker raises :class:`DistributedRunError`.

    Needs the optional extra ``beyondmse[ray]`` (Ray Train).
    """
    if not (isinstance(nproc, int) and nproc >= 1):
        raise ValueError(f"nproc must be an integer >= 1, got {nproc!r}")
    try:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as err:
        raise DistributedRunError("the Ray launcher needs Ray Train: pip install 'beyondmse[ray]'") from err
    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    with tempfile.TemporaryDirectory(prefix="beyondmse-ray-") as tmp:
        trainer = TorchTrainer(
            _ray_train_loop, train_loop_config={"fn": fn, "args": args},
            scaling_config=ScalingConfig(num_workers=nproc, use_gpu=use_gpu),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=int(timeout_s)),
            run_config=RunConfig(name=f"beyondmse-{uuid.uuid4().hex[:8]}", storage_path=storage_path or tmp,
                                 failure_config=FailureConfig(max_failures=0)))
        try:
            result = trainer.fit()
        except Exception as err:  # Ray Train raises its own error types (TrainingFailedError, ...)
            raise DistributedRunError(f"the Ray Train job of {nproc} workers failed: {err}") from err
        if result.error is not None:
            raise DistributedRunError(f"the Ray Train job of {nproc} workers failed: {result.error}")
        if result.checkpoint is None:
            raise DistributedRunError(f"the Ray Train job of {nproc} workers returned no result")
        with result.checkpoint.as_directory() as where:  # read before the storage folder goes
            return pickle.loads(Path(where, "result.pkl").read_bytes())
