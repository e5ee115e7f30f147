"""Row normalizers that neighbor heads take as ``normalizer=``: logits -> weights on the simplex.

A normalizer maps a logit matrix (Q, n) to neighbor weights (Q, n) whose rows sum to one, and
computes the weighted average of neighbor values over a neighbor set streamed in blocks (the
memory bank at inference). Masked neighbors carry the logit ``finfo(dtype).min`` (never
``-inf``, which would make the running-max arithmetic ``-inf - (-inf)``).

Like :mod:`beyondmse.similarity`, these are small ``nn.Module`` strategy objects (the style of
entmax's ``Sparsemax`` module and pytorch-metric-learning's swappable ``distance=``), so a head
never switches on a string inside ``forward``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .configurable import Configurable
from .functional.streaming import ScoreFn, streaming_softmax_average, streaming_topk

__all__ = ["Normalizer", "Softmax", "Sparsemax", "make_normalizer", "NORMALIZERS"]


class Normalizer(Configurable, nn.Module):
    """Base class: ``forward(logits (Q, n)) -> weights (Q, n)``, rows on the simplex."""

    def forward(self, logits: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def average(self, logits: ScoreFn, values: Tensor, chunk: int) -> Tensor:
        """``forward(L) @ values`` for a (Q, n) logit matrix ``L`` given block-wise.

        Parameters
        ----------
        logits : callable ``(start, stop) -> Tensor (Q, stop - start)``
        values : Tensor, shape (n, m)
        chunk : int
            Block size over the n neighbors.

        Returns
        -------
        Tensor, shape (Q, m)
        """
        raise NotImplementedError  # pragma: no cover - abstract


class Softmax(Normalizer):
    r"""The softmax :math:`p_{ij} = e^{L_{ij}} / \sum_k e^{L_{ik}}` (NCA, Goldberger et al. 2004).

    :meth:`average` is exact at any neighbor-set size: an online softmax whose memory does not
    grow with the number of neighbors.
    """

    def forward(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def average(self, logits: ScoreFn, values: Tensor, chunk: int) -> Tensor:
        return streaming_softmax_average(logits, values, chunk)


class Sparsemax(Normalizer):
    r"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of a logit row onto the
    simplex, which gives exact zeros to every logit more than a data-dependent threshold below
    the row's largest ones. Computed by the ``entmax`` package.

    Parameters
    ----------
    candidates : int, default 2048
        :meth:`average` keeps this many largest logits per query (sparsemax's support lies among
        the largest logits, so this is exact while the support is smaller); a ``RuntimeWarning``
        says when the support reaches it.

    References
    ----------
    1. A. Martins, R. Astudillo, "From Softmax to Sparsemax: A Sparse Model of Attention and
       Multi-Label Classification", ICML 2016. https://arxiv.org/abs/1602.02068
    """

    def __init__(self, candidates: int = 2048):
        super().__init__()
        if not (isinstance(candidates, int) and candidates >= 1):
            raise ValueError(f"candidates must be an int >= 1, got {candidates!r}")
        self.candidates = candidates

    def extra_repr(self) -> str:
        return f"candidates={self.candidates}"

    def forward(self, logits: Tensor) -> Tensor:
        from entmax import sparsemax

        # masked logits (finfo.min) would enter sparsemax's cumulative sums as huge numbers;
        # anything 2 below the row max is already outside the support, so use that instead
        neg = torch.finfo(logits.dtype).min
        row_max = logits.max(-1, keepdim=True).values.detach()
        return sparsemax(torch.where(logits > neg, logits, row_max - 2.0), dim=-1)

    def average(self, logits: ScoreFn, values: Tensor, chunk: int) -> Tensor:
        n = values.shape[0]
        k = min(self.candidates, n)
        cand, idx = streaming_topk(logits, n, k, chunk)
        p = self(cand)
        if k < n and bool((p[:, -1] > 0).any()):
            warnings.warn(f"sparsemax support reached candidates={k}; predictions may be truncated "
                          "(raise Sparsemax(candidates=...))", RuntimeWarning, stacklevel=3)
        return torch.einsum("qk,qkm->qm", p, values[idx])


NORMALIZERS = {"softmax": Softmax, "sparsemax": Sparsemax}


def make_normalizer(name: str, **kwargs) -> Normalizer:
    """Build a normalizer from its registry name (``"softmax"``, ``"sparsemax"``)."""
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; expected one of {sorted(NORMALIZERS)}")
    return NORMALIZERS[name](**kwargs)
