"""Early-stopping rules replayed on full validation curves: where each ``min_delta`` stops a run,
its best epoch, and how far its best validation score ends above the full curve's minimum.

Each run trains ``--epochs`` epochs without early stopping (``patience=None``; the dataset's
preset and the shared trainer otherwise), records its validation curve, and the rules
(patience ``--patience``, epoch cap ``--cap``, relative ``min_delta`` as in
:class:`beyondmse.train.Trainer`) are replayed on it. This is the measurement behind the
Trainer's ``min_delta`` default.

    OMP_NUM_THREADS=1 python benchmarks/stopping_rules.py wine_quality-num:ls:0 cpu_act-num:ranksim:1
"""

from __future__ import annotations

import argparse

import torch

from beyondmse.experiment import run_experiment
from beyondmse.train import EarlyStopping


def replay(curve: list[float], min_delta: float, patience: int, cap: int) -> tuple[int, int, float]:
    """``(stop epoch, best epoch, best score)`` of the Trainer's rule on a validation curve."""
    stopping, best_epoch = EarlyStopping(patience, min_delta), 0
    for epoch, score in enumerate(curve[:cap], 1):
        if stopping.update(score):
            best_epoch = epoch
        if stopping.should_stop:
            return epoch, best_epoch, stopping.best
    return min(cap, len(curve)), best_epoch, stopping.best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="dataset:method:seed")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--patience", type=int, default=20)
    ap.add_argument("--min-deltas", default="0,1e-3,2e-3,3e-3,5e-3")
    ap.add_argument("--protocol", default="paper")
    args = ap.parse_args()
    torch.set_num_threads(1)
    deltas = [float(v) for v in args.min_deltas.split(",")]
    print(f"cap {args.cap}, patience {args.patience}; cells: stop epoch / best epoch (! = within 10% of the cap) "
          f"/ best score above the {args.epochs}-epoch minimum")
    print("| run | best of the full curve | " + " | ".join(f"min_delta {d:g}" for d in deltas) + " |")
    print("|---|---|" + "---|" * len(deltas))
    for spec in args.runs:
        dataset, method, seed = spec.split(":")
        rec = run_experiment(dataset, method, int(seed), epochs=args.epochs, protocol=args.protocol,
                             params={"patience": None})
        curve = rec["history"]["val_score"]
        full = min(curve)
        cells = []
        for d in deltas:
            stop, best_epoch, best = replay(curve, d, args.patience, args.cap)
            flag = "!" if best_epoch > 0.9 * args.cap else ""
            cells.append(f"{stop} / {best_epoch}{flag} / +{100 * (best / full - 1):.2f}%")
        print(f"| {spec} | epoch {curve.index(full) + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
