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
    return rec["dataset"], rec.get("label", rec["method"]), int(rec.get("k") or 0), int(rec["seed"])


def run(args) -> None:
    from beyondmse.experiment import run_experiment

    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {_key(json.loads(line)) for line in out.read_text().splitlines() if line.strip()}
    methods = args.methods.split(",")
    extra = json.loads(args.params) if args.params else {}
    # seeds outermost, so that a run cut short still has complete method sets for its first seeds
    for dataset in args.datasets.split(","):
        for seed in range(args.seeds):
            for k in [int(v) for v in args.ks.split(",")]:
                for method in methods:
                    if method not in CODEC and k != 25:
                        continue  # baselines have no k: run them once, filed under k = 25
                    kk = k if method in CODEC else 0
                    label = f"{method}[{args.tag}]" if args.tag else method
                    if (dataset, label, kk, seed) in done:
                        continue
                    params = {"k": k, **extra} if method in CODEC else dict(extra)
                    t = time.perf_counter()
                    rec = run_experiment(dataset, method, seed, epochs=args.epochs, params=params,
                                         protocol=args.protocol, diagnostics=False)
                    rec.pop("history", None)
                    rec["k"] = kk
                    rec["label"] = label
                    with out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(f"{dataset:18s} {label:14s} k={kk:<3d} seed={seed} mae={rec['metrics']['mae']:.4f} "
                          f"epochs={rec['epochs']} ({time.perf_counter() - t:.0f}s)", flush=True)


def summary(args) -> None:
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
    cells = defaultdict(list)
    for r in rows:
        cells[(r["dataset"], r.get("label", r["method"]), int(r.get("k") or 0))].append(r["metrics"]["mae"])
    datasets = sorted({d for d, _, _ in cells})
    print("MAE on the [0, 1]-scaled test targets, mean ± std over seeds (n = seeds)\n")
    for d in datasets:
        print(f"### {d}\n")
        ks = sorted({k for dd, _, k in cells if dd == d and k})
        print("| method | " + " | ".join(f"k = {k}" for k in ks) + " |")
        print("|---|" + "---|" * len(ks))
        base = cells.get((d, "ls", 0))
        if base:
            print(f"| ls (no k) | {np.mean(base):.4f} ± {np.std(base):.4f} (n={len(base)}) |" + " |" * (len(ks) - 1))
        labels = CODEC + sorted({mm for dd, mm, _ in cells if dd == d and mm not in CODEC and mm != "ls"})
        for m in labels:
            vals = []
            for k in ks:
                v = cells.get((d, m, k))
                vals.append(f"{np.mean(v):.4f} ± {np.std(v):.4f} (n={len(v)})" if v else "")
            if any(vals):
                print(f"| {m} | " + " | ".join(vals) + " |")
        print()
        if base:
            by_seed = {int(r["seed"]): r["metrics"]["mae"] for r in rows if r["dataset"] == d and r.get("label", r["method"]) == "ls"}
            print("Paired difference to ls (same split and seed), mean ± std, negative = better than ls:\n")
            print("| method | " + " | ".join(f"k = {k}" for k in ks) + " | wins vs ls |")
            print("|---|" + "---|" * (len(ks) + 1))
            for m in labels:
                vals, wins, total = [], 0, 0
                for k in ks:
                    diffs = [r["metrics"]["mae"] - by_seed[int(r["seed"])] for r in rows
                             if r["dataset"] == d and r.get("label", r["method"]) == m and int(r.get("k") or 0) == k
                             and int(r["seed"]) in by_seed]
                    wins += sum(x < 0 for x in diffs)
                    total += len(diffs)
                    vals.append(f"{np.mean(diffs):+.4f} ± {np.std(diffs):.4f}" if diffs else "")
                if any(vals):
                    print(f"| {m} | " + " | ".join(vals) + f" | {wins}/{total} |")
            print()


def wide(args) -> None:
    """One table: methods x datasets at one k (``--ks``, first value), mean ± std over seeds."""
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
    k = int(args.ks.split(",")[0])
    cells = defaultdict(dict)
    for r in rows:
        kk = int(r.get("k") or 0)
        if kk in (0, k):
            cells[(r["dataset"], r.get("label", r["method"]))][int(r["seed"])] = r["metrics"]["mae"]
    datasets = sorted({d for d, _ in cells})
    labels = ["ls"] + CODEC + sorted({m for _, m in cells if m not in CODEC and m != "ls"})
    print(f"Test MAE ([0, 1]-scaled targets), k = {k}, mean ± std over seeds; "
          "* = lower mean than ls, and (w/n) = seeds where the method beats ls on the same split\n")
    print("| method | " + " | ".join(datasets) + " |")
    print("|---|" + "---|" * len(datasets))
    for m in labels:
        out = []
        for d in datasets:
            v, base = cells.get((d, m)), cells.get((d, "ls"), {})
            if not v:
                out.append("")
                continue
            vals = np.array(list(v.values()))
            txt = f"{vals.mean():.4f} ± {vals.std():.4f}"
            if m != "ls" and base:
                common = [s_ for s_ in v if s_ in base]
                wins = sum(v[s_] < base[s_] for s_ in common)
                star = "*" if vals.mean() < np.mean(list(base.values())) else ""
                txt += f"{star} ({wins}/{len(common)})"
            out.append(txt)
        if any(out):
            print(f"| {m} | " + " | ".join(out) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="wine_quality-num")
    p.add_argument("--methods", default="ls,e2e-codec,soft-bin,hard-bin,hl-gauss,trained-codec,ls-softmax")
    p.add_argument("--ks", default="25")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--protocol", default="paper")
    p.add_argument("--out", default="results/codec.jsonl")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--wide", action="store_true", help="one methods x datasets table at k = --ks")
    p.add_argument("--params", default="", help="JSON dict of extra knobs (an ablation); needs --tag")
    p.add_argument("--tag", default="", help="label suffix: the method is stored as 'method[tag]'")
    args = p.parse_args()
    os.environ.setdefault("BEYONDMSE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    if args.wide:
        wide(args)
    elif args.summary:
        summary(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
