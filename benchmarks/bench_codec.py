"""Training-step time of each codec recipe as a ratio to ``ls`` (the linear head), same run.

One step = MLP trunk (128 hidden, depth 2, dropout 0.3) forward, ``training_loss``, backward,
unit gradient clipping and an Adam step on a batch of ``--batch``. Two settings: m = 1 target
with k = 25 classes, and m = 2 targets with k = 625 classes (a 25 x 25 grid). Codec targets are
fitted once on 4,096 random targets before timing (a short, untimed stage 1 for the trained codecs).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_codec.py --threads 1
"""

from __future__ import annotations

import torch
from _timing import bench_args, compare, print_table, setup, train_step

from beyondmse.recipes import build_model, methods_in_family


def make_step(method: str, m: int, k: int, batch: int, device):
    torch.manual_seed(0)
    params = {} if method == "ls" else {"k": k, "init": "uniform" if m == 1 else "grid"}
    if method in ("trained-codec", "e2e-codec"):
        params["stage1_steps"] = 50  # the codec's pre-training is not timed: keep it short
    model, _ = build_model(method, 16, m, params)
    model.to(device).train()
    g = torch.Generator().manual_seed(0)
    model.head.fit_targets(torch.rand(4096, m, generator=g).to(device))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    X, y = torch.rand(batch, 16, generator=g).to(device), torch.rand(batch, m, generator=g).to(device)

    return lambda: train_step(model, opt, X, y, clip_norm=1.0)


def main() -> None:
    p = bench_args(__doc__, repeats=15, warmup=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=100, help="steps per timed repeat")
    args = p.parse_args()
    print(setup(args) + f", {args.steps} steps per repeat")
    methods = ["ls"] + methods_in_family("codec")
    for m, k in ((1, 25), (2, 625)):
        steps = {name: make_step(name, m, k, args.batch, args.device) for name in methods}
        res = compare(steps, "ls", repeats=args.repeats, warmup=args.warmup, number=args.steps, device=args.device)
        print(f"\nm = {m}, k = {k}, batch {args.batch}")
        print_table(["method", "median ms/step", "IQR ms", "ratio to ls [IQR]"], [r.row() for r in res.values()])


if __name__ == "__main__":
    main()
