"""Overhead of the benchmark harness per run, as a percentage of one ``ls`` run on diamonds.

Measured in this script, on this machine, in one process (plus the worker pool it starts):

* the run itself: ``run_experiment("diamonds", "ls")`` with the recipe's defaults (up to 100
  epochs, early stopping on validation; ``--epochs`` caps it) on the paper split
  (43,152 / 5,394 / 5,394), the dataset already loaded -- median of ``--repeats`` runs;
* the store: one ``ResultStore.record`` (one SQLite transaction with the full record and its
  learning curve, WAL mode) -- median and IQR over 50 writes after 5 warm-up writes;
* the skip check: ``run_key`` + ``store.keys("finished")`` over a store of 500 rows;
* process start: a ``forkserver`` pool of ``--jobs`` workers (the package preloaded) until its
  first trivial task returns, cold (the fork server starts and imports the package: paid once
  per ``bench`` command) and warm (a rebuilt pool); plus each worker loading diamonds once.
  These are paid once per worker, so the per-run figure charges ``jobs x (cold start + load)``
  CPU-seconds to the runs of a quick-sized suite (24 runs) -- a conservative count;
* the per-run IPC of the pool: a trivial task carrying a RunSpec and returning a record-sized
  outcome, after the pool is warm.

Run: ``python benchmarks/bench_harness.py [--epochs E] [--repeats 2] [--jobs 2]``
(``BEYONDMSE_DATA`` is not needed: diamonds is embedded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch


def med_iqr(xs):
    q = np.percentile(xs, [25, 50, 75])
    return float(q[1]), float(q[2] - q[0])


def _noop(spec, outcome):
    return {**outcome, "key": spec.key}


def _ping(_):
    return os.getpid()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the recipe's, early stopping)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)

    from beyondmse.bench import ResultStore, RunSpec
    from beyondmse.bench.runner import _init_worker, _pool_context
    from beyondmse.data import load_dataset, make_splits
    from beyondmse.experiment import run_experiment

    t0 = time.perf_counter()
    ds = load_dataset("diamonds")
    load_s = time.perf_counter() - t0
    splits = make_splits(ds, seed=0)
    # warm-up, then the reference runs
    run_experiment(ds, "ls", 0, epochs=1, splits=splits, diagnostics=False)
    run_times, record = [], None
    for i in range(args.repeats):
        t0 = time.perf_counter()
        record = run_experiment(ds, "ls", i, epochs=args.epochs, diagnostics=True)  # splits included
        run_times.append(time.perf_counter() - t0)
    run_s = statistics.median(run_times)

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "bench.sqlite")
        spec = RunSpec("diamonds", "ls", 0, args.epochs)
        writes = []
        for i in range(55):
            t0 = time.perf_counter()
            store.record(key=f"k{i}", dataset="diamonds", method="ls", seed=i, epochs=args.epochs, protocol=None,
                         params={}, status="finished", result=dict(record), run_seconds=run_s)
            writes.append(time.perf_counter() - t0)
        write_s, write_iqr = med_iqr(writes[5:])
        for i in range(55, 500):
            store.record(key=f"k{i}", dataset="diamonds", method="ls", seed=i, epochs=args.epochs, protocol=None,
                         params={}, status="finished", result=dict(record))
        checks = []
        for i in range(30):
            t0 = time.perf_counter()
            RunSpec("diamonds", "ls", i, args.epochs, {"lr": 1e-3}).key in store.keys("finished")  # noqa: B015
            checks.append(time.perf_counter() - t0)
        check_s, check_iqr = med_iqr(checks[3:])
        db_kb = (Path(tmp) / "bench.sqlite").stat().st_size / 1024

    starts = []
    for _ in range(2):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs, mp_context=_pool_context(None), initializer=_init_worker,
                                 initargs=(1,)) as pool:
            list(pool.map(_ping, range(args.jobs)))
            starts.append(time.perf_counter() - t0)
            outcome = {"status": "finished", "error": None, "record": {k: v for k, v in record.items()},
                       "run_seconds": run_s}
            ipc = []
            for _ in range(30):
                t0 = time.perf_counter()
                pool.submit(_noop, spec, outcome).result()
                ipc.append(time.perf_counter() - t0)
    cold_s, warm_s = starts
    ipc_s, ipc_iqr = med_iqr(ipc[3:])

    suite_runs = 24
    once = args.jobs * (cold_s + load_s) / suite_runs
    per_run = write_s + check_s + ipc_s + once
    pct = lambda x: 100 * x / run_s  # noqa: E731
    print(f"device: CPU, torch threads 1, load average {os.getloadavg()[0]:.1f}")
    print(f"one `ls` run on diamonds (paper split, {args.epochs or 'default'} epochs -> {record['epochs']} run, "
          f"split + fit + test metrics): median {run_s:.2f} s over {args.repeats} "
          f"(all: {', '.join(f'{t:.2f}' for t in run_times)})")
    print(f"{'harness part':<52}{'median':>12}{'IQR':>10}{'% of run':>10}")
    rows = [("store write (1 SQLite transaction, full record)", write_s, write_iqr),
            ("skip check (run_key + finished keys of 500 rows)", check_s, check_iqr),
            ("pool IPC per run (spec in, outcome back)", ipc_s, ipc_iqr),
            (f"process start, cold: pool of {args.jobs} forkserver workers", cold_s, 0.0),
            ("process start, warm (pool rebuilt after a crash)", warm_s, 0.0),
            ("dataset load per worker (diamonds)", load_s, 0.0),
            (f"  jobs x (cold start + load) / {suite_runs} runs", once, 0.0)]
    for name, v, iqr in rows:
        print(f"{name:<52}{v * 1e3:>10.2f}ms{iqr * 1e3:>8.2f}ms{pct(v):>9.2f}%")
    print(f"{'total per run (write + check + IPC + start share)':<52}{per_run * 1e3:>10.2f}ms{'':>10}{pct(per_run):>9.2f}%")
    print(f"store size after 500 records with learning curves: {db_kb:.0f} KiB")
    verdict = "under" if pct(per_run) < 5 else "NOT under"
    print(f"harness overhead per run is {verdict} 5% of one ls run on diamonds ({pct(per_run):.2f}%)")


if __name__ == "__main__":
    main()
