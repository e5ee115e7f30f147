"""Training-step time on 2 processes (gloo, CPU) as a ratio to 1 process with the same batch.

Both processes are started once (``beyondmse.distributed.launch``); inside them, interleaved:

* ``1 x B``   -- one process's step: trunk, head loss and regularizers on all B rows, Adam step
  (each rank runs it alone, without collectives; the baseline);
* ``2 x B/2`` -- the step the Trainer takes under ``--nproc 2``: each rank embeds B/2 rows, the
  batch loss runs on the gathered B rows, DDP averages the gradients;
* ``gather``  -- only the collectives of one step: row counts, embeddings and targets gathered,
  the gather's backward all-reduce (no DDP).

A ratio below 1 for ``2 x B/2`` is a speed-up. Rank 0's table is printed; timings taken while both
ranks share the machine with whatever else runs on it (ratios, not absolute times, carry over).

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py [--methods nca,rot] [--batch 256] [--input 32]
"""

from __future__ import annotations

import torch
from _timing import bench_args, compare, print_table

from beyondmse import distributed
from beyondmse.recipes import build_model


def _steps(method: str, batch: int, features: int) -> dict:
    torch.manual_seed(0)
    model, _ = build_model(method, (features,), 1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(batch, features, generator=g), torch.rand(batch, 1, generator=g)
    ddp = distributed.wrap_for_training(model)
    mine_x, mine_y = distributed.local_part(X), distributed.local_part(y)

    def one_process():  # what training_loss computes without a process group
        z = model.trunk(X)
        loss = model.head.loss(z, y).total + sum(reg(z, y) for reg in model.regularizers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def two_processes():
        loss = ddp(mine_x, mine_y).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    z_local = torch.randn(len(mine_x), 64, requires_grad=True)

    def gather_only():
        z, yy = distributed.gather_batch(z_local, mine_y)
        z.sum().backward()

    return {"1 x B": one_process, "2 x B/2": two_processes, "gather": gather_only}


def _run(methods: list[str], batch: int, features: int, repeats: int, warmup: int):
    torch.set_num_threads(1)
    rows = []
    for method in methods:
        res = compare(_steps(method, batch, features), "1 x B", repeats=repeats, warmup=warmup)
        rows += [[method, *r.row()] for r in res.values()]
    return rows


def main() -> None:
    parser = bench_args(__doc__, repeats=15, warmup=3)
    parser.add_argument("--methods", default="nca,rot")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--input", type=int, default=32, help="input features")
    args = parser.parse_args()
    rows = distributed.launch(_run, ([m for m in args.methods.split(",") if m], args.batch, args.input,
                                     args.repeats, args.warmup), nproc=2, threads=1)[0]
    print(f"batch {args.batch}, MLP trunk, {args.input} features; rank 0's timings")
    print_table(["method", "step", "median ms", "IQR ms", "ratio to 1 x B"], rows)


if __name__ == "__main__":
    main()
