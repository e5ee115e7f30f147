"""Self entropic OT solve time and final marginal error: ours against POT's ``ot.sinkhorn``.

Costs are ROT-Reg's: Euclidean distances of n points divided by their mean off-diagonal entry,
so ``gamma`` is relative to the mean distance; the points are a 3-D Gaussian blob (a feature
cost) or, with ``--cost target``, 1-D uniform values (the target cost of scalar targets). POT gets the released
code's forbidden diagonal (+999). Candidates, timed interleaved in one run (ratios to POT's
plain solver are comparable even on a loaded machine): ``ours`` (``self_entropic_ot``,
tol 1e-6 on the L1 marginal error), ``pot`` (``ot.sinkhorn``, its defaults: 1,000 iterations,
stopThr 1e-9) and ``pot-log`` (``method="sinkhorn_log"``, same defaults; skipped above
``--log-max-n`` because it needs seconds to minutes per call there). The error column is
``||T 1 - p||_1 + ||T^T 1 - p||_1`` of the returned plan (NaN when the plan is NaN).

    OMP_NUM_THREADS=1 python benchmarks/bench_sinkhorn.py [--sizes 256,1024] [--gammas 1,0.1,0.01,0.001]
        [--cost blob|target]
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from _timing import bench_args, compare, print_table, setup

from beyondmse.functional import self_entropic_ot


def cost_matrix(n: int, seed: int = 0, kind: str = "blob") -> torch.Tensor:
    """``blob``: a 3-D Gaussian point cloud (a feature cost); ``target``: 1-D uniform values (ROT's
    target cost on scalar targets, whose chain-like plan plain Sinkhorn balances slowly)."""
    dim = 3 if kind == "blob" else 1
    x = (torch.randn if kind == "blob" else torch.rand)(n, dim, generator=torch.Generator().manual_seed(seed),
                                                        dtype=torch.float64)
    c = torch.cdist(x, x)
    return c / (c.sum() / (n * (n - 1)))


def marginal_error(t: np.ndarray) -> float:
    p = 1.0 / len(t)
    return float(np.abs(t.sum(0) - p).sum() + np.abs(t.sum(1) - p).sum())


def main() -> None:
    p = bench_args(__doc__, repeats=3, warmup=1)
    p.add_argument("--sizes", default="256,1024")
    p.add_argument("--gammas", default="1,0.1,0.01,0.001")
    p.add_argument("--log-max-n", type=int, default=256, help="largest n given to POT's log solver")
    p.add_argument("--cost", choices=["blob", "target"], default="blob",
                   help="blob: a 3-D point cloud; target: 1-D uniform targets (ROT's target plan)")
    args = p.parse_args()
    import ot

    print(setup(args) + f"; POT {ot.__version__}; cost: {args.cost}")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        c = cost_matrix(n, kind=args.cost)
        big = c.clone().fill_diagonal_(999.0).numpy()
        w = np.full(n, 1.0 / n)
        for gamma in (float(g) for g in args.gammas.split(",")):
            solvers = {
                "pot": lambda: ot.sinkhorn(w, w, big, gamma),
                "ours": lambda: self_entropic_ot(c, gamma, tol=1e-6).numpy(),
            }
            if n <= args.log_max_n:
                solvers["pot-log"] = lambda: ot.sinkhorn(w, w, big, gamma, method="sinkhorn_log")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # POT's "did not converge" and overflow warnings
                res = compare(solvers, "pot", repeats=args.repeats, warmup=args.warmup)
                errors = {name: marginal_error(fn()) for name, fn in solvers.items()}
            for name, timing in res.items():
                rows.append([n, gamma, name, f"{timing.median:.4f}", f"{timing.ratio_median:.2f}",
                             f"{errors[name]:.1e}"])
    print_table(["n", "gamma", "solver", "median s", "time / pot", "marginal L1 error"], rows)


if __name__ == "__main__":
    main()
