"""Issue 17's speed targets: every ratio of its table measured in one run, with peak extra memory.

1. ``soft_rank`` forward + backward on 2048 x 2048 standard-normal rows (strength 1) vs
   ``torch.sort`` + backward of the same tensor.
2. Neighbor-head training steps (``head.loss(z, y)`` forward + backward on an embedding batch
   z (N, d), N = 2048, d = 100) vs the floor reference ``softmax(-(squared distances, diagonal
   +inf)) @ y`` with a squared-error loss, forward + backward, same shapes, timed with
   flush-to-zero (see ``bench_heads``; on one thread, as flush-to-zero reaches only the calling
   thread). Two kinds of z (``head_embeddings``): low-dimensional, where SoftStep keeps ~40% of
   the neighbors as on real tables, and standard normal (~0.05%).
3. Memory-bank inference (NCA + SoftStep g, exact, 1e6 x 64 bank, 4,096 queries) vs a faiss
   ``IndexFlatL2`` top-32 search on the same bank (skipped when faiss is not installed), in a
   fresh subprocess each, with the peak extra resident memory (``VmHWM`` after a reset). Rows
   "trained at batch 256" set the head's training neighbor-set size, as a trained head has it:
   the row minimum is then the expected minimum of a 255-point subset (a k-smallest selection).
4. e2e-codec training step vs the linear head (``ls``), k = 25 (benchmarks/bench_codec.py's step).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_speed_targets.py [--threads 1]
        [--bank 1000000] [--queries 4096] [--skip-bank | --only-bank | --only SECTION] [--device cuda]

With ``--device cuda`` every section runs on the GPU: the soft rank also reports its host
synchronisations per call, the head rows add N = 8192 (2048 leaves an H200 mostly idle), and
the bank rows compare with an exact torch top-32 on the same GPU (faiss-gpu is not a dependency).

Ratios are medians over interleaved repeats in this run (see _timing.py); absolute times on a
shared machine drift, so the load (``os.getloadavg``) is printed with each section.
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

from beyondmse.functional.distances import squared_distances
from beyondmse.functional.rank import soft_rank
from beyondmse.recipes import build_model


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    return rss_kb("VmRSS")


# ----------------------------------------------------------------------------- 1. soft rank
def bench_soft_rank(args) -> list[list[str]]:
    from beyondmse.functional import rank as rank_module

    torch.manual_seed(0)
    x = torch.randn(2048, 2048, device=args.device, requires_grad=True)
    g = torch.randn(2048, 2048, device=args.device)

    def sort_step():
        torch.sort(x, dim=1)[0].backward(g)

    def rank_step():
        soft_rank(x, 1.0).backward(g)

    def unchecked_rank_step():
        soft_rank(x, 1.0, check_finite=False).backward(g)

    def torch_path_step():  # on a GPU: the torch path instead of the Triton kernel
        rank_module.USE_TRITON = False
        try:
            soft_rank(x, 1.0).backward(g)
        finally:
            rank_module.USE_TRITON = True

    on_gpu = torch.device(args.device).type == "cuda"
    steps = {"torch.sort": sort_step, "soft_rank": rank_step}
    if on_gpu:
        steps["soft_rank (torch path)"] = torch_path_step
    res = compare(steps, "torch.sort", repeats=args.repeats, warmup=args.warmup, device=args.device)
    rows = [[f"{name} fwd+bwd 2048 x 2048 vs torch.sort + bwd", f"{res[name].ratio_median:.2f}",
             f"{1e3 * res[name].median:.3g} ms vs {1e3 * res['torch.sort'].median:.3g} ms"]
            for name in steps if name != "torch.sort"]
    if on_gpu:
        from beyondmse.functional import pav_triton

        s = torch.sort(x.detach(), dim=1, descending=True)[0]
        alone = compare({"torch.sort": lambda: torch.sort(x.detach(), dim=1, descending=True),
                         "kernel": lambda: pav_triton.soft_rank_pav(s, 1.0)}, "torch.sort", repeats=args.repeats,
                        warmup=args.warmup, device=args.device)
        rows += [["the Triton PAV kernel alone (sorted rows in) vs torch.sort forward, 2048 x 2048",
                  f"{alone['kernel'].ratio_median:.2f}",
                  f"{1e3 * alone['kernel'].median:.3g} ms vs {1e3 * alone['torch.sort'].median:.3g} ms"],
                 ["soft_rank fwd+bwd 2048 x 2048: host synchronisations per call", str(host_syncs(rank_step)),
                  "counted by torch.cuda.set_sync_debug_mode (both from the NaN check)"],
                 ["soft_rank(check_finite=False) fwd+bwd: host synchronisations per call",
                  str(host_syncs(unchecked_rank_step)), "as DiffKNN calls it"],
                 ["soft_rank (torch path) fwd+bwd: host synchronisations per call", str(host_syncs(torch_path_step)),
                  "the pooling rounds' loop tests"]]
    return rows


def host_syncs(fn) -> int:
    """How many times one call of ``fn`` waits for the GPU (each a host round trip)."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- 2. neighbor heads
