"""Soft ranks' isotonic regression on a GPU in one Triton kernel, without host synchronisation.

The torch path of :mod:`beyondmse.functional.rank` pools blocks in parallel rounds whose number
depends on the data, so on a GPU every round waits for the device to say whether to go on (18
host synchronisations per call on 2048 x 2048, measured on an H200). Here each row runs the
classic sequential pool-adjacent-violators with a stack of blocks, one Triton program per row:
the rows are independent, the work per row is O(n), and nothing returns to the host.

Used by :func:`beyondmse.functional.rank.soft_rank` for CUDA tensors when Triton is importable
(it ships with PyTorch's CUDA wheels); the torch path stays the reference and the only path on
the CPU. Written by hand: no maintained library offers a device-side batched isotonic
regression that returns the block structure the closed-form backward needs (torchsort builds a
CUDA extension at install time).
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch path is used
    triton = None

__all__ = ["available", "soft_rank_pav"]


def available(x: Tensor) -> bool:
    """Whether the kernel can run on ``x``: a CUDA tensor, with Triton installed."""
    return triton is not None and x.is_cuda


if triton is not None:

    @triton.jit
    def _soft_rank_pav_kernel(s_ptr, eps_ptr, out_ptr, block_ptr, y_ptr, sum_ptr, count_ptr, start_ptr, n,
                              BLOCK: tl.constexpr):
        """One row: ``s`` (n,) sorted descending -> the non-increasing isotonic fit ``v`` of
        ``y = s / eps - w`` (``w_i = n - i``), written as ``out = w + (y - v)`` (the projection
        ``s / eps - v``; exactly ``w`` on a singleton block), and each position's block index.

        Only pass 1, PAV itself, is sequential; the others run on BLOCK positions at a time.
        0. ``y`` into ``y_ptr``; the block-start marks (in ``block_ptr``) cleared.
        1. A stack of blocks (sum, count, start), its top also in registers: each new position
           is pushed as a block of one, after merging into it every block on top of the stack
           whose mean is below its own, so memory is read only on merges that reach below the
           top. The values of ``y`` are loaded 8 steps ahead, so their latency overlaps the steps.
        2. A mark at each block's start; then block index = running count of marks, and each
           position's value the mean of its block.

        Loop-carried values start as tensors of their final type (a Python literal would enter
        the loops as a constant of another type); ``eps`` comes as a float64 tensor, since a
        Python float argument would arrive in float32.
        """
        base = tl.program_id(0).to(tl.int64) * n
        eps = tl.load(eps_ptr)
        lanes = tl.arange(0, BLOCK)
        for j in range(0, n, BLOCK):
            offs = j + lanes
            inside = offs < n
            s = tl.load(s_ptr + base + offs, mask=inside, other=0.0).to(tl.float64)
            tl.store(y_ptr + base + offs, s / eps - (n - offs), mask=inside)
            tl.store(block_ptr + base + offs, tl.zeros([BLOCK], tl.int32), mask=inside)
        tl.debug_barrier()

        top = n * 0 - 1  # stack index of the last block (int32)
        top_total = eps * 0.0  # that block's sum and count (float64)
        top_count = eps * 0.0
        # the next 8 values of y, in flight while the steps run (a rolling window of registers)
        y0 = tl.load(y_ptr + base)
        y1 = tl.load(y_ptr + base + tl.minimum(1, n - 1))
        y2 = tl.load(y_ptr + base + tl.minimum(2, n - 1))
        y3 = tl.load(y_ptr + base + tl.minimum(3, n - 1))
        y4 = tl.load(y_ptr + base + tl.minimum(4, n - 1))
        y5 = tl.load(y_ptr + base + tl.minimum(5, n - 1))
        y6 = tl.load(y_ptr + base + tl.minimum(6, n - 1))
        y7 = tl.load(y_ptr + base + tl.minimum(7, n - 1))
        for i in range(0, n):
            total = y0
            y0, y1, y2, y3, y4, y5, y6 = y1, y2, y3, y4, y5, y6, y7
            y7 = tl.load(y_ptr + base + tl.minimum(i + 8, n - 1))
            count = top_count * 0.0 + 1.0
            go = (top >= 0) & (top_total * count < total * top_count)  # mean(top) < mean(new): pool
            while go:
                total += top_total
                count += top_count
                top -= 1
                go = top >= 0
                if go:
                    top_total = tl.load(sum_ptr + base + top)
                    top_count = tl.load(count_ptr + base + top)
                    go = top_total * count < total * top_count
            top += 1
            tl.store(sum_ptr + base + top, total)
            tl.store(count_ptr + base + top, count)
            tl.store(start_ptr + base + top, i + 1 - count.to(tl.int32))
            top_total = total
            top_count = count
        tl.debug_barrier()

        n_blocks = top + 1
        for b in range(0, n_blocks, BLOCK):
            ids = b + lanes
            first = tl.load(start_ptr + base + ids, mask=ids < n_blocks, other=0)
            tl.store(block_ptr + base + first, tl.full([BLOCK], 1, tl.int32), mask=ids < n_blocks)
        tl.debug_barrier()
        seen = n * 0  # blocks begun before the current chunk
        for j in range(0, n, BLOCK):
            offs = j + lanes
            inside = offs < n
            marks = tl.load(block_ptr + base + offs, mask=inside, other=0)
            block = seen + tl.cumsum(marks, 0) - 1
            seen += tl.sum(marks, 0)
            mean = (tl.load(sum_ptr + base + block, mask=inside, other=0.0)
                    / tl.load(count_ptr + base + block, mask=inside, other=1.0))
            y = tl.load(y_ptr + base + offs, mask=inside, other=0.0)
            out = (n - offs).to(tl.float64) + (y - mean)
            tl.store(out_ptr + base + offs, out.to(out_ptr.dtype.element_ty), mask=inside)
            tl.store(block_ptr + base + offs, block, mask=inside)


def soft_rank_pav(s: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Soft ranks of rows already sorted descending, and their block structure.

    Parameters
    ----------
    s : Tensor, shape (R, n), CUDA, floating point
        Each row sorted in descending order.
    eps : float
        The regularisation strength (> 0).

    Returns
    -------
    ranks : Tensor, shape (R, n), dtype of ``s``
        ``s / eps - v`` with ``v`` the non-increasing isotonic fit of ``s / eps - (n, ..., 1)``
        (Blondel et al. 2020, Prop. 3), in the sorted order.
    block : Tensor, shape (R, n), int32
        The 0-based index of each position's block within its row (blocks left to right).
    """
    R, n = s.shape
    block = torch.zeros(R, n, dtype=torch.int32, device=s.device)
    if n == 1:  # one position, one block, rank 1 (the kernel assumes n > 1: Triton specialises n = 1)
        return torch.ones_like(s), block
    s = s.contiguous()
    out = torch.empty_like(s)
    scratch = torch.empty(3, R, n, dtype=torch.float64, device=s.device)  # y, block sums, counts
    starts = torch.empty(R, n, dtype=torch.int32, device=s.device)
    eps_t = torch.full((1,), float(eps), dtype=torch.float64, device=s.device)
    _soft_rank_pav_kernel[(R,)](s, eps_t, out, block, scratch[0], scratch[1], scratch[2], starts, n,
                                BLOCK=128, num_warps=1)
    return out, block
