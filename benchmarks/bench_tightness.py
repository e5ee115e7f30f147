"""Training-step time of the tightness recipes as ratios to the plain linear head (``ls``).

One step = forward, ``training_loss`` (head loss + regularizers), backward and an Adam step,
on the default MLP trunk (hidden 128, depth 2) with random inputs (32 features), or with
``--input 3,32,32`` on the SmallCNN trunk with random images, and scalar targets. The
regularizers cost the same whatever the trunk, so their ratio shrinks as the trunk grows
(the paper's +14% is on a ResNet-50 on GPU). For each batch size: ``--warmup`` untimed
steps, then ``--reps`` timed steps; the median and inter-quartile range (IQR) are printed,
and the ratio of medians to ``ls``.
CUDA is synchronised around each timed step.

The paper reports +14% wall time for L_ot and +26% for MT + L_ot (full training, GPU).

Usage::

    python benchmarks/bench_tightness.py [--batches 128,256,1024] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from beyondmse.recipes import build_model
from beyondmse.train import seed_everything

METHODS = ("ls", "mt", "rot", "mt+rot", "ranksim", "oe", "ph-reg")


def step_times(method: str, batch: int, device: str, warmup: int, reps: int,
               input_shape: tuple[int, ...] = (32,)) -> np.ndarray:
    seed_everything(0)
    model, _ = build_model(method, input_shape, 1)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(batch, *input_shape, generator=g).to(device)
    y = torch.rand(batch, 1, generator=g).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(warmup + reps):
        sync()
        start = time.perf_counter()
        out = model.training_loss(X, y)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return np.asarray(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="128,256,1024")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input", default="32",
                    help="input shape: '32' (vectors, MLP trunk) or e.g. '3,64,64' (images, SmallCNN trunk)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if "ls" not in methods:
        methods = ["ls"] + methods
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({args.threads} thread(s))"
    shape = tuple(int(s) for s in args.input.split(","))
    trunk = "MLP" if len(shape) == 1 else "SmallCNN"
    print(f"device: {name}; input {shape} ({trunk} trunk); warmup {args.warmup}, {args.reps} timed steps per cell")
    print("| method | batch | median ms | IQR ms | ratio to ls |")
    print("|---|---|---|---|---|")
    for batch in (int(b) for b in args.batches.split(",")):
        base = None
        for method in methods:
            t = step_times(method, batch, args.device, args.warmup, args.reps, shape) * 1e3
            med = float(np.median(t))
            iqr = float(np.percentile(t, 75) - np.percentile(t, 25))
            if method == "ls":
                base = med
            print(f"| {method} | {batch} | {med:.3f} | {iqr:.3f} | {med / base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
