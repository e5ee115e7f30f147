"""Neighbor-head inference over a memory bank: query blocks of whole memory rows
(``BLOCK_ELEMENTS``) against the streamed layout (memory chunks of ``chunk_size`` for every
``query_chunk_size`` queries), as ratios measured in one run.

The heads are set up as after training with batch 256 (neighbor set 255), so NCA + SoftStep
takes the expected minimum of a 255-point subset (a top-k over the bank) and DiffKNN keeps
``k M / 255`` points; "untrained" NCA + SoftStep (the whole bank as neighbor set, as in
bench_speed_targets.py's bank rows) has no top-k. The streamed layout is forced by a block
size of 1 entry; whole rows are used when at least 64 queries fit a block, so a 200,000-point
bank streams at 2^22 and holds whole rows at 2^24.

    OMP_NUM_THREADS=1 python benchmarks/bench_inference_blocks.py [--banks 32000,200000]
        [--queries 1024] [--blocks 22,24]
"""

from __future__ import annotations

import torch
from _timing import bench_args, compare, print_table, setup

import beyondmse.functional.streaming as streaming
import beyondmse.heads.neighbors as neighbors
from beyondmse.recipes import build_model

CASES = (("nca-softstep-g", 255), ("nca-softstep-g", None), ("dknn-softstep-g", 255))


def make_predict(method: str, neighbor_set: int | None, bank: int, queries: int, block: int):
    torch.manual_seed(0)
    model, _ = build_model(method, 64, 1, {"trunk": "identity"})
    head = model.head.eval()
    gen = torch.Generator().manual_seed(0)
    head.fit_memory(torch.randn(bank, 64, generator=gen), torch.rand(bank, 1, generator=gen))
    if neighbor_set is not None:
        head._note_neighbor_set(neighbor_set)
    zq = torch.randn(queries, 64, generator=gen)

    def predict():
        neighbors.BLOCK_ELEMENTS = streaming.BLOCK_ELEMENTS = block
        with torch.no_grad():
            head(zq)

    return predict


def main() -> None:
    p = bench_args(__doc__, repeats=3, warmup=1)
    p.add_argument("--banks", default="32000,200000")
    p.add_argument("--queries", type=int, default=1024)
    p.add_argument("--blocks", default="22,24", help="log2 of BLOCK_ELEMENTS values to time")
    args = p.parse_args()
    print(setup(args) + f"; {args.queries} queries, d = 64")
    default = streaming.BLOCK_ELEMENTS
    rows = []
    for bank in (int(b) for b in args.banks.split(",")):
        for method, neighbor_set in CASES:
            label = f"{method} ({'trained, 255' if neighbor_set else 'untrained'}), bank {bank}"
            steps = {"streamed": make_predict(method, neighbor_set, bank, args.queries, 1)}
            for b in args.blocks.split(","):
                steps[f"2^{b}"] = make_predict(method, neighbor_set, bank, args.queries, 2 ** int(b))
            res = compare(steps, "streamed", repeats=args.repeats, warmup=args.warmup)
            rows += [[label, name, f"{r.median:.2f}", f"{r.ratio_median:.2f}"] for name, r in res.items()]
    neighbors.BLOCK_ELEMENTS = streaming.BLOCK_ELEMENTS = default
    print()
    print_table(["case", "layout", "median s", "ratio to streamed"], rows)
    print(f"\n(the library's BLOCK_ELEMENTS is 2^{default.bit_length() - 1})")


if __name__ == "__main__":
    main()
