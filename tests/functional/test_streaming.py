"""Streaming reductions over block-wise score matrices, against their dense definitions."""

import pytest
import torch

from beyondmse.functional.streaming import (streaming_k_smallest, streaming_row_min_max, streaming_softmax_average,
                                             streaming_topk)


def blocks_of(scores):
    return lambda start, stop: scores[:, start:stop]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_average_matches_the_dense_softmax(chunk, dtype):
    # masked entries (finfo.min) get exactly no weight; entries far below a row's best (whose
    # weight underflows, subnormal or 0) change nothing; whole masked chunks are fine
    g = torch.Generator().manual_seed(0)
    L = torch.randn(5, 300, generator=g, dtype=dtype) * 3
    L[:, 50:120] = torch.finfo(dtype).min
    L[1, 200:] = L[1].max() - (100.0 if dtype == torch.float32 else 720.0)  # exp below finfo.tiny
    L[2, :] = torch.finfo(dtype).min
    L[2, 7] = 0.5  # one kept entry
    values = torch.randn(300, 2, generator=g, dtype=dtype)
    values[60] = 1e300 if dtype == torch.float64 else 1e30  # masked everywhere: any weight there shows
    out = streaming_softmax_average(blocks_of(L), values, chunk)
    ref = (torch.softmax(L.double(), 1) @ values.double()).to(dtype)
    torch.testing.assert_close(out, ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)
    torch.testing.assert_close(out[2], values[7], rtol=0, atol=0)  # masked entries get weight exactly 0


@pytest.mark.parametrize("chunk, rows", [(1, None), (13, None), (13, 5), (500, None)])
def test_topk_and_min_max_match_dense(chunk, rows):
    g = torch.Generator().manual_seed(1)
    S = torch.randn(5, 300, generator=g)
    v, i = streaming_topk(blocks_of(S), 300, 40, chunk, rows=rows)
    ref_v, _ = S.topk(40, dim=1)
    torch.testing.assert_close(v, ref_v)
    torch.testing.assert_close(S.gather(1, i), ref_v)  # the indices point at those values
    assert all(len(set(row.tolist())) == 40 for row in i)  # 40 distinct columns per row
    for k in (1, 40, 300):  # the k smallest values, ascending: numpy's selection (CPU) and torch's
        ref_low = S.sort(1).values[:, :k]
        torch.testing.assert_close(streaming_k_smallest(blocks_of(S), 300, k, chunk, rows=rows), ref_low, rtol=0, atol=0)
        grad_path = streaming_k_smallest(blocks_of(S.clone().requires_grad_()), 300, k, chunk, rows=rows)
        torch.testing.assert_close(grad_path.detach(), ref_low, rtol=0, atol=0)
    lo, hi = streaming_row_min_max(blocks_of(S), 300, chunk)
    torch.testing.assert_close(lo, S.min(1).values)
    torch.testing.assert_close(hi, S.max(1).values)
