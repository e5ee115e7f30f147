"""Import time: ``import beyondmse`` vs ``import torch``, each in a fresh Python process.

Target (issue 11): at most 1.3x ``import torch``. Each timed call starts a new interpreter, so
the times include Python's own start-up (the same for both); the two are timed interleaved and
the ratio is taken per repeat. Also prints which heavy optional packages the import pulled in.

    python benchmarks/bench_import.py --repeats 9
"""

from __future__ import annotations

import os
import subprocess
import sys

from _timing import bench_args, compare, print_table, setup

HEAVY = ("sklearn", "pandas", "scipy", "matplotlib")


def _run(code: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout


def main() -> None:
    args = bench_args(__doc__, repeats=9, warmup=1).parse_args()
    print(setup(args).replace(f"torch {__import__('torch').__version__}, ", "fresh processes, "))
    res = compare({"import torch": lambda: _run("import torch"),
                   "import beyondmse": lambda: _run("import beyondmse")},
                  baseline="import torch", repeats=args.repeats, warmup=args.warmup)
    print_table(["command", "median ms", "IQR ms", "ratio to import torch [IQR]"], [r.row() for r in res.values()])
    loaded = _run(f"import sys, beyondmse; print(*[m for m in {HEAVY!r} if m in sys.modules])").split()
    print(f"\nheavy packages loaded by `import beyondmse`: {loaded or 'none'}")
    ratio = res["import beyondmse"].ratio_median
    print(f"ratio {ratio:.2f} ({'within' if ratio <= 1.3 else 'ABOVE'} the 1.3x target)")


if __name__ == "__main__":
    main()
