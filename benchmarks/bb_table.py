"""The bb-tabular store side by side with the Beyond Binning paper's Table 3 (or 4, 5), per class
count, and the paper's three orderings checked on our runs and on the published numbers.

    BEYONDMSE_DATA=../shared/datasets python benchmarks/bb_table.py benchmarks/results/bb-tabular.sqlite

Only the runs the ``bb-tabular`` suite defines today are read (older protocols stay in the store
under other run keys). Each cell is our test metric, mean over seeds (n), then the published mean
in brackets; ``*`` marks a run whose best epoch sat within 10% of the epoch cap. The orderings
(Stewart et al., Sec. 5): the end-to-end codec is the best of the paper's five codec methods
(HL-Gauss, not in the paper, is left out of that check); soft binning beats hard
binning; least squares on a softmax code (``ls-softmax``) gives no consistent gain over ``ls``.
Ours are decided by paired t-tests over the seeds at 5%; the paper's on its printed means (equal
at its three printed digits is level).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from beyondmse.bench import get_suite
from beyondmse.bench.stats import lower_is_better, paired_verdict
from beyondmse.bench.store import ResultStore

TABLE = {"mae": 3, "rmse": 4, "r2": 5}
CODECS = ["ls-softmax", "hard-bin", "soft-bin", "hl-gauss", "trained-codec", "e2e-codec"]
PAPER_CODECS = [m for m in CODECS if m != "hl-gauss"]  # HL-Gauss is not in the paper's tables
SINGLE = ["ls", "huber", "sk-hgb", "sk-knn", "sk-ridge"]


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--metric", default="mae", choices=sorted(TABLE))
    args = ap.parse_args()
    suite = get_suite("bb-tabular", seeds=10)
    if suite.skipped:
        print("not in this suite here (data missing?):", "; ".join(suite.skipped))
    spec_of = {r.key: r for r in suite.runs}
    defined = {(r.dataset_name, r.method, r.params.get("k")) for r in suite.runs}
    ours: dict[tuple, dict[int, float]] = defaultdict(dict)
    capped: set[tuple] = set()
    for row in ResultStore(args.store).rows():
        spec = spec_of.get(row["run_key"])
        if spec is None:
            continue
        cell = (spec.dataset_name, spec.method, spec.params.get("k"))
        ours[cell][spec.seed] = row["metrics"][args.metric]
        if row.get("cap_bound"):
            capped.add(cell)
    paper = {(p.dataset, p.method, p.params.get("k")): p.value
             for p in suite.published if p.metric == args.metric}
    datasets = list(dict.fromkeys(r.dataset_name for r in suite.runs))
    lower = lower_is_better(args.metric)

    def text(cell: tuple) -> str:
        mine, pub = ours.get(cell), paper.get(cell)
        if not mine and pub is None and cell not in defined:
            return "–"
        got = f"{_mean(mine):.4f}{'*' if cell in capped else ''} ({len(mine)})" if mine else "not run"
        return got + (f" [{pub:g}]" if pub is not None else "")

    print(f"test {args.metric}, ours: mean over seeds (n); [Table {TABLE[args.metric]}]; * best epoch near the cap\n")
    for d in datasets:
        print(f"### {d}\n")
        print("| method | no k | k = 5 | k = 15 | k = 25 |\n|---|---|---|---|---|")
        for m in SINGLE:
            if (d, m, None) in ours or (d, m, None) in paper:
                print(f"| {m} | {text((d, m, None))} | | | |")
        for m in CODECS:
            print(f"| {m} | | " + " | ".join(text((d, m, k)) for k in (5, 15, 25)) + " |")
        print()

    for k in (5, 15, 25):
        print(f"### k = {k}: each method over `ls`, ratio of mean test {args.metric} over common seeds, paired t at 5%\n")
        methods = [m for m in SINGLE + CODECS if m != "ls"]
        print("| dataset | `ls` | " + " | ".join(methods) + " |\n|---|---|" + "---|" * len(methods))
        for d in datasets:
            base = ours.get((d, "ls", None))
            if not base:
                continue
            cells = []
            for m in methods:
                runs = ours.get((d, m, None if m in SINGLE else k))
                seeds = sorted(set(runs or {}) & set(base))
                if not seeds:
                    cells.append("–")
                    continue
                ratio = sum(runs[s] for s in seeds) / sum(base[s] for s in seeds)
                verdict = _verdict(runs, base, lower)
                cells.append(f"{ratio:.3f}" + ("" if verdict == "level" else f" {verdict}"))
            print(f"| {d} | {_mean(base):.4f} | " + " | ".join(cells) + " |")
        print()

    print("### The paper's orderings\n")
    print("Ours: paired t-test over seeds at 5% (level: not significant); the paper: its printed means.\n")
    print("| dataset | k | e2e-codec best of the paper's codecs: ours / paper | soft-bin vs hard-bin: ours / paper "
          "| ls-softmax vs ls: ours / paper |\n|---|---|---|---|---|")
    for d in datasets:
        for k in (5, 15, 25):
            mine = {m: ours[(d, m, k)] for m in PAPER_CODECS if (d, m, k) in ours}
            printed = {m: paper[(d, m, k)] for m in PAPER_CODECS if (d, m, k) in paper}
            if not mine and not printed:
                continue
            cells = [
                f"{_best_ours(mine, lower)} / {_best_printed(printed, lower)}",
                f"{_verdict(mine.get('soft-bin'), mine.get('hard-bin'), lower)} / "
                f"{_printed(printed.get('soft-bin'), printed.get('hard-bin'), lower)}",
                f"{_verdict(ours.get((d, 'ls-softmax', k)), ours.get((d, 'ls', None)), lower)} / "
                f"{_printed(paper.get((d, 'ls-softmax', k)), paper.get((d, 'ls', None)), lower)}",
            ]
            print(f"| {d} | {k} | " + " | ".join(cells) + " |")


def _best_ours(runs: dict[str, dict[int, float]], lower: bool) -> str:
    """``yes`` when e2e-codec has the best mean; else the best method and how e2e-codec compares."""
    if "e2e-codec" not in runs or len(runs) < 2:
        return "–"
    winner = (min if lower else max)(runs, key=lambda m: _mean(runs[m]))
    if winner == "e2e-codec":
        return "yes"
    return f"no, {winner} (e2e {_verdict(runs['e2e-codec'], runs[winner], lower)})"


def _best_printed(values: dict[str, float], lower: bool) -> str:
    if "e2e-codec" not in values or len(values) < 2:
        return "–"
    best = (min if lower else max)(values.values())
    winners = [m for m, v in values.items() if v == best]
    if winners == ["e2e-codec"]:
        return "yes"
    return "tie" if "e2e-codec" in winners else f"no, {', '.join(winners)}"


def _verdict(a: dict[int, float] | None, b: dict[int, float] | None, lower: bool) -> str:
    """``a`` against ``b`` (seed -> metric): better, worse or level at 5%, paired over common seeds."""
    if not a or not b:
        return "–"
    verdict, _ = paired_verdict(a, b, lower)
    return "1 seed" if verdict == "few" else verdict


def _printed(a: float | None, b: float | None, lower: bool) -> str:
    if a is None or b is None:
        return "–"
    return "level" if a == b else ("better" if (a < b) == lower else "worse")


if __name__ == "__main__":
    main()
