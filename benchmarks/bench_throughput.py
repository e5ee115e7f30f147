"""Training throughput (samples/s) of ``ls`` (MLP trunk + linear head) on a real dataset.

Each timed repeat is one training epoch (``Trainer.fit`` with ``max_epochs=1``) on the paper
split of ``--dataset``, after ``--warmup`` untimed epochs; the median and IQR over
``--repeats`` epochs are printed. The family scripts time their heads against ``ls`` in their
own runs; this one gives the absolute scale on this machine.

    python benchmarks/bench_throughput.py [--repeats 5] [--batch-size 256] [--threads N]
"""

from __future__ import annotations

import numpy as np
from _timing import bench_args, compare, setup

from beyondmse.data import load_dataset, make_splits
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, seed_everything


def main() -> None:
    p = bench_args(__doc__, repeats=5, warmup=1)
    p.add_argument("--epochs", type=int, default=None, help="old name of --repeats")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--dataset", default="diamonds")
    args = p.parse_args()
    if args.epochs is not None:
        args.repeats = args.epochs
    where = setup(args)
    splits = make_splits(load_dataset(args.dataset), 0, "paper")
    seed_everything(0)
    model, kw = build_model("ls", splits.X_train.shape[1:], splits.y_train.shape[1])
    kw.update(batch_size=args.batch_size, max_epochs=1, patience=None)

    def epoch():
        Trainer(device=args.device, **kw).fit(model, splits.X_train, splits.y_train)

    t = compare({"ls": epoch}, "ls", repeats=args.repeats, warmup=args.warmup, device=args.device)["ls"]
    n = len(splits.X_train)
    q1, med, q3 = np.percentile(n / t.seconds, [25, 50, 75])
    print(f"{where}; {args.dataset}: {n} training samples, batch {args.batch_size}")
    print(f"ls (MLP + linear head): median {med:,.0f} samples/s (IQR {q1:,.0f}-{q3:,.0f}), "
          f"{t.median:.3f} s/epoch over {args.repeats} epochs")


if __name__ == "__main__":
    main()
