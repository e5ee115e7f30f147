"""Codec-family experiments on real data (the "Done means" runs of the codec issue).

Runs every (dataset, method, k, seed) cell with :func:`beyondmse.experiment.run_experiment`
(protocol "paper": fixed split sizes, MLP 128 hidden / dropout 0.3, Adam, weight decay 1e-4,
clip 1.0, labels min-max scaled to [0, 1] on the training split, early stopping on validation
MAE; nothing is chosen on the test split) and appends one JSON record per line to ``--out``.
Cells already in the file are skipped, so the script can be stopped and resumed.

    nice -n 10 python benchmarks/exp_codec.py --datasets wine_quality-num --seeds 3 --ks 25
    python benchmarks/exp_codec.py --summary --out results/codec.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

CODEC = ["ls-softmax", "hard-bin", "soft-bin", "hl-gauss", "trained-codec", "e2e-codec"]


def _key(rec):
    return rec["dataset"], rec["method"], int(rec.get("k") or 0), int(rec["seed"])


def run(args) -> None:
    from beyondmse.experiment import run_experiment

    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {_key(json.loads(line)) for line in out.read_text().splitlines() if line.strip()}
    methods = args.methods.split(",")
    for dataset in args.datasets.split(","):
        for k in [int(v) for v in args.ks.split(",")]:
            for method in methods:
                if method not in CODEC and k != 25:
                    continue  # baselines have no k: run them once, filed under k = 25
                for seed in range(args.seeds):
                    kk = k if method in CODEC else 0
                    if (dataset, method, kk, seed) in done:
                        continue
                    params = {"k": k} if method in CODEC else {}
                    t = time.perf_counter()
                    rec = run_experiment(dataset, method, seed, epochs=args.epochs, params=params,
                                         protocol=args.protocol, diagnostics=False)
                    rec.pop("history", None)
                    rec["k"] = kk
                    with out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(f"{dataset:18s} {method:14s} k={kk:<3d} seed={seed} mae={rec['metrics']['mae']:.4f} "
                          f"epochs={rec['epochs']} ({time.perf_counter() - t:.0f}s)", flush=True)


def summary(args) -> None:
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
    cells = defaultdict(list)
    for r in rows:
        cells[(r["dataset"], r["method"], int(r.get("k") or 0))].append(r["metrics"]["mae"])
    datasets = sorted({d for d, _, _ in cells})
    print(f"MAE on the [0, 1]-scaled test targets, mean ± std over seeds (n = seeds)\n")
    for d in datasets:
        print(f"### {d}\n")
        ks = sorted({k for dd, _, k in cells if dd == d and k})
        print("| method | " + " | ".join(f"k = {k}" for k in ks) + " |")
        print("|---|" + "---|" * len(ks))
        base = cells.get((d, "ls", 0))
        if base:
            print(f"| ls (no k) | {np.mean(base):.4f} ± {np.std(base):.4f} (n={len(base)}) |" + " |" * (len(ks) - 1))
        for m in CODEC:
            vals = []
            for k in ks:
                v = cells.get((d, m, k))
                vals.append(f"{np.mean(v):.4f} ± {np.std(v):.4f} (n={len(v)})" if v else "")
            if any(vals):
                print(f"| {m} | " + " | ".join(vals) + " |")
        print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="wine_quality-num")
    p.add_argument("--methods", default=",".join(["ls"] + CODEC))
    p.add_argument("--ks", default="25")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--protocol", default="paper")
    p.add_argument("--out", default="results/codec.jsonl")
    p.add_argument("--summary", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("BEYONDMSE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    summary(args) if args.summary else run(args)


if __name__ == "__main__":
    main()
