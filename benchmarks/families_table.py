"""Per-dataset verdicts of a families store: each method against ``ls`` on the same trunk, and
the SoftStep heads against plain NCA (the SoftStep paper's question), with paired t-tests over
the seeds both have, the runs whose best epoch sits within 10% of the epoch cap, and the
neighbor heads' kept fractions (inference / training).

    python benchmarks/families_table.py benchmarks/results/families-tabular.sqlite
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

from beyondmse.bench.stats import paired_verdict
from beyondmse.bench.store import ResultStore

PAIRS = [("nca-softstep-g", "nca"), ("nca-softstep-i", "nca")]


def _cell(a: dict[int, float], b: dict[int, float]) -> str:
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return "–"
    ratio = sum(a[s] for s in seeds) / sum(b[s] for s in seeds)
    if len(seeds) < 2:
        return f"{ratio:.3f} (seed {seeds[0]})"
    verdict, test = paired_verdict(a, b)
    return f"{ratio:.3f} {'n.s.' if verdict == 'level' else verdict} (p {test['p_t']:.3f}, n {len(seeds)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--metric", default="mae")
    args = ap.parse_args()
    mae: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    capped, kept = defaultdict(list), defaultdict(list)
    for path in args.stores:
        for r in ResultStore(path).rows():
            if r.get("tag") or r["params"]:
                continue  # the default recipes only
            key = (r["dataset"], r["method"])
            mae[key][int(r["seed"])] = r["metrics"][args.metric]
            if r.get("cap_bound"):
                capped[key].append(f"s{r['seed']}@{r['best_epoch']}")
            head = r.get("head") or {}
            if "kept_frac_infer" in head:
                kept[key].append(f"s{r['seed']} {head['kept_frac_infer']:.3f}/{head['kept_frac_train']:.3f}")
    datasets = sorted({d for d, _ in mae})
    methods = sorted({m for _, m in mae}, key=lambda m: (m != "ls", m))
    print(f"test {args.metric}: ratio to ls over common seeds, paired t at 5%\n")
    print("| dataset | ls | " + " | ".join(m for m in methods if m != "ls") + " |")
    print("|---|" + "---|" * len(methods))
    for d in datasets:
        base = mae.get((d, "ls"), {})
        mean = sum(base.values()) / len(base) if base else math.nan
        cells = [_cell(mae[(d, m)], base) if (d, m) in mae else "–" for m in methods if m != "ls"]
        print(f"| {d} | {mean:.4f} (n {len(base)}) | " + " | ".join(cells) + " |")
    print("\nSoftStep against plain NCA on the same trunk (ratio of test " + args.metric + ")\n")
    print("| dataset | " + " | ".join(f"{a} / {b}" for a, b in PAIRS) + " |")
    print("|---|" + "---|" * len(PAIRS))
    for d in datasets:
        print(f"| {d} | " + " | ".join(_cell(mae.get((d, a), {}), mae.get((d, b), {})) for a, b in PAIRS) + " |")
    print("\nbest epoch within 10% of the cap:",
          "; ".join(f"{d}/{m} {' '.join(v)}" for (d, m), v in sorted(capped.items())) or "none")
    print("\nkept fractions, inference / training, per seed:")
    for (d, m), v in sorted(kept.items()):
        print(f"  {d} {m}: {', '.join(v)}")


if __name__ == "__main__":
    main()
