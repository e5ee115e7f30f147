"""The one timing helper every ``bench_*.py`` script uses.

Rules it enforces, so that no script has to remember them: untimed warm-up calls first; CUDA
synchronised before the clock starts and before it stops; several repeats, reported as the
median and the interquartile range (IQR); candidates timed *interleaved* (one repeat of each
in turn), so a ratio to the baseline compares timings taken under the same machine load --
absolute times on a shared machine drift, ratios measured in the same run do not.

    from _timing import bench_args, compare, print_table

    args = bench_args(__doc__).parse_args()          # --repeats --warmup --threads --device
    res = compare({"ls": step_ls, "rot": step_rot}, baseline="ls", repeats=args.repeats,
                  warmup=args.warmup, device=args.device)
    print_table(["method", "median ms", "IQR ms", "ratio"], [r.row() for r in res.values()])
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


def sync(device: str | torch.device | None) -> None:
    """Wait for queued CUDA work, so the clock measures the work and not its launch."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], number: int = 1, device=None) -> float:
    """Seconds per call of ``fn``, averaged over ``number`` back-to-back calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - start) / number


@dataclass
class Timing:
    """Seconds per call over the repeats, and the per-repeat ratio to the baseline."""

    name: str
    seconds: np.ndarray
    ratio: np.ndarray | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def iqr(self) -> float:
        q1, q3 = np.percentile(self.seconds, [25, 75])
        return float(q3 - q1)

    @property
    def ratio_median(self) -> float:
        return float(np.median(self.ratio)) if self.ratio is not None else float("nan")

    @property
    def ratio_iqr(self) -> tuple[float, float]:
        if self.ratio is None:
            return float("nan"), float("nan")
        q1, q3 = np.percentile(self.ratio, [25, 75])
        return float(q1), float(q3)

    def row(self, scale: float = 1e3) -> list[str]:
        """``[name, median, IQR, ratio [q1, q3]]`` with times in ms (``scale=1e3``)."""
        q1, q3 = self.ratio_iqr
        return [self.name, f"{scale * self.median:.3f}", f"{scale * self.iqr:.3f}",
                f"{self.ratio_median:.2f} [{q1:.2f}, {q3:.2f}]"]


def compare(candidates: Mapping[str, Callable[[], object]], baseline: str, *, repeats: int = 15,
            warmup: int = 3, number: int = 1, device=None) -> dict[str, Timing]:
    """Time every candidate ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    Each repeat times ``number`` calls of every candidate in turn; the ratio of a repeat is the
    candidate's time over the baseline's time in that same repeat.
    """
    if baseline not in candidates:
        raise ValueError(f"the baseline {baseline!r} is not among the candidates {list(candidates)}")
    if repeats < 1 or warmup < 0 or number < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, number >= 1; got {repeats}, {warmup}, {number}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(time_once(fn, number, device))
    base = np.asarray(times[baseline])
    return {name: Timing(name, np.asarray(t), np.asarray(t) / base) for name, t in times.items()}


def bench_args(doc: str | None, repeats: int = 15, warmup: int = 3) -> argparse.ArgumentParser:
    """An argument parser with the flags every timing script shares."""
    p = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0])
    p.add_argument("--repeats", type=int, default=repeats, help="timed repeats per candidate")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed calls per candidate first")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def setup(args: argparse.Namespace) -> str:
    """Apply ``--threads``; return a one-line description of where the timings come from."""
    torch.set_num_threads(args.threads)
    where = (torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda"
             else f"cpu, {args.threads} thread(s)")
    return f"torch {torch.__version__}, {where}, {args.warmup} warm-up + {args.repeats} timed repeats"


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |", flush=True)


def train_step(model, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor,
               clip_norm: float | None = None) -> None:
    """One optimiser step on ``model.training_loss(X, y)`` (what the step benchmarks time)."""
    out = model.training_loss(X, y)
    opt.zero_grad(set_to_none=True)
    out.total.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()


def rss_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (current / peak resident memory) of this process, in kB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
