"""Cost of an epoch on ``trunk="tabular"`` as a ratio to the plain shared MLP, same run.

One epoch = the Trainer's inner loop (forward, ``ls`` loss, backward, clipping, Adam step) over the
first ``--rows`` training rows of a shared table in batches of 256, on the real columns (so the
tabular trunk's level embeddings are in use where the table has low-cardinality columns).

    OMP_NUM_THREADS=1 BEYONDMSE_DATA=... python benchmarks/bench_tabular_trunk.py [--datasets diamonds,ailerons]
"""

from __future__ import annotations

import torch
from _timing import bench_args, compare, print_table, setup, train_step

from beyondmse.data import load_dataset, make_splits
from beyondmse.recipes import build_model

TRUNKS = {"mlp": {"trunk": "mlp"}, "tabular": {"trunk": "tabular"}}


def make_epoch(params: dict, X: torch.Tensor, y: torch.Tensor, batch: int = 256):
    torch.manual_seed(0)
    model, _ = build_model("ls", X.shape[1:], 1, params)
    fit_inputs = getattr(model.trunk, "fit_inputs", None)
    if callable(fit_inputs):
        fit_inputs(X)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch():
        for i in range(0, len(X), batch):
            train_step(model, opt, X[i:i + batch], y[i:i + batch], clip_norm=1.0)

    return epoch


def main() -> None:
    p = bench_args(__doc__, repeats=5, warmup=1)
    p.add_argument("--datasets", default="diamonds,ailerons")
    p.add_argument("--rows", type=int, default=8192)
    args = p.parse_args()
    print(setup(args))
    for name in args.datasets.split(","):
        sp = make_splits(load_dataset(name), 0)
        X = torch.as_tensor(sp.X_train[:args.rows])
        y = torch.as_tensor(sp.y_train[:args.rows])
        epochs = {trunk: make_epoch(params, X, y) for trunk, params in TRUNKS.items()}
        res = compare(epochs, "mlp", repeats=args.repeats, warmup=args.warmup, device=args.device)
        print(f"\n{name}: {X.shape[1]} columns, epoch over {len(X)} rows, batch 256")
        print_table(["trunk", "median ms", "IQR ms", "ratio to mlp [IQR]"], [r.row() for r in res.values()])


if __name__ == "__main__":
    main()
