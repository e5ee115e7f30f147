"""Training-step time of each codec head as a ratio to the linear head, measured in the same run.

One training step = trunk forward (MLP 128 hidden, depth 2, dropout 0.3), ``head.loss``,
backward, gradient clipping and an Adam step, on a batch of 256. Two settings: m = 1 with
k = 25 classes, and m = 2 with k = 625 classes (a 25 x 25 grid). In each repeat every head
(the linear head included) runs ``--steps`` steps in turn, so the ratio of a repeat compares
timings taken under the same machine load; we report the median and the interquartile range
of the per-repeat ratios, after ``--warmup`` untimed steps per head. CUDA is synchronised
before reading the clock when used.

    nice -n 10 python benchmarks/bench_codec.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from beyondmse.heads import Codec, Linear
from beyondmse.heads.codec import MODES
from beyondmse.models import MLP, RegressionModel


def _make(mode: str | None, d_in: int, m: int, k: int, device) -> tuple[RegressionModel, torch.optim.Optimizer]:
    trunk = MLP(d_in, hidden=128, depth=2, dropout=0.3)
    if mode is None:
        head = Linear(trunk.out_features, m)
    else:
        head = Codec(trunk.out_features, m, k=k, mode=mode, init="uniform" if m == 1 else "grid",
                     stage1_steps=50)
    model = RegressionModel(trunk, head).to(device)
    g = torch.Generator().manual_seed(0)
    model.head.fit_targets(torch.rand(4096, m, generator=g).to(device))
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)


def _steps(model, opt, X, y, n: int, device) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        out = model.training_loss(X, y)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def bench(m: int, k: int, args, device) -> None:
    torch.manual_seed(0)
    d_in, batch = 16, args.batch
    X = torch.rand(batch, d_in, device=device)
    y = torch.rand(batch, m, device=device)
    names = ["linear"] + list(MODES)
    models = {n: _make(None if n == "linear" else n, d_in, m, k, device) for n in names}
    for n in names:
        _steps(*models[n], X, y, args.warmup, device)
    times = {n: [] for n in names}
    for _ in range(args.repeats):
        for n in names:
            times[n].append(_steps(*models[n], X, y, args.steps, device))
    base = np.array(times["linear"])
    print(f"\nm = {m}, k = {k}, batch {batch}, {args.repeats} repeats x {args.steps} steps, device {device}")
    print(f"{'head':14s} {'ms/step':>9s} {'ratio (median)':>15s} {'IQR':>17s}")
    for n in names:
        t = np.array(times[n])
        r = t / base
        q1, q3 = np.percentile(r, [25, 75])
        print(f"{n:14s} {1e3 * np.median(t):9.3f} {np.median(r):15.2f} {f'[{q1:.2f}, {q3:.2f}]':>17s}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bench(1, 25, args, device)
    bench(2, 625, args, device)


if __name__ == "__main__":
    main()
