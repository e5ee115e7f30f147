"""Run a suite into a results store: skip what is done, run the rest, record every outcome.

Executors
---------
* ``local`` with ``jobs=1``: runs in this process, one after another (no process start cost).
* ``local`` with ``jobs=N > 1``: a pool of N worker processes (``forkserver`` on Linux with the
  package preloaded, ``spawn`` elsewhere). Each worker limits torch and the BLAS/OpenMP pools
  to its share of the cores (``cpu_count // N``, at least 1) and writes its own results to the
  store when a run ends. If a worker dies (killed, out of memory), the pool is rebuilt and the
  runs that had not been recorded are submitted again (at most ``max_restarts`` times).
* ``ray``: each run is a Ray task (``ray.init(address=...)``, a local instance by default);
  results travel back to this process, which writes the store (cluster nodes need not share
  a file system). Needs the optional ``ray`` package.

A run that raises is recorded as ``failed`` with its error and the suite goes on. A run killed
half-way leaves nothing in the store and is redone by the next ``bench`` with the same runs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import ResultStore, utc_now
from .suites import RunSpec, Suite

EXECUTORS = ("local", "ray")


class ExecutorUnavailable(RuntimeError):
    """The requested executor cannot run here (e.g. ``ray`` is not installed)."""


RAY_MISSING = ("the 'ray' executor needs the optional Ray package, which is not installed here: "
               "pip install 'beyondmse[ray]' (or pip install ray), or use --executor local")

# --------------------------------------------------------------------------- worker side
_DATASET_CACHE: dict[str, Any] = {}


def _limit_threads(threads: int | None) -> None:
    """Limit torch and the native thread pools (BLAS, OpenMP) of this process to ``threads``."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def _init_worker(threads: int | None) -> None:
    # a pool worker dies on SIGTERM. When another worker dies, the pool itself sends SIGTERM to
    # the survivors (concurrent.futures' terminate_broken), before _run_pool can SIGKILL them; a
    # handler inherited from the parent that raises (torch's elastic launcher installs one)
    # would make execute_run record the interrupted run as failed
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _limit_threads(threads)


def _dataset(spec: RunSpec):
    if not isinstance(spec.dataset, str):
        return spec.dataset
    if spec.dataset not in _DATASET_CACHE:
        from ..data import load_dataset

        _DATASET_CACHE[spec.dataset] = load_dataset(spec.dataset)
    return _DATASET_CACHE[spec.dataset]


def execute_run(spec: RunSpec, store: ResultStore | None = None, suite: str | None = None,
                diagnostics: bool = True) -> dict[str, Any]:
    """Run one spec, catching its errors; write the outcome to ``store`` if given.

    Returns an outcome dict: ``key``, ``status`` ("finished" | "failed"), ``error``,
    ``record`` (the run record, finished runs only), ``run_seconds``, ``write_seconds``,
    ``recorded`` (False when the store already had this run finished).
    ``KeyboardInterrupt``/``SystemExit`` are not caught: an interrupted run is not recorded.
    """
    from ..experiment import run_experiment

    started_at, t0 = utc_now(), time.perf_counter()
    outcome: dict[str, Any] = {"key": spec.key, "status": "finished", "error": None, "record": None}
    try:
        ds = _dataset(spec)
        outcome["record"] = run_experiment(ds, spec.method, spec.seed, epochs=spec.epochs, params=spec.params,
                                           protocol=spec.protocol, diagnostics=diagnostics)
        if spec.tag:
            outcome["record"]["tag"] = spec.tag
    except Exception as err:  # noqa: BLE001 - any error of a run is that run's failure
        tb = traceback.format_exc(limit=6)
        outcome.update(status="failed", error=f"{type(err).__name__}: {err}\n{tb}")
    outcome["run_seconds"] = time.perf_counter() - t0
    outcome["started_at"] = started_at
    outcome["write_seconds"] = 0.0
    if store is not None:
        outcome["recorded"], outcome["write_seconds"] = write_outcome(store, spec, outcome, suite)
    return outcome


def write_outcome(store: ResultStore, spec: RunSpec, outcome: dict[str, Any], suite: str | None) -> tuple[bool, float]:
    t0 = time.perf_counter()
    recorded = store.record(key=outcome["key"], dataset=spec.dataset_name, method=spec.method, seed=spec.seed,
                            epochs=spec.epochs, protocol=spec.protocol, params=spec.params,
                            status=outcome["status"], suite=suite, result=outcome["record"],
                            error=outcome["error"], run_seconds=outcome["run_seconds"],
                            started_at=outcome.get("started_at"))
    return recorded, time.perf_counter() - t0


