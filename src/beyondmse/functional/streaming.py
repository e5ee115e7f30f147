"""Chunked (streaming) reductions over a score matrix given block by block.

The helpers stream over the neighbor set in blocks so that only (query chunk) x (neighbor chunk)
score blocks ever exist: peak memory does not grow with the number of stored neighbors. A score
matrix is passed as a callable ``scores(start, stop) -> Tensor (Q, stop - start)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["ScoreFn", "chunk_ranges", "streaming_row_min_max", "streaming_softmax_average", "streaming_topk",
           "streaming_k_smallest", "float_order_keys", "streaming_kth_largest"]

#: a score matrix (Q, n) given block-wise: ``scores(start, stop) -> Tensor (Q, stop - start)``
ScoreFn = Callable[[int, int], Tensor]

#: score-block size (entries) that a top-k may widen its neighbor chunks to, and that neighbor
#: heads fill with whole memory rows at inference (when at least 64 queries fit): merging a
#: running top k with a new block costs a top-k over both, so fewer, wider blocks are faster
#: (the whole row at once is fastest). 2^22 entries are 16 MB of float32; timed on a 32,000-
#: and a 200,000-point bank (benchmarks/bench_inference_blocks.py)
BLOCK_ELEMENTS = 2**22


def chunk_ranges(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(n)`` in blocks of ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield start, min(start + size, n)


def streaming_row_min_max(scores: ScoreFn, n: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Row-wise min and max of a (Q, n) score matrix given block-wise by ``scores(start, stop)``."""
    lo = hi = None
    for start, stop in chunk_ranges(n, chunk):
        s = scores(start, stop)
        cmin, cmax = s.amin(1), s.amax(1)  # amin/amax: no indices (max(1) costs 8x here)
        lo = cmin if lo is None else torch.minimum(lo, cmin)
        hi = cmax if hi is None else torch.maximum(hi, cmax)
    return lo, hi


def _flush_below_tiny(arg: Tensor) -> Tensor:
    """``arg`` (in place) with entries whose ``exp`` is below ``finfo.tiny`` set to ``-inf``:
    their weight becomes exactly 0 instead of a subnormal number (and the masked ``finfo.min``
    entries 0 as before). CPUs' ``exp`` takes a slow path for such arguments (5-13x the time
    of ordinary ones here), which dominated memory-bank inference."""
    # F.threshold_(x, th, v) sets x <= th to v in one vectorised pass (a comparison plus a
    # masked fill costs ~20x more); th is the float just below log(tiny) in arg's dtype, so
    # exactly the entries below log(tiny) are flushed
    floor = torch.tensor(math.log(torch.finfo(arg.dtype).tiny), dtype=arg.dtype)
    below = torch.nextafter(floor, torch.tensor(-math.inf, dtype=arg.dtype)).item()
    return torch.nn.functional.threshold_(arg, below, -math.inf)


def streaming_softmax_average(logits: ScoreFn, values: Tensor, chunk: int) -> Tensor:
    r"""``softmax(L) @ values`` for a (Q, n) logit matrix ``L`` given block-wise.

    Uses the online (running max) softmax: for each block the running numerator and denominator
    are rescaled by :math:`\exp(m_{old} - m_{new})`. Masked entries must be large negative
    finite numbers (``finfo.min``), not ``-inf``, so that ``m_old - m_new`` is never
    ``-inf - (-inf)``.

    Parameters
    ----------
    logits : callable ``(start, stop) -> Tensor (Q, stop - start)``
    values : Tensor, shape (n, m)
    chunk : int

    Returns
    -------
    Tensor, shape (Q, m)
    """
    n = values.shape[0]
    run_max = den = num = None
    for start, stop in chunk_ranges(n, chunk):
        L = logits(start, stop)
        cmax = L.detach().amax(1)  # a shift the softmax does not depend on
        new_max = cmax if run_max is None else torch.maximum(run_max, cmax)
        e = _flush_below_tiny(L - new_max[:, None]).exp_()
        if run_max is None:
            den, num = e.sum(1), e @ values[start:stop]
        else:
            scale = torch.exp(run_max - new_max)
            den = den * scale + e.sum(1)
            num = num * scale[:, None] + e @ values[start:stop]
        run_max = new_max
    return num / den[:, None]


def _numpy_selects(s: Tensor) -> bool:
    """Whether ``s`` can be selected from through numpy: a CPU float tensor outside autograd,
    not under torch.compile (to which numpy is opaque)."""
    return (s.device.type == "cpu" and s.dtype in (torch.float32, torch.float64) and not s.requires_grad
            and not torch.compiler.is_compiling())


