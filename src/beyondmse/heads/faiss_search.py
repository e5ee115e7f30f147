"""Exact memory-bank search on faiss flat indexes, for the neighbor heads' inference.

The dense inference path of :mod:`beyondmse.heads.neighbors` scores every query against every
stored point, block by block. For distance similarities (``"l2"``, ``"l2sq"``) the heads' weights
are non-zero only on sets that a flat (exhaustive, exact) faiss index finds without ever holding
a queries x memory matrix:

* **NCA + SoftStep** (Algorithm 2 of Susman et al. 2025): the weight of point j is 0 unless its
  min-max normalised similarity exceeds :math:`l_i`, i.e. unless
  :math:`s_{ij} > lo_i + l_i (hi_i - lo_i)` -- a ball around the query. Its radius needs
  ``top`` (the nearest point: a top-1 search), ``lo`` (the farthest points: a top-K search by
  inner product on augmented vectors, :math:`[q, 1] \\cdot [-2m, \\|m\\|^2] = \\|q-m\\|^2 - \\|q\\|^2`)
  and then a range search.
* **DiffKNN** (Algorithm 1): the weights live on the K nearest points (a top-K search).
* **Plain softmax NCA** has no exact cut-off: the top-K points are kept and the dropped mass is
  bounded by :math:`(M - K) e^{s_{iK}} / \\sum_{j \\le K} e^{s_{ij}}` (every dropped point is no
  more similar than the K-th); the bound is reported, not hidden.

faiss computes distances in float32, so every candidate set is taken with a margin and all
weights are then recomputed in torch from exact similarities: the predictions are the dense
path's whenever the candidates hold every point of non-zero weight (they do by construction,
up to float32 ties at the margin).

Why faiss and not more torch: its exhaustive kernels fuse the distance GEMM with a heap or a
range filter, so a top-K or a ball over a million points costs one GEMM and no (Q, M)
temporaries; torch has no fused top-k-over-GEMM or range search. Optional extra:
``pip install 'beyondmse[faiss]'`` (``faiss-cpu``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["MemoryIndex", "faiss_available", "FAISS_MISSING"]

FAISS_MISSING = "search='faiss' needs the faiss package: pip install 'beyondmse[faiss]' (faiss-cpu)"

#: relative margin on squared radii (float32 distances carry ~1e-6 relative error)
RADIUS_MARGIN = 1e-3


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _f32(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


class MemoryIndex:
    """Flat faiss indexes over a memory bank ``(M, d)``: nearest, farthest and within-radius.

    Squared Euclidean distances are returned as float32 (faiss's own); callers recompute exact
    similarities on the returned indices. Searches use ``torch.get_num_threads()`` threads.
    """

    def __init__(self, memory: Tensor):
        import faiss

        self._faiss = faiss
        self.size, self.dim = memory.shape
        # distances do not change under a shift; centring keeps float32's |q|^2 + |m|^2 - 2 q.m
        # from cancelling catastrophically on data far from the origin
        self._center = memory.detach().to(torch.float64).mean(0)
        self._l2 = faiss.IndexFlatL2(self.dim)
        # farthest point search as a max inner product on augmented vectors [-2m, |m|^2]
        self._far = faiss.IndexFlatIP(self.dim + 1)
        for start in range(0, self.size, 1 << 16):  # in blocks: no float64 copy of the whole bank
            base = self._shifted(memory[start:start + (1 << 16)])
            self._l2.add(base)
            self._far.add(np.concatenate([-2.0 * base, (base.astype(np.float64) ** 2).sum(1, keepdims=True)
                                          .astype(np.float32)], axis=1))

    def _shifted(self, x: Tensor) -> np.ndarray:
        return _f32(x.detach().to(torch.float64) - self._center.to(x.device))

    def _threads(self) -> None:
        self._faiss.omp_set_num_threads(max(1, torch.get_num_threads()))

    def nearest(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest stored points: squared distances and indices, each (Q, k), nearest first."""
        self._threads()
        d2, idx = self._l2.search(self._shifted(q), min(k, self.size))
        return torch.from_numpy(d2), torch.from_numpy(idx)

    def farthest(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` farthest stored points: squared distances and indices, each (Q, k), farthest first."""
        self._threads()
        qa = self._shifted(q)
        ip, idx = self._far.search(np.concatenate([qa, np.ones((len(qa), 1), np.float32)], axis=1),
                                   min(k, self.size))
        d2 = ip + (qa.astype(np.float64) ** 2).sum(1, keepdims=True).astype(np.float32)
        return torch.from_numpy(d2), torch.from_numpy(idx)

    def within(self, q: Tensor, radius_sq: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored point with squared distance below ``radius_sq``: faiss's ``(lims, d2, idx)``
        (query i's hits are ``idx[lims[i]:lims[i+1]]``)."""
        self._threads()
        lims, d2, idx = self._l2.range_search(self._shifted(q), float(radius_sq))
        return lims.astype(np.int64), d2, idx


def padded_candidates(lims: np.ndarray, idx: np.ndarray, keep: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """A range search's ragged hits as a padded ``(Q, K)`` index matrix and its validity mask."""
    counts = np.diff(lims)
    rows = np.repeat(np.arange(len(counts)), counts)
    if keep is not None:  # drop hits outside each query's own radius (the search used the largest)
        rows, idx = rows[keep], idx[keep]
        counts = np.bincount(rows, minlength=len(counts))
    width = max(1, int(counts.max()) if len(counts) else 1)
    cols = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
    out = np.zeros((len(counts), width), dtype=np.int64)
    mask = np.zeros((len(counts), width), dtype=bool)
    out[rows, cols] = idx
    mask[rows, cols] = True
    return torch.from_numpy(out), torch.from_numpy(mask)