# --------------------------------------------------------------------------- driver side
@dataclass
class SuiteResult:
    """What one :func:`run_suite` call did."""

    total: int
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    lost: int = 0  # runs whose worker died and were not redone (after max_restarts)
    seconds: float = 0.0
    restarts: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (run description, first error line)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.lost == 0

    def line(self) -> str:
        return (f"{self.total} runs: {self.skipped} already in the store, {self.finished} finished, "
                f"{self.failed} failed" + (f", {self.lost} lost" if self.lost else "")
                + f" ({self.seconds:.1f} s)")


class _Progress:
    """One bar for the suite: done / failed / remaining, with tqdm's rate and ETA."""

    def __init__(self, total: int, name: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=name, unit="run", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True)
        self.done = self.failed = 0
        self.total = total
        self._show()

    def _show(self):
        self.bar.set_postfix_str(f"done={self.done} failed={self.failed} "
                                 f"remaining={self.total - self.done - self.failed}", refresh=False)

    def update(self, status: str):
        if status == "failed":
            self.failed += 1
        else:
            self.done += 1
        self._show()
        self.bar.update(1)

    def close(self):
        self.bar.close()


def default_threads(jobs: int) -> int:
    """Threads per run: an explicit ``OMP_NUM_THREADS`` wins (a shared machine asks for 1: torch's
    pool thrashes under load); otherwise the cores shared out among the ``jobs`` runs."""
    explicit = os.environ.get("OMP_NUM_THREADS", "")
    if explicit.isdigit() and int(explicit) >= 1:
        return int(explicit)
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_suite(suite: Suite | Sequence[RunSpec], store: ResultStore | str | Path, *, jobs: int = 1,
              executor: str = "local", progress: bool = True, retry_failed: bool = True,
              threads: int | None = None, diagnostics: bool = True, max_restarts: int = 3,
              start_method: str | None = None, ray_address: str | None = None,
              on_outcome=None) -> SuiteResult:
    """Run every run of ``suite`` not yet finished in ``store``; return counts.

    Parameters
    ----------
    suite : Suite or list of RunSpec
    store : ResultStore or path
    jobs : int
        Runs in parallel (local worker processes, or Ray tasks in flight).
    executor : {"local", "ray"}
    retry_failed : bool
        Run again the runs recorded as failed (default); False skips them too.
    threads : int, optional
        Threads per run; default ``cpu_count // jobs``.
    on_outcome : callable, optional
        Called with ``(spec, outcome)`` in this process after each run (tests, logging).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if not isinstance(store, ResultStore):
        store = ResultStore(store)
    name = suite.name if isinstance(suite, Suite) else "runs"
    specs = list(suite.runs if isinstance(suite, Suite) else suite)
    unique: dict[str, RunSpec] = {}
    for s in specs:
        unique.setdefault(s.key, s)
    skip = store.keys("finished" if retry_failed else ("finished", "failed"))
    todo = [s for k, s in unique.items() if k not in skip]
    result = SuiteResult(total=len(unique), skipped=len(unique) - len(todo))
    threads = threads or default_threads(jobs)
    t0 = time.perf_counter()
    bar = _Progress(len(todo), name, progress)

    def handle(spec: RunSpec, outcome: dict[str, Any]):
        if outcome["status"] == "failed":
            result.failed += 1
            result.errors.append((spec.describe(), (outcome["error"] or "").splitlines()[0]))
        else:
            result.finished += 1
        bar.update(outcome["status"])
        if on_outcome is not None:
            on_outcome(spec, outcome)

    try:
        if not todo:
            pass
        elif executor == "ray":
            _run_ray(todo, store, name, jobs, threads, diagnostics, ray_address, handle, result)
        elif jobs == 1:
            _run_inline(todo, store, name, threads, diagnostics, handle)
        else:
            _run_pool(todo, store, name, jobs, threads, diagnostics, max_restarts, start_method, handle, result)
    finally:
        bar.close()
        result.seconds = time.perf_counter() - t0
    return result


def _run_inline(todo, store, name, threads, diagnostics, handle):
    import torch

    before = torch.get_num_threads()
    _limit_threads(threads)
    try:
        for spec in todo:
            handle(spec, execute_run(spec, store, name, diagnostics))
    finally:
        torch.set_num_threads(before)


def _pool_context(start_method: str | None):
    import multiprocessing as mp

    method = start_method or ("forkserver" if sys.platform.startswith("linux") else "spawn")
    ctx = mp.get_context(method)
    if method == "forkserver":
        # workers fork from a server that has imported the package once: cheap restarts
        ctx.set_forkserver_preload(["beyondmse.experiment", "beyondmse.bench.runner"])
    return ctx


def _run_pool(todo, store, name, jobs, threads, diagnostics, max_restarts, start_method, handle, result):
    ctx = _pool_context(start_method)
    pending = list(todo)
    while pending:
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx,
                                   initializer=_init_worker, initargs=(threads,))
        futures = {pool.submit(execute_run, spec, store, name, diagnostics): spec for spec in pending}
        workers = list((getattr(pool, "_processes", None) or {}).values())  # before a break clears the map
        broken = False
        try:
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures[fut]
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    pending.remove(spec)
                    handle(spec, outcome)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                proc.kill()
            raise
        finally:
            survivors = workers if broken else []
            pool.shutdown(wait=not broken, cancel_futures=True)
            # a surviving worker could still commit a run after the store is read below (it would
            # be counted lost yet recorded): stop it first; its run, if unrecorded, is redone.
            # SIGKILL, not SIGTERM: a SIGTERM handler inherited from the parent (torch's elastic
            # launcher installs one) turns SIGTERM into an exception that execute_run records as a
            # failed run; SQLite's journal keeps a commit cut by SIGKILL atomic
            for proc in survivors:
                proc.kill()
            for proc in survivors:
                proc.join(30)
        if broken:
            # a worker died: whatever it (or its pool mates) ran was not recorded unless it got
            # to its commit; the store is the truth
            finished = store.keys("finished")
            for spec in [s for s in pending if s.key in finished]:
                pending.remove(spec)
                handle(spec, {"status": "finished", "error": None, "record": None})
            if pending:
                if result.restarts >= max_restarts:
                    result.lost += len(pending)
                    print(f"beyondmse bench: worker processes died {result.restarts + 1} times; "
                          f"{len(pending)} run(s) left for the next run of this command", file=sys.stderr)
                    return
                result.restarts += 1
                print(f"beyondmse bench: a worker process died; restarting the pool and redoing "
                      f"{len(pending)} unrecorded run(s)", file=sys.stderr)


def _run_ray(todo, store, name, jobs, threads, diagnostics, address, handle, result):
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(RAY_MISSING) from None
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = jobs
        ray.init(**kwargs)
        started_here = True

    def ray_task(spec, threads, suite, diagnostics):  # runs on a Ray worker
        _limit_threads(threads)
        return execute_run(spec, None, suite, diagnostics)

    remote = ray.remote(num_cpus=1, max_retries=2)(ray_task)
    try:
        specs = {}
        queue = list(todo)
        in_flight = []
        while queue or in_flight:
            while queue and len(in_flight) < jobs:
                spec = queue.pop(0)
                ref = remote.remote(spec, threads, name, diagnostics)
                specs[ref] = spec
                in_flight.append(ref)
            done, in_flight = ray.wait(in_flight, num_returns=1)
            ref = done[0]
            spec = specs.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as err:  # the worker died (not the run raising: that is caught inside)
                result.lost += 1
                print(f"beyondmse bench: ray task for {spec.describe()} lost: {type(err).__name__}", file=sys.stderr)
                continue
            outcome["recorded"], outcome["write_seconds"] = write_outcome(store, spec, outcome, name)
            handle(spec, outcome)
    finally:
        if started_here:
            ray.shutdown()


def pending_runs(suite: Suite | Iterable[RunSpec], store: ResultStore) -> list[RunSpec]:
    """The runs of ``suite`` not finished in ``store``."""
    done = store.keys("finished")
    specs = suite.runs if isinstance(suite, Suite) else list(suite)
    return [s for s in specs if s.key not in done]


def stale_runs(suite: Suite | Iterable[RunSpec], store: ResultStore) -> list[tuple[RunSpec, dict[str, tuple]]]:
    """Finished runs of ``suite`` whose settings resolve differently today.

    The store keys a run by its *requested* settings, so when a default changes (a recipe knob
    such as ``nca`` learning its similarity scale, or a shared trunk / trainer default) a resumed
    suite keeps the old run, and its numbers describe the old default. Returns ``(spec,
    {setting: (stored, now)})`` for each such run, over the recipe knobs and the trunk and
    trainer settings a run stores; the caller warns (re-running needs a new store, since
    finished rows are never overwritten).
    """
    from ..recipes import is_peer
    from .matching import resolved_settings
    from .store import canonical_json

    specs = suite.runs if isinstance(suite, Suite) else list(suite)
    done = store.keys("finished")
    wanted = {}
    for s in specs:
        try:
            if s.key in done and not is_peer(s.method):
                wanted[s.key] = s
        except ValueError:  # an unknown method fails when it runs, not here
            continue
    out = []
    for row in store.rows("finished", keys=wanted):
        spec, stored = wanted[row["run_key"]], row["resolved_params"] or {}
        try:
            footing, knobs = resolved_settings(spec.dataset_name, spec.method, spec.params, spec.epochs,
                                               spec.protocol)
            now = {**footing, **knobs}
        except ValueError:
            continue
        changed = {k: (stored[k], v) for k, v in now.items()
                   if k in stored and canonical_json(stored[k]) != canonical_json(v)}
        if changed:
            out.append((spec, changed))
    return out
