"""Overhead of the benchmark harness per run, as a percentage of one ``ls`` run on diamonds.

Measured here, in one process (plus the worker pool it starts):

* the run itself: ``run_experiment("diamonds", "ls")`` at the recipe's defaults (``--epochs``
  caps it) on the paper split, the dataset already loaded -- median of ``--repeats`` runs;
* the store: one ``ResultStore.record`` (one SQLite transaction with the full record);
* the skip check: ``run_key`` + ``store.keys("finished")`` over a store of 500 rows;
* process start: a ``forkserver`` pool of ``--jobs`` workers until its first trivial task
  returns, cold (paid once per ``bench`` command) and warm (a rebuilt pool), plus each worker
  loading diamonds once; charged as ``jobs x (cold start + load)`` to a 24-run suite;
* the per-run IPC of a warm pool: a RunSpec in, a record-sized outcome back.

    python benchmarks/bench_harness.py [--epochs E] [--repeats 2] [--jobs 2]
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _timing import bench_args, compare, print_table, setup

SUITE_RUNS = 24  # a quick-sized suite


def _noop(spec, outcome):
    return {**outcome, "key": spec.key}


def _ping(_):
    return os.getpid()


def main() -> None:
    p = bench_args(__doc__, repeats=2, warmup=0)
    p.set_defaults(device="cpu")
    p.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the recipe's, early stopping)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    where = setup(args)

    from beyondmse.bench import ResultStore, RunSpec
    from beyondmse.bench.runner import _init_worker, _pool_context
    from beyondmse.data import load_dataset
    from beyondmse.experiment import run_experiment

    t0 = time.perf_counter()
    ds = load_dataset("diamonds")
    load_s = time.perf_counter() - t0
    seeds = itertools.count()
    last: dict = {}

    def one_run():
        last.update(run_experiment(ds, "ls", next(seeds), epochs=args.epochs, diagnostics=True))

    run_experiment(ds, "ls", 0, epochs=1, diagnostics=False)  # warm-up: lazy imports, first allocations
    run = compare({"run": one_run}, "run", repeats=args.repeats, warmup=0)["run"]
    record, spec = dict(last), RunSpec("diamonds", "ls", 0, args.epochs)
    outcome = {"status": "finished", "error": None, "record": record, "run_seconds": run.median}

    with tempfile.TemporaryDirectory() as tmp:
        store, keys = ResultStore(Path(tmp) / "bench.sqlite"), itertools.count()

        def write():
            i = next(keys)
            store.record(key=f"k{i}", dataset="diamonds", method="ls", seed=i, epochs=args.epochs, protocol=None,
                         params={}, status="finished", result=dict(record), run_seconds=run.median)

        parts = {"store write (1 SQLite transaction, full record)": compare({"w": write}, "w", repeats=50, warmup=5)["w"]}
        for _ in range(500 - 55):
            write()
        check = lambda: RunSpec("diamonds", "ls", 7, args.epochs, {"lr": 1e-3}).key in store.keys("finished")  # noqa: E731
        parts["skip check (run_key + finished keys of 500 rows)"] = compare({"c": check}, "c", repeats=30, warmup=3)["c"]
        db_kb = (Path(tmp) / "bench.sqlite").stat().st_size / 1024

    starts = []
    for _ in range(2):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs, mp_context=_pool_context(None), initializer=_init_worker,
                                 initargs=(1,)) as pool:
            list(pool.map(_ping, range(args.jobs)))
            starts.append(time.perf_counter() - t0)
            ipc = compare({"i": lambda: pool.submit(_noop, spec, outcome).result()}, "i", repeats=30, warmup=3)["i"]
    parts["pool IPC per run (spec in, outcome back)"] = ipc
    once = args.jobs * (starts[0] + load_s) / SUITE_RUNS
    per_run = sum(t.median for t in parts.values()) + once

    def pct(x):
        return f"{100 * x / run.median:.2f}%"

    print(f"{where}; load average {os.getloadavg()[0]:.1f}")
    print(f"one `ls` run on diamonds (paper split, {args.epochs or 'default'} epochs -> {record['epochs']} run): "
          f"median {run.median:.2f} s over {args.repeats}")
    rows = [[name, f"{1e3 * t.median:.2f} ms", f"{1e3 * t.iqr:.2f} ms", pct(t.median)] for name, t in parts.items()]
    rows += [[f"process start, cold: pool of {args.jobs} forkserver workers", f"{1e3 * starts[0]:.0f} ms", "", pct(starts[0])],
             ["process start, warm (pool rebuilt after a crash)", f"{1e3 * starts[1]:.0f} ms", "", pct(starts[1])],
             ["dataset load per worker (diamonds)", f"{1e3 * load_s:.0f} ms", "", pct(load_s)],
             [f"jobs x (cold start + load) / {SUITE_RUNS} runs", f"{1e3 * once:.2f} ms", "", pct(once)],
             ["**total per run** (write + check + IPC + start share)", f"{1e3 * per_run:.2f} ms", "", pct(per_run)]]
    print_table(["harness part", "median", "IQR", "% of one run"], rows)
    print(f"store size after 500 records: {db_kb:.0f} KiB; overhead per run is "
          f"{'under' if 100 * per_run / run.median < 5 else 'NOT under'} 5% of one ls run ({pct(per_run)})")


if __name__ == "__main__":
    main()
