"""Speed and memory of the neighbor heads (the SoftStep paper's Figure 4, as a measurement).

1. Training-step time (forward + backward + Adam step of the whole model: MLP trunk 16 -> 200
   -> 200 -> d, then the head) for batch sizes N in {32, 128, 512, 2048} and embedding sizes d in
   {25, 100, 400}, printed as the median over repeats and as a ratio to the same model with
   the linear head.
2. Memory-bank inference: throughput (queries / s) and peak extra resident memory for 10^5 and
   10^6 stored embeddings (d = 64), each measured in a fresh subprocess. Peak memory is read
   from the kernel (``VmHWM`` after resetting it through ``/proc/self/clear_refs``): torch's
   CPU allocator bypasses Python's, so tracemalloc would not see the similarity blocks.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_neighbors.py [--quick] [--skip-steps] [--skip-memory]
        [--mmap-threshold 65536]

CPU only; warmup before timing; one thread unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from _timing import bench_args, compare, print_table, rss_kb, setup

from beyondmse.recipes import build_model, methods_in_family

HEADS = ["ls"] + methods_in_family("neighbors")
MEMORY_HEADS = ["nca", "nca-softstep-g", "dknn-softstep-g", "nca-sparsemax"]


def make_step(name: str, n: int, d: int):
    torch.manual_seed(0)
    model, _ = build_model(name, 16, 1, {"embedding_dim": d})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(n, 16), torch.rand(n, 1)

    def step():
        loss = model.training_loss(x, y).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def bench_steps(quick: bool, repeats: int | None, warmup: int) -> None:
    print("## training-step time: median ms (ratio to the linear head, median over repeats)\n")
    rows = []
    for n in [32, 128, 512] if quick else [32, 128, 512, 2048]:
        reps = repeats or (3 if n >= 2048 else (5 if n >= 512 else 20))
        reps = max(2, reps // 2) if quick else reps
        for d in (25, 100, 400):
            res = compare({h: make_step(h, n, d) for h in HEADS}, "ls", repeats=reps, warmup=warmup)
            rows.append([n, d] + [f"{1e3 * r.median:.2f} ({r.ratio_median:.1f}x)" for r in res.values()])
    print_table(["N", "d"] + HEADS, rows)
    print()


# ----------------------------------------------------------------------------- memory bank
def membank_child(name: str, m: int, q: int, d: int, chunk: int, threads: int) -> dict:
    """Run in a subprocess: fill a memory bank of m points and time predictions for q queries."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, _ = build_model(name, d, 1, {"trunk": "identity", "chunk_size": chunk})
    head = model.head
    head.query_chunk_size = 256
    head.fit_memory(torch.randn(m, d), torch.rand(m, 1))
    zq = torch.randn(q, d)
    with torch.no_grad():
        head(zq[:8])  # warmup
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
            reset = True
        except OSError:
            reset = False
        before = rss_kb("VmRSS")
        t0 = time.perf_counter()
        out = head(zq)
        seconds = time.perf_counter() - t0
        peak = rss_kb("VmHWM")
    assert torch.isfinite(out).all()
    return {"head": name, "memory": m, "queries": q, "d": d, "chunk": chunk, "seconds": seconds,
            "queries_per_s": q / seconds, "peak_extra_mb": (peak - before) / 1024 if reset else None,
            "bank_mb": m * (d + 1) * 4 / 2**20, "dense_matrix_mb": q * m * 4 / 2**20}


def bench_memory(quick: bool, threads: int, mmap_threshold: int | None = None) -> None:
    sizes = [10**5] if quick else [10**5, 10**6]
    q, d, chunk = 256, 64, 4096
    note = "" if mmap_threshold is None else f", MALLOC_MMAP_THRESHOLD_={mmap_threshold}"
    print(f"## memory-bank inference: {q} queries, d = {d}, memory chunk {chunk}, query chunk 256{note}\n")
    print("| head | stored | seconds | queries/s | peak extra MB | bank MB | dense (Q, M) MB |")
    print("|---|---|---|---|---|---|---|")
    for m in sizes:
        for name in MEMORY_HEADS:
            cmd = [sys.executable, __file__, "--_child", json.dumps([name, m, q, d, chunk, threads])]
            env = dict(os.environ)
            if mmap_threshold is not None:
                # a fixed glibc mmap threshold returns freed blocks to the OS at once; with the
                # default dynamic threshold the heap keeps freed similarity blocks, which shows
                # up as peak-RSS growth with the number of blocks rather than their size
                env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            peak = "n/a" if r["peak_extra_mb"] is None else f"{r['peak_extra_mb']:.0f}"
            print(f"| {name} | {m:.0e} | {r['seconds']:.2f} | {r['queries_per_s']:.0f} | {peak} | "
                  f"{r['bank_mb']:.0f} | {r['dense_matrix_mb']:.0f} |", flush=True)
    print()


def main(argv=None):
    ap = bench_args(__doc__, repeats=0, warmup=2)
    ap.set_defaults(device="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--mmap-threshold", type=int, default=None,
                    help="set MALLOC_MMAP_THRESHOLD_ (bytes) in the memory-bank subprocesses")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(membank_child(*json.loads(args._child))))
        return
    print(setup(args) + " (--repeats 0: 20 at N <= 128, 5 at 512, 3 at 2048)\n")
    if not args.skip_steps:
        bench_steps(args.quick, args.repeats or None, args.warmup)
    if not args.skip_memory:
        bench_memory(args.quick, args.threads, args.mmap_threshold)


if __name__ == "__main__":
    main()