def head_embeddings(kind: str, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (n, d) and targets (n, 1) for the head rows.

    ``"random"``: standard-normal z, y uniform. In 100 dimensions all distances are nearly equal,
    and SoftStep at its initial parameters keeps about one neighbor in 2,000 (0.05%).
    ``"low-dim"``: z on a 4-d latent space mapped linearly into d dimensions plus 5% noise, y the
    first latent coordinate. SoftStep then keeps about 40% of the batch, as the heads trained on
    the tables keep 17-54% (``kept_frac_train`` in ``benchmarks/results/families-tabular.sqlite``).
    """
    g = torch.Generator().manual_seed(0)
    if kind == "random":
        return torch.randn(n, d, generator=g), torch.rand(n, 1, generator=g)
    latent = torch.rand(n, 4, generator=g)
    z = latent @ torch.randn(4, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)
    return z, latent[:, :1].clone()


def bench_heads(args) -> list[list[str]]:
    # one thread, whatever --threads says: torch.set_flush_denormal sets flush-to-zero on the
    # calling thread only, so with more threads the floor's other threads take the slow path
    if torch.device(args.device).type == "cuda":  # no subnormal slow path to work around there
        return _bench_heads(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _bench_heads(args)
    finally:
        torch.set_num_threads(threads)


def _bench_heads(args) -> list[list[str]]:
    on_cpu = torch.device(args.device).type == "cpu"
    names = ["nca", "nca-softstep-g", "nca-softstep-i", "dknn-softstep-i"]
    rows = []
    for N, kind in [(2048, "low-dim"), (2048, "random")] + ([] if on_cpu else [(8192, "low-dim")]):
        rows += _bench_heads_at(args, N, kind, names, on_cpu)
    return rows


def _bench_heads_at(args, N: int, kind: str, names: list[str], on_cpu: bool) -> list[list[str]]:
    d = 100
    diag = torch.diag(torch.full((N,), float("inf"), device=args.device))
    z0, y = (t.to(args.device) for t in head_embeddings(kind, N, d))

    def floor():
        # the plain reference, on a CPU with flush-to-zero: its logits span hundreds of units, so
        # most softmax weights are subnormal floats, which without FTZ cost it 10x on a CPU; the
        # heads run without FTZ, as users run them
        torch.set_flush_denormal(on_cpu)
        try:
            z = z0.clone().requires_grad_()
            pred = torch.softmax(-(squared_distances(z, z) + diag), dim=1) @ y
            ((pred - y) ** 2).mean().backward()
        finally:
            torch.set_flush_denormal(False)

    def head_step(name):
        model, _ = build_model(name, d, 1, {"trunk": "identity"})
        head = model.head.to(args.device).train()

        def step():
            z = z0.clone().requires_grad_()
            head.zero_grad(set_to_none=True)
            head.loss(z, y).total.backward()

        with torch.no_grad():
            kept = (head.neighbor_weights(z0) > 0).double().mean().item()
        return step, kept

    steps, kept = {}, {}
    for name in names:
        steps[name], kept[name] = head_step(name)
    res = compare({"floor": floor, **steps}, "floor", repeats=max(3, args.repeats // 3), warmup=1,
                  device=args.device)
    where = "1 thread" if on_cpu else "GPU"
    return [[f"{n} step vs floor, N = {N}, d = {d}, {kind} z (kept {100 * kept[n]:.3g}%), {where}",
             f"{res[n].ratio_median:.2f}", f"{1e3 * res[n].median:.3g} ms vs {1e3 * res['floor'].median:.3g} ms"]
            for n in names]


# ----------------------------------------------------------------------------- 3. memory bank
def _bank_head(kind: str, bank: torch.Tensor, y: torch.Tensor):
    """The head of a bank row ``"nca-softstep-g[-faiss][@l0][+trained]"``, its memory filled on
    the bank's device: the torch (dense) or faiss search, SoftStep's l0; "trained" sets the
    training neighbor-set size of batch 256 (lo is then the expected minimum of a 255-point subset)."""
    kind, trained = kind.removesuffix("+trained"), kind.endswith("+trained")
    name, _, l0 = kind.partition("@")
    params = {"trunk": "identity", "softstep_l0": float(l0 or 0.5),
              "search": "faiss" if name.endswith("-faiss") else "dense"}
    model, _ = build_model("nca-softstep-g", bank.shape[1], 1, params)
    head = model.head.to(bank.device).eval()
    head.fit_memory(bank, y)
    if trained:
        head.fit_neighbors.fill_(255)
    return head


def bank_child(kind: str, m: int, q: int, d: int, threads: int, device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    bank, zq, y = torch.randn(m, d, generator=gen), torch.randn(q, d, generator=gen), torch.rand(m, 1, generator=gen)
    if device != "cpu":
        return _bank_child_gpu(kind, bank.to(device), zq.to(device), y.to(device))
    if kind == "faiss-flat-top32":
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.IndexFlatL2(d)
        index.add(bank.numpy())
        index.search(zq[:8].numpy(), 32)  # warm-up
        before = _reset_peak()
        t0 = time.perf_counter()
        index.search(zq.numpy(), 32)
    else:
        head = _bank_head(kind, bank, y)
        head.query_chunk_size = 256
        with torch.no_grad():
            head(zq[:8])  # warm-up
            before = _reset_peak()
            t0 = time.perf_counter()
            head(zq)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_extra_mb": (rss_kb("VmHWM") - before) / 1024}


def _bank_child_gpu(kind: str, bank, zq, y) -> dict:
    """The GPU rows: the head's exact (dense) path on the device, against an exact top-32 by
    torch on the same device (blocks of 256 queries: squared distances, then ``topk``), which is
    what a flat GPU index computes; peak extra device memory from the allocator."""
    dev = bank.device
    if kind == "torch-top32":
        def run(q):
            for i in range(0, len(q), 256):
                squared_distances(q[i:i + 256], bank).topk(32, dim=1, largest=False)
    else:
        run = _bank_head(kind, bank, y)
    with torch.no_grad():
        run(zq[:8])  # warm-up
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        run(zq)
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_extra_mb": (torch.cuda.max_memory_allocated(dev) - before) / 2**20}


BANK_KINDS = ("faiss-flat-top32", "nca-softstep-g", "nca-softstep-g-faiss", "nca-softstep-g@0.9",
              "nca-softstep-g-faiss@0.9", "nca-softstep-g+trained", "nca-softstep-g-faiss+trained")
GPU_BANK_KINDS = ("torch-top32", "nca-softstep-g", "nca-softstep-g@0.9", "nca-softstep-g+trained")


def bench_bank(args) -> list[list[str]]:
    """The exact SoftStep bank against faiss's top-32, dense (torch) and faiss-searched, at the
    default l0 = 0.5 (on random data the ball then holds a large part of the bank) and at
    l0 = 0.9 (a small ball, the regime where a range search pays)."""
    on_gpu = torch.device(args.device).type == "cuda"
    kinds = GPU_BANK_KINDS if on_gpu else BANK_KINDS
    out = {}
    for kind in kinds:
        cmd = [sys.executable, __file__, "--_child",
               json.dumps([kind, args.bank, args.queries, 64, args.threads, args.device])]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            if "No module named 'faiss'" in res.stderr:
                return [["memory bank vs faiss IndexFlatL2 top-32", "n/a", "faiss not installed (pip install faiss-cpu)"]]
            raise RuntimeError(res.stderr)
        out[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    base = out[kinds[0]]
    rows = []
    for kind in kinds[1:]:
        name, _, l0 = kind.removesuffix("+trained").partition("@")
        how = "faiss search" if name.endswith("-faiss") else "torch"
        if on_gpu:
            rows.append([f"memory bank {args.bank:.0e} x 64, {args.queries} queries, nca-softstep-g l0 = {l0 or 0.5}"
                         f"{', trained at batch 256' if kind.endswith('+trained') else ''} (GPU, exact) vs torch "
                         f"top-32 on the GPU", f"{out[kind]['seconds'] / base['seconds']:.2f}",
                         f"{1e3 * out[kind]['seconds']:.3g} ms vs {1e3 * base['seconds']:.3g} ms; peak extra "
                         f"{out[kind]['peak_extra_mb']:.0f} MB vs {base['peak_extra_mb']:.0f} MB (device)"])
            continue
        trained = ", trained at batch 256" if kind.endswith("+trained") else ""
        rows.append([f"memory bank {args.bank:.0e} x 64, {args.queries} queries, nca-softstep-g l0 = {l0 or 0.5}{trained} "
                     f"({how}, exact) vs faiss IndexFlatL2 top-32", f"{out[kind]['seconds'] / base['seconds']:.2f}",
                     f"{out[kind]['seconds']:.1f} s vs {base['seconds']:.1f} s; peak extra "
                     f"{out[kind]['peak_extra_mb']:.0f} MB vs {base['peak_extra_mb']:.0f} MB"])
    return rows


# ----------------------------------------------------------------------------- 4. codec
def bench_codec(args) -> list[list[str]]:
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_codec import make_step

    steps = {name: make_step(name, 1, 25, 256, args.device) for name in ("ls", "e2e-codec")}
    res = compare(steps, "ls", repeats=args.repeats, warmup=args.warmup, number=20, device=args.device)
    return [["e2e-codec step vs ls, k = 25, batch 256", f"{res['e2e-codec'].ratio_median:.2f}",
             f"{1e3 * res['e2e-codec'].median:.2f} ms vs {1e3 * res['ls'].median:.2f} ms"]]


def main(argv=None):
    ap = bench_args(__doc__, repeats=9, warmup=2)
    ap.set_defaults(device="cpu")
    ap.add_argument("--bank", type=int, default=10**6)
    ap.add_argument("--queries", type=int, default=4096)
    ap.add_argument("--skip-bank", action="store_true")
    ap.add_argument("--only-bank", action="store_true", help="the memory-bank rows alone")
    ap.add_argument("--only", choices=["soft-rank", "heads", "codec", "bank"],
                    help="one section alone (while working on it)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(bank_child(*json.loads(args._child))))
        return
    print(setup(args))
    start_rss = _reset_peak()
    rows = []
    sections = [] if args.only_bank else [bench_soft_rank, bench_heads, bench_codec]
    sections += [] if args.skip_bank else [bench_bank]
    if args.only:
        sections = [{"soft-rank": bench_soft_rank, "heads": bench_heads, "codec": bench_codec,
                     "bank": bench_bank}[args.only]]
    for section in sections:
        print(f"[{section.__name__}: {_load()}]", flush=True)
        rows += section(args)
    print()
    print_table(["figure", "ratio (median)", "times"], rows)
    print(f"\npeak extra resident memory of this process (steps): {(rss_kb('VmHWM') - start_rss) / 1024:.0f} MB; "
          f"{_load()}")


if __name__ == "__main__":
    main()
