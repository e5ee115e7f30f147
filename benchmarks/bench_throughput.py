"""Training throughput (samples/s) of the MLP trunk + linear head on diamonds.

Later heads are compared to this as a ratio (each family's benchmark measures its own
baseline in the same run, since absolute times drift on shared machines). Reports the
median and IQR over repeated timed epochs after a warm-up epoch.

    python benchmarks/bench_throughput.py [--epochs 5] [--batch-size 256] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from beyondmse.data import load_dataset, make_splits
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, seed_everything


def epoch_seconds(method: str, splits, batch_size: int, epochs: int, device: str) -> list[float]:
    seed_everything(0)
    model, kw = build_model(method, splits.X_train.shape[1:], 1)
    kw.update(batch_size=batch_size, max_epochs=1, patience=None)
    times = []
    for _ in range(epochs + 1):  # the first epoch is warm-up
        trainer = Trainer(device=device, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.fit(model, splits.X_train, splits.y_train)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dataset", default="diamonds")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = make_splits(load_dataset(args.dataset), 0, "paper")
    n = len(splits.X_train)
    t = np.array(epoch_seconds("ls", splits, args.batch_size, args.epochs, args.device))
    rate = n / t
    q1, med, q3 = np.percentile(rate, [25, 50, 75])
    print(f"{args.dataset}: {n} training samples, batch {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"ls (MLP 128x2 + linear): median {med:,.0f} samples/s (IQR {q1:,.0f}-{q3:,.0f}), "
          f"{np.median(t):.3f} s/epoch over {args.epochs} epochs")


if __name__ == "__main__":
    main()