def _topk(s: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``torch.topk(s, k, dim=1)`` of a 2-D ``s`` (values descending, column indices; which of
    several tied entries comes first may differ). CPU float tensors outside autograd go
    through numpy's ``argpartition`` and a sort of the k kept (vectorised with x86-simd-sort):
    1.5-2x faster than ``torch.topk`` for k from 2,000 to 30,000 of 43,152 columns here."""
    n = s.shape[1]
    if not _numpy_selects(s) or not 1 <= k < n:
        return s.topk(k, dim=1)
    a = s.numpy()
    pick = np.argpartition(a, n - k, axis=1)[:, n - k:]
    vals = np.take_along_axis(a, pick, axis=1)
    order = np.argsort(vals, axis=1)[:, ::-1]
    return (torch.from_numpy(np.take_along_axis(vals, order, axis=1)),
            torch.from_numpy(np.take_along_axis(pick, order, axis=1)))


def streaming_topk(scores: ScoreFn, n: int, k: int, chunk: int, rows: int | None = None) -> tuple[Tensor, Tensor]:
    """Largest ``k`` scores per row (values and column indices, descending) of a (Q, n) matrix
    given block-wise; memory O(Q k + max(Q chunk, BLOCK_ELEMENTS)).

    With ``rows`` (= Q) given, the blocks are widened to ``BLOCK_ELEMENTS / Q`` columns when
    that is more than ``chunk`` (each merge of the running top k with a block is a top-k over
    both, so fewer blocks are faster); ``Q <= BLOCK_ELEMENTS / n`` gives one block, no merge.
    """
    k = min(k, n)
    if rows:
        chunk = max(chunk, BLOCK_ELEMENTS // rows)
    best_v = best_i = None
    for start, stop in chunk_ranges(n, chunk):
        s = scores(start, stop)
        if best_v is None and stop == n:  # the whole row at once
            return _topk(s, k)
        idx = torch.arange(start, stop, device=s.device).expand_as(s)
        if best_v is not None:
            s, idx = torch.cat([best_v, s], 1), torch.cat([best_i, idx], 1)
        kk = min(k, s.shape[1])
        best_v, pos = _topk(s, kk)
        best_i = idx.gather(1, pos)
    return best_v, best_i


def _k_smallest(s: Tensor, k: int, ordered: bool) -> Tensor:
    """The ``k`` smallest values of each row of ``s`` (Q, n), ascending when ``ordered``.

    CPU float tensors outside autograd go through ``numpy.partition`` (and ``sort`` of the k
    kept): numpy vectorises both (x86-simd-sort), about 5x faster here than ``torch.topk``,
    which was the largest single cost of SoftStep inference over a memory bank. (The soft rank
    keeps torch.sort: it stays in torch on every device.)"""
    k = min(k, s.shape[1])
    if _numpy_selects(s):
        a = s.numpy()
        kept = np.partition(a, k - 1, axis=1)[:, :k] if k < a.shape[1] else a.copy()
        if ordered:
            kept.sort(axis=1)
        return torch.from_numpy(np.ascontiguousarray(kept))
    return s.topk(k, dim=1, largest=False, sorted=ordered).values


def streaming_k_smallest(scores: ScoreFn, n: int, k: int, chunk: int, rows: int | None = None) -> Tensor:
    """The ``k`` smallest scores per row, ascending, of a (Q, n) matrix given block-wise
    (values only, which lets a CPU use numpy's selection); blocks widened with ``rows`` as in
    :func:`streaming_topk`. Memory O(Q (2k + chunk)) beside the blocks."""
    if rows:
        chunk = max(chunk, BLOCK_ELEMENTS // rows)
    # blocks are gathered until the candidates number 2k, then cut back to k: each cut then
    # takes in at least k new columns, so selection costs O(n) per row even when k exceeds
    # the block width (cutting at every block would cost O(n k / chunk))
    parts, width = [], 0
    for start, stop in chunk_ranges(n, chunk):
        parts.append(scores(start, stop))
        width += parts[-1].shape[1]
        if width >= 2 * k or stop == n:
            kept = _k_smallest(torch.cat(parts, 1) if len(parts) > 1 else parts[0], k, ordered=stop == n)
            parts, width = [kept], kept.shape[1]
    return parts[0]


def float_order_keys(x: Tensor) -> Tensor:
    """Map float32 values to int64 keys in [0, 2^32) with the same order (for radix selection)."""
    x = x.to(torch.float32).contiguous() + 0.0  # turns -0.0 into +0.0
    bits = x.view(torch.int32)
    # negative floats are sign-magnitude: flipping their magnitude bits makes the int32 order
    # agree with the float order
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits.to(torch.int64) + 2**31


def streaming_kth_largest(scores: ScoreFn, n: int, k: Tensor, chunk: int) -> Tensor:
    """Order keys (see :func:`float_order_keys`) of the ``k``-th largest score per row (0-based).

    An exact radix select on the 32-bit keys: four passes over the blocks, each building a
    256-bin histogram of one byte among the entries that match the prefix found so far. Memory
    is O(Q (256 + chunk)), independent of ``n``. Entries whose key is ``>=`` the result are the
    top ``k + 1`` (more when tied).

    Parameters
    ----------
    scores : callable ``(start, stop) -> Tensor (Q, stop - start)``
        Must return the same values on every call (it is evaluated four times).
    n : int
    k : Tensor of int64, shape (Q,), with ``0 <= k < n``
    chunk : int
    """
    k = k.to(torch.int64)
    prefix = None
    remaining = k.clone()
    for shift in (24, 16, 8, 0):
        hist = None
        for start, stop in chunk_ranges(n, chunk):
            keys = float_order_keys(scores(start, stop))
            if hist is None:
                hist = torch.zeros(keys.shape[0], 256, dtype=torch.int64, device=keys.device)
                if prefix is None:
                    prefix = torch.zeros(keys.shape[0], dtype=torch.int64, device=keys.device)
            digit = (keys >> shift) & 255
            if shift == 24:
                w = torch.ones_like(digit)
            else:
                w = ((keys >> (shift + 8)) == (prefix >> (shift + 8))[:, None]).to(torch.int64)
            hist.scatter_add_(1, digit, w)
        desc = hist.flip(1).cumsum(1)  # desc[:, j]: entries whose byte is >= 255 - j
        j = (desc <= remaining[:, None]).sum(1).clamp_max(255)
        before = torch.where(j > 0, desc.gather(1, (j - 1).clamp_min(0)[:, None])[:, 0], torch.zeros_like(j))
        remaining = remaining - before
        prefix = prefix | ((255 - j) << shift)
    return prefix
