"""Training-step time of the tightness recipes as a ratio to ``ls`` (the linear head), same run.

One step = forward, ``training_loss`` (head loss + regularizers), backward and an Adam step, on
the default MLP trunk with random inputs (32 features), or with ``--input 3,32,32`` on the
SmallCNN trunk with random images; scalar targets. The regularizers cost the same whatever the
trunk, so their ratio shrinks as the trunk grows (the paper's +14% for L_ot and +26% for
MT + L_ot are full trainings of a ResNet-50 on a GPU).

By default every step takes the next of 16 batches, as mini-batch training does: ROT then solves
both of its plans every step. ``--fixed-batch`` repeats one batch (full-batch training), where
ROT reuses the target plan and warm-starts the feature plan, several times cheaper.

    OMP_NUM_THREADS=1 python benchmarks/bench_tightness.py [--batches 128,256,1024] [--input 3,32,32]
        [--fixed-batch]
"""

from __future__ import annotations

import itertools

import torch
from _timing import bench_args, compare, print_table, setup, train_step

from beyondmse.recipes import build_model, methods_in_family

# the recipes of the paper's tables; ranksim/oe/ph-reg are its ordinality baselines
DEFAULT_METHODS = ["ls"] + methods_in_family("tightness")


def make_step(method: str, batch: int, input_shape: tuple[int, ...], device, fixed: bool = False):
    """One training step on the next of 16 pre-drawn batches, as in mini-batch training (ROT
    then solves both plans every step); ``fixed``: the same batch every step, as in full-batch
    training (ROT reuses the target plan and warm-starts the feature plan)."""
    torch.manual_seed(0)
    model, _ = build_model(method, input_shape, 1)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, *input_shape, generator=g).to(device), torch.rand(batch, 1, generator=g).to(device))
               for _ in range(1 if fixed else 16)]
    batch_cycle = itertools.cycle(batches)

    def step():
        train_step(model, opt, *next(batch_cycle))

    return step


def main() -> None:
    p = bench_args(__doc__, repeats=30, warmup=5)
    p.add_argument("--batches", default="128,256,1024")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--input", default="32", help="'32' (vectors, MLP trunk) or e.g. '3,32,32' (images, SmallCNN)")
    p.add_argument("--fixed-batch", action="store_true", help="the same batch every step (full-batch training)")
    args = p.parse_args()
    shape = tuple(int(s) for s in args.input.split(","))
    methods = list(dict.fromkeys(["ls"] + args.methods.split(",")))
    print(setup(args) + f"; input {shape} ({'MLP' if len(shape) == 1 else 'SmallCNN'} trunk)")
    for batch in (int(b) for b in args.batches.split(",")):
        steps = {m: make_step(m, batch, shape, args.device, args.fixed_batch) for m in methods}
        res = compare(steps, "ls", repeats=args.repeats, warmup=args.warmup, device=args.device)
        print(f"\nbatch {batch}")
        print_table(["method", "median ms", "IQR ms", "ratio to ls [IQR]"], [r.row() for r in res.values()])


if __name__ == "__main__":
    main()
