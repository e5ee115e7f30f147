"""Neighbor-based heads with SoftStep: NCA (Algorithm 2) and differentiable kNN (Algorithm 1).

A neighbor head predicts a weighted average of neighbor targets,
:math:`\\hat y_i = \\sum_j p_{ij} y_j`, with weights from a row normalizer (softmax by default) of
similarity logits. In training the neighbors of a sample are the rest of its mini-batch (self
masked); after training :meth:`fit_memory` stores the training embeddings and targets (a
*memory bank*), which is the neighbor set at inference, streamed in blocks.

**The same neighbor-set semantics in training and at inference.** A batch of N gives every
query ``n = N - 1`` neighbors; the memory bank gives it ``M`` (6,554 on cpu_act). Every quantity
that depends on the set size is carried over as what it means for a set of the training size
``n`` (recorded during training in the buffer ``fit_neighbors``):

* NCA + SoftStep min-max normalises each row's similarities (Algorithm 2). The row maximum is
  the query's self-similarity (or a closer neighbor), which does not depend on the set; the row
  minimum does (the farthest of 6,554 points is farther than the farthest of 31). At inference
  the minimum is the *expected minimum over a random n-subset of the memory*, an L-statistic of
  the memory's least similar points; with ``M = n`` it is the exact minimum, so inference on the
  batch's own neighbor set reproduces training (to rounding).
* Differentiable kNN keeps ``k = frac * n`` neighbors with a transition of ``q`` ranks; at
  inference both are scaled by ``M / n``, so the same fraction of the memory is kept and the
  transition keeps its relative width. Ranks at inference are hard ranks (the limit of soft
  ranks as the regularization goes to 0), so the training ranks are kept near that limit
  (``rank_strength = 0.1`` average gaps, see :class:`DiffKNN`): at the paper's strength of one
  gap, the soft ranks pool the dense middle of every row and training kept half the neighbors
  that inference keeps (cpu_act, 0.13 vs 0.25).

Deviations from the paper's pseudo-code, each on purpose: Algorithm 1's transition denominator
``(k - rank)^(1/t)`` is negative inside the transition (a sign slip); we use ``(rank - k)``.
DiffKNN's soft ranks are computed on similarities rescaled so that the average gap between
neighbors is 1 (``rank_strength`` is then scale-free; the paper ranks raw similarities with
torchsort's default strength 1, so its sharpness depends on the embedding's scale). Self is
taken out of the ranked row instead of pushed to ``-inf`` (the same ranks, as a +inf entry is
never pooled with the others).

References
----------
1. A. Susman, B. Lin, M. Suárez-Fariñas, J. T. Colonel, "SoftStep: Learning Sparse Similarity
   Powers Deep Neighbor-Based Regression", arXiv:2506.08139, 2025 (Eq. 1, Algorithms 1 and 2).
2. J. Goldberger, S. Roweis, G. Hinton, R. Salakhutdinov, "Neighbourhood Components Analysis",
   NeurIPS 2004.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..checks import check_head_inputs
from ..distributions import Mixture, TargetGrid
from ..functional.rank import soft_rank
from ..functional.softstep import _softstep_bounds, _step_logits, softstep, softstep_logits
from ..functional.streaming import (BLOCK_ELEMENTS, ScoreFn, chunk_ranges, streaming_k_smallest, streaming_row_min_max,
                                   streaming_topk)
from ..normalizers import Normalizer, Softmax
from ..similarity import NegL2, NegSquaredL2, Similarity
from .base import Head, LossOutput
from .faiss_search import FAISS_MISSING, RADIUS_MARGIN, MemoryIndex, faiss_available, padded_candidates
from .softstep_params import DEFAULT_INIT, KFraction, SoftStepParams, make_softstep_params

__all__ = ["NCA", "DiffKNN", "knn_step_weights", "knn_step_logits", "expected_subset_min"]


# --------------------------------------------------------------------------- shared pieces
#: memory-bank search at inference: "dense" (torch, every stored point, any similarity) or
#: "faiss" (exact candidate sets from flat faiss indexes; 'l2' / 'l2sq' similarities)
SEARCHES = ("dense", "faiss")


def _neg_big(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def _off_diagonal(a: Tensor) -> Tensor:
    """The entries ``j != i`` of a square ``a`` (n, n), row by row: (n, n - 1). A strided view
    and one copy (a boolean mask would cost a ``nonzero`` over n^2 entries); differentiable."""
    n = a.shape[0]
    return a.reshape(-1)[1:].reshape(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def _with_zero_diagonal(b: Tensor) -> Tensor:
    """The inverse of :func:`_off_diagonal`: (n, n - 1) -> (n, n) with zeros on the diagonal."""
    n = b.shape[0]
    padded = F.pad(b.reshape(n - 1, n), (0, 1)).reshape(-1)
    return F.pad(padded, (1, 0)).view(n, n)


def _range_floor(dtype: torch.dtype) -> float:
    # floor on the min-max range: avoids 0/0 for a row of identical similarities while keeping
    # the normalisation's gradient bounded
    return math.sqrt(torch.finfo(dtype).eps)


def _softstep_weights(sim: Tensor, lo: Tensor, hi: Tensor, top: Tensor, params, eps: float,
                      min_gap: float) -> Tensor:
    """Algorithm 2 on similarities ``sim`` (Q, n) given each row's min ``lo``, max ``hi`` (self
    included) and best neighbor ``top`` (self excluded), all (Q,).

    ``s = (sim - lo) / (hi - lo)``, ``l = min(l0, s_top) - eps`` (so the most similar neighbor is
    always above ``l``) and ``u = l + u0 (1 - l)`` (at least ``min_gap`` above ``l``).
    """
    l0, u0, t = params
    rng = (hi - lo).clamp_min(_range_floor(sim.dtype))[:, None]
    s = (sim - lo[:, None]) / rng
    s_top = (top - lo)[:, None] / rng
    l = torch.minimum(l0, s_top) - eps
    u = l + torch.clamp_min(u0 * (1.0 - l), min_gap)
    return softstep(s, l, u, t)


def knn_step_weights(ranks: Tensor, k: Tensor | float, n_neighbors: int, q: float | Tensor = 4.0,
                     t: float = 0.75) -> Tensor:
    r"""The flipped SoftStep over 0-based ranks (Algorithm 1's SOFTKSTEP, without the log).

    Weight 1 for ``rank <= k``, 0 for ``rank >= k + q``, and in between
    :math:`(k+q-r)^{1/t} / ((k+q-r)^{1/t} + (r-k)^{1/t})`, computed as
    ``softstep(-r, -(k+q), -k, t)``. (The paper's pseudo-code writes ``(k - r)`` in the
    denominator, negative inside the transition; ``(r - k)`` is the transition that stays real.)

    Parameters
    ----------
    ranks : Tensor, shape (Q, n)
    k : Tensor broadcastable to (Q, 1), or float
        Number of neighbors kept with full weight, ``0 <= k <= n_neighbors``.
    n_neighbors : int
        Size of the neighbor set (``N - 1`` in a batch of N).
    q : float or Tensor broadcastable to (Q, 1)
        Transition width in ranks, > 0.
    t : float
        Sharpness, > 0.
    """
    k, q = _checked_k_q(ranks, k, n_neighbors, q)
    return softstep(-ranks, -(k + q), -k, t)


def _checked_k_q(ranks: Tensor, k: Tensor | float, n_neighbors: int, q: float | Tensor) -> tuple[Tensor, Tensor]:
    """``k`` and ``q`` as tensors in the dtype of ``ranks``, after checking their ranges."""
    k = torch.as_tensor(k, dtype=ranks.dtype, device=ranks.device)
    q = torch.as_tensor(q, dtype=ranks.dtype, device=ranks.device)
    if bool((k > n_neighbors).any()):
        raise ValueError(f"k = {float(k.max()):.4g} is larger than the neighbor set ({n_neighbors} neighbors)")
    if bool((k < 0).any()):
        raise ValueError(f"k must be >= 0, got {float(k.min()):.4g}")
    if not bool((q > 0).all()):
        raise ValueError(f"q must be > 0, got {q}")
    return k, q


class _KnnStepLogits(torch.autograd.Function):
    """``sim + log w(ranks; k, q, t)`` (:func:`knn_step_weights`) in one node, ``finfo.min`` where
    ``w = 0``, with a closed-form backward instead of autograd through SoftStep, the log and a
    mask (each a full (Q, n) temporary).

    With ``a = k + q - r`` and ``b = r - k``, inside the transition (``a, b > 0``)
    ``log w = logsigmoid(x)``, ``x = (log a - log b) / t``, so ``d log w / dr = -(1 - w)(1/a + 1/b) / t``
    and ``d log w / dk = -d log w / dr``; ``log w = 0`` for ``r <= k`` and the logit is a
    constant for ``r >= k + q`` (no gradient). ``a b`` is floored at ``finfo.tiny`` in the saved
    factor, so an entry at the edge of the transition gives a finite (if large) factor that meets
    a softmax gradient of about ``w`` there.
    """

    @staticmethod
    def forward(ctx, sim, ranks, k, q, t):
        # a = k + q - r, b = r - k: SoftStep's elementwise core on ranks (a + b = q, so
        # 1/a + 1/b = q / (a b))
        logits, ab, _, one_minus_w, live = _step_logits((k + q) - ranks, ranks - k, t, sim)
        coef = one_minus_w.mul_(q / t).div_(ab)  # d log w / dk, 0 outside the transition
        ctx.save_for_backward(coef, live)
        ctx.k_shape = k.shape
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        coef, live = ctx.saved_tensors
        g_sim = grad * live if ctx.needs_input_grad[0] else None  # no gradient where w = 0
        g_k_full = grad * coef  # 0 wherever coef is
        g_ranks = -g_k_full if ctx.needs_input_grad[1] else None
        g_k = g_k_full.sum_to_size(ctx.k_shape) if ctx.needs_input_grad[2] else None
        return g_sim, g_ranks, g_k, None, None


def knn_step_logits(sim: Tensor, ranks: Tensor, k: Tensor | float, n_neighbors: int, q: float | Tensor = 4.0,
                    t: float = 0.75) -> Tensor:
    """``sim + log knn_step_weights(ranks, k, ...)`` where the weight is positive and
    ``finfo.min`` where it is 0: the logits DiffKNN's softmax takes (Algorithm 1), (Q, n).

    Same arguments and checks as :func:`knn_step_weights`; ``sim`` has the shape of ``ranks``.
    Where the weight underflows (deep in the transition) the logit stays finite instead of
    dropping to ``finfo.min``: the difference in the softmax is below ``finfo.tiny``.
    """
    k, q = _checked_k_q(ranks, k, n_neighbors, q)
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    return _KnnStepLogits.apply(sim, ranks, k, q, float(t))


def expected_subset_min(sorted_low: Tensor, total: int, subset: int) -> Tensor:
    r"""Expected minimum of a uniformly random ``subset``-element subset of ``total`` values.

    With the values sorted ascending, :math:`v_{(1)} \le \dots \le v_{(M)}`, the subset's minimum
    is :math:`v_{(j)}` with probability :math:`\binom{M-j}{n-1} / \binom{M}{n}`, so

    .. math:: E[\min] = \sum_j \binom{M-j}{n-1} \binom{M}{n}^{-1} v_{(j)} .

    Parameters
    ----------
    sorted_low : Tensor, shape (Q, K)
        The K smallest values of each row, ascending (K <= M; the sum is truncated there and
        renormalised, which is exact up to the omitted probability).
    total : int
        M, the number of values in each row.
    subset : int
        n, 1 <= n <= M.

    Returns
    -------
    Tensor, shape (Q,)
    """
    if not 1 <= subset <= total:
        raise ValueError(f"need 1 <= subset <= total, got subset={subset}, total={total}")
    K = sorted_low.shape[1]
    j = torch.arange(1, K + 1, dtype=torch.float64, device=sorted_low.device)
    a = total - j
    b = float(subset - 1)
    valid = a >= b
    a = a.clamp_min(b)
    # log C(M - j, n - 1) up to a constant (the weights are normalised below)
    logp = torch.lgamma(a + 1) - torch.lgamma(a - b + 1)
    logp = torch.where(valid, logp, torch.full_like(logp, -math.inf))
    p = torch.softmax(logp, dim=0)
    return (sorted_low.to(torch.float64) * p).sum(1).to(sorted_low.dtype)


def _subset_min_candidates(total: int, subset: int, tol: float = 1e-9) -> int:
    """How many smallest values carry all but ``tol`` of the probability in expected_subset_min."""
    # P(min rank > K) = C(M-K, n) / C(M, n) <= (1 - K/M)^n
    k = math.ceil(total * (1.0 - tol ** (1.0 / subset))) + 1
    return max(1, min(total - subset + 1, k))


class _NeighborHead(Head):
    """Shared memory-bank plumbing for :class:`NCA` and :class:`DiffKNN`."""

    needs_memory = True
    has_distribution = True

    def __init__(self, in_features: int, target_dim: int, similarity: Similarity | None,
                 chunk_size: int, query_chunk_size: int, search: str = "dense", search_k: int = 1024):
        super().__init__()
        if in_features < 1 or target_dim < 1:
            raise ValueError(f"in_features and target_dim must be >= 1, got {in_features}, {target_dim}")
        if chunk_size < 1 or query_chunk_size < 1:
            raise ValueError(f"chunk sizes must be >= 1, got {chunk_size}, {query_chunk_size}")
        if similarity is not None and not isinstance(similarity, Similarity):
            raise ValueError(f"similarity must be a Similarity module (beyondmse.similarity, or make_similarity(name)), "
                             f"got {type(similarity).__name__}")
        self.in_features = in_features
        self.target_dim = target_dim
        self.similarity = similarity if similarity is not None else NegL2()
        self.chunk_size = chunk_size
        self.query_chunk_size = query_chunk_size
        if search not in SEARCHES:
            raise ValueError(f"unknown search {search!r}; expected one of {SEARCHES}")
        if search == "faiss":
            if not isinstance(self.similarity, (NegL2, NegSquaredL2)):
                raise ValueError("search='faiss' needs the 'l2' or 'l2sq' similarity (a distance faiss indexes), "
                                 f"got {type(self.similarity).__name__}")
            if not faiss_available():
                raise ImportError(FAISS_MISSING)
        if not (isinstance(search_k, int) and search_k >= 1):
            raise ValueError(f"search_k must be an int >= 1, got {search_k!r}")
        self.search, self.search_k = search, search_k
        self._memory_index: tuple | None = None
        #: largest bound on the softmax mass dropped by plain NCA's top-``search_k`` faiss search
        self.search_tail_bound_ = 0.0
        self.register_buffer("memory_z", torch.empty(0, in_features))
        self.register_buffer("memory_y", torch.empty(0, target_dim))
        # the neighbor-set size seen in training (largest batch - 1); 0 = not trained
        self.register_buffer("fit_neighbors", torch.zeros((), dtype=torch.int64))
        self._seen_neighbors = 0

    # -- memory bank ------------------------------------------------------------------------
    @property
    def memory_size(self) -> int:
        return int(self.memory_z.shape[0])

    def fit_memory(self, z_train: Tensor, y_train: Tensor) -> None:
        """Store the training embeddings ``(M, d)`` and targets ``(M, m)`` as the neighbor set."""
        check_head_inputs(z_train, y_train, self.target_dim)
        if z_train.shape[1] != self.in_features:
            raise ValueError(f"expected embeddings of dimension {self.in_features}, got {z_train.shape[1]}")
        if z_train.shape[0] < 1:
            raise ValueError("fit_memory needs at least one training point")
        if not (torch.isfinite(z_train).all() and torch.isfinite(y_train).all()):
            raise ValueError("fit_memory got NaN or inf values")
        self.memory_z = z_train.detach().clone()
        self.memory_y = y_train.detach().to(z_train.dtype).clone()
        self._memory_index = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # the memory bank's size is data-dependent: resize the (empty) buffers to the incoming
        # ones so that loading a trained head into a fresh one restores its memory
        for name in ("memory_z", "memory_y"):
            key = prefix + name
            if key in state_dict and isinstance(state_dict[key], Tensor):
                current = getattr(self, name)
                setattr(self, name, torch.empty(state_dict[key].shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        # a state dict saved before fit_neighbors existed: inference treats the memory as the set
        if prefix + "fit_neighbors" in missing_keys:
            missing_keys.remove(prefix + "fit_neighbors")
        self._seen_neighbors = 0
        self._memory_index = None

    def _note_neighbor_set(self, n_neighbors: int) -> None:
        # only the first batches and a larger one touch the buffer (no host sync per step)
        if n_neighbors > self._seen_neighbors:
            self._seen_neighbors = max(n_neighbors, int(self.fit_neighbors))
            self.fit_neighbors.fill_(self._seen_neighbors)

    def _train_set_size(self, memory_size: int) -> int:
        """The neighbor-set size inference emulates: the training one, or the memory if unknown."""
        n = int(self.fit_neighbors)
        return memory_size if n <= 0 or n >= memory_size else n

    def _check_query(self, z: Tensor) -> None:
        check_head_inputs(z, None, self.target_dim)
        if z.shape[1] != self.in_features:
            raise ValueError(f"expected embeddings of dimension {self.in_features}, got {z.shape[1]}")
        if self.memory_size == 0:
            raise ValueError(f"{type(self).__name__} has an empty memory bank: call fit_memory(z_train, y_train) "
                             "(RegressionModel.fit_memory_from, or Trainer.fit, does it) before predicting")

    # -- faiss search (search="faiss"; heads/faiss_search.py) --------------------------------
    def _index(self) -> MemoryIndex:
        """Flat faiss indexes over the memory bank, rebuilt when the bank changes."""
        key = (self.memory_z.data_ptr(), tuple(self.memory_z.shape), self.memory_z._version)
        if self._memory_index is None or self._memory_index[0] != key:
            self._memory_index = (key, MemoryIndex(self.memory_z))
        return self._memory_index[1]

    def _candidate_sims(self, zq: Tensor, mz: Tensor, idx: Tensor) -> Tensor:
        """Exact similarities (Q, K) of each query to its candidates ``mz[idx]`` ('l2' / 'l2sq'),
        in row blocks of at most 2**24 gathered entries."""
        K, d = idx.shape[1], zq.shape[1]
        rows = max(1, (1 << 24) // max(1, K * d))
        parts = []
        for i in range(0, zq.shape[0], rows):
            diff = zq[i:i + rows, None, :] - mz[idx[i:i + rows]]
            parts.append((diff * diff).sum(-1))
        return self.similarity.of_squared_distances(torch.cat(parts) if parts else zq.new_zeros(0, K))

    def forward(self, z: Tensor) -> Tensor:
        """Predict ``(Q, m)`` for query embeddings ``z`` (Q, d) from the memory bank (inference path)."""
        self._check_query(z)
        mz = self.memory_z.to(z.dtype)
        my = self.memory_y.to(z.dtype)
        # queries in blocks whose similarity rows over the whole memory fit BLOCK_ELEMENTS (at
        # most query_chunk_size): each block's row statistics, top-k and weights are then
        # one pass over a block computed once, not a stream of memory chunks
        rows = self._query_rows(mz.shape[0])
        outs = [self._predict_chunk(z[i:i + rows], mz, my) for i in range(0, z.shape[0], rows)]
        if not outs:
            return z.new_zeros(0, self.target_dim)
        return torch.cat(outs)

    def _query_rows(self, M: int) -> int:
        """Queries per inference block: as many whole memory rows as fit ``BLOCK_ELEMENTS`` (at
        most ``query_chunk_size``), or ``query_chunk_size`` with streamed memory chunks when
        fewer than 64 rows would fit: each block reads the whole bank once for its similarities,
        and with few rows a long bank is then read from memory too many times."""
        fit = BLOCK_ELEMENTS // max(M, 1)
        return min(self.query_chunk_size, fit) if fit >= 64 else self.query_chunk_size

    def inference_weights(self, z: Tensor) -> Tensor:
        """Dense inference weights ``(Q, M)`` over the memory bank (rows sum to 1), for
        diagnostics and tests: ``forward(z) == inference_weights(z) @ memory_y``."""
        self._check_query(z)
        return self._dense_weights(z, self.memory_z.to(z.dtype))

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        check_head_inputs(z, y, self.target_dim)
        if z.shape[0] < 2:
            raise ValueError(f"a neighbor head needs a batch of at least 2 samples in training "
                             f"(each sample's neighbors are the rest of the batch), got {z.shape[0]}")
        if self.training:
            self._note_neighbor_set(z.shape[0] - 1)
        y = y.to(z.dtype)
        pred = self.neighbor_weights(z) @ y
        mse = F.mse_loss(pred, y)
        return LossOutput(mse, {"mse": mse.detach()})

    # -- hooks the Trainer and the run record call -----------------------------------------
    def no_weight_decay(self) -> list[str]:
        """The sparsity parameters (SoftStep's, DiffKNN's k) are exempt from weight decay: their
        gradient is small and noisy, and an L2 pull would hold them at their initial 0.5."""
        return [name for name, _ in self.named_parameters() if name.startswith(("softstep.", "k_fraction."))]

    def fit_summary(self, y_val: Tensor | None = None) -> dict[str, float]:
        """The run record's ``head`` entry: :meth:`diagnostics` on held-out memory rows."""
        return self.diagnostics()

    @torch.no_grad()
    def diagnostics(self, z: Tensor | None = None, *, batches: int = 8, max_queries: int = 256,
                    seed: int = 0) -> dict[str, float]:
        """How many neighbors the head uses, in training and at inference, and its learned parameters.

        Training-mode weights are computed on ``batches`` random subsets of the memory bank of
        the training batch size (``fit_neighbors + 1``); inference weights for up to
        ``max_queries`` rows of ``z`` (Q, d) over the whole memory. Without ``z``, that many
        random memory rows are the queries and the rest of the memory their neighbor set (so no
        query finds itself).

        Returns
        -------
        dict
            ``kept_frac_train`` / ``kept_frac_infer``: mean fraction of the neighbor set with a
            non-zero weight; ``eff_frac_train`` / ``eff_frac_infer``: mean participation ratio
            :math:`1 / \\sum_j p_{ij}^2` as a fraction of the set; ``neighbors_train`` (n) and
            ``neighbors_infer`` (M); the learned SoftStep parameters or k fraction (means over
            the queries).
        """
        if self.memory_size == 0:
            raise ValueError(f"{type(self).__name__} has an empty memory bank: call fit_memory first")
        gen = torch.Generator().manual_seed(seed)
        mz = self.memory_z
        if z is None:
            if self.memory_size < 3:
                raise ValueError("diagnostics without queries needs a memory of at least 3 points")
            perm = torch.randperm(self.memory_size, generator=gen).to(mz.device)
            q = min(max_queries, self.memory_size // 2)
            z, mz = mz[perm[:q]], mz[perm[q:]]
        self._check_query(z)
        M = mz.shape[0]
        n = self._train_set_size(M)
        kept, eff = [], []
        if M >= 2:
            for _ in range(batches):
                idx = torch.randperm(M, generator=gen)[:n + 1].to(mz.device)
                p = self.neighbor_weights(mz[idx].to(z.dtype))
                off = ~torch.eye(len(idx), dtype=torch.bool, device=p.device)
                kept.append(((p > 0) & off).sum(1).double().mean().item() / (len(idx) - 1))
                eff.append((1.0 / (p * p).sum(1)).double().mean().item() / (len(idx) - 1))
        zq = z[:max_queries]
        p = self._dense_weights(zq, mz.to(zq.dtype))
        out = {"kept_frac_train": float(sum(kept) / len(kept)) if kept else float("nan"),
               "kept_frac_infer": (p > 0).sum(1).double().mean().item() / M,
               "eff_frac_train": float(sum(eff) / len(eff)) if eff else float("nan"),
               "eff_frac_infer": (1.0 / (p * p).sum(1)).double().mean().item() / M,
               "neighbors_train": float(n), "neighbors_infer": float(M)}
        out.update(self._param_summary(zq))
        return out

    def _param_summary(self, z: Tensor) -> dict[str, float]:
        return {}

    # -- hooks ------------------------------------------------------------------------------
    def neighbor_weights(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Training-time weights ``p`` (N, N) over the rest of the batch (diagonal = 0)."""
        raise NotImplementedError

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dense_weights(self, zq: Tensor, mz: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- predictive distribution (issue 19) ------------------------------------------------
    @torch.no_grad()
    def predict_distribution(self, z: Tensor, *, n_atoms: int = 128, bandwidth: float | str | None = "auto") -> Mixture:
        """The weighted distribution of the neighbors' targets, :math:`\\sum_j p_{ij}\\, \\delta_{y_j}`,
        for query embeddings ``z`` (Q, d), with the inference weights of :meth:`forward`.

        **Representation (bounded memory).** The weights over the M stored targets are never
        kept as a (Q, M) matrix. The stored targets are put on a grid of at most ``n_atoms``
        atoms per target dimension (:class:`~beyondmse.distributions.TargetGrid`: the distinct
        values when there are at most ``n_atoms``, which is then exact; otherwise
        ``n_atoms`` quantiles of the targets, each target split linearly between the two atoms
        around it so the mean is kept exactly). The head then averages these grid codes with
        its own weights, streamed over the memory in blocks exactly like a prediction: peak
        memory O(M m G + Qb (chunk_size + m G)) for ``Qb = query_chunk_size`` queries per block
        (DiffKNN adds Qb x its kept candidates; NCA with sparsemax gathers (rows, candidates,
        m G) codes and so takes rows of at most 2**22 such entries).

        Parameters
        ----------
        z : Tensor, shape (Q, d)
        n_atoms : int, default 128
            G, the grid size per target dimension.
        bandwidth : float, "auto" or None, default "auto"
            None: point masses on the grid. A float: a Gaussian kernel of that standard
            deviation (target units) around every atom (kernel smoothing). ``"auto"`` (the
            default): a Gaussian of half the smallest gap between targets on discrete target
            dimensions (at most ``n_atoms`` distinct values), point masses on the others; it lets
            CQR reach its nominal coverage where tied scores stop it (with point masses, 6-45% of
            the calibration scores are exactly 0 on the shared discrete-target tables and the
            intervals over-cover at 0.94-0.98) (:meth:`TargetGrid.mixture
            <beyondmse.distributions.TargetGrid.mixture>`).

        Returns
        -------
        Mixture with batch shape (Q, m): marginals for m > 1; its mean equals ``forward(z)``.
        """
        self._check_query(z)
        grid = TargetGrid(self.memory_y, n_atoms)
        mz = self.memory_z.to(z.dtype)
        block = self.query_chunk_size
        parts = [self._grid_weights_chunk(z[i:i + block], mz, grid) for i in range(0, z.shape[0], block)]
        if not parts:
            raise ValueError("predict_distribution got no queries (z is empty)")
        return grid.mixture(torch.cat(parts), bandwidth)

    def _grid_weights_chunk(self, zq: Tensor, mz: Tensor, grid: TargetGrid) -> Tensor:  # pragma: no cover
        """Hook: grid weights (Qb, m, G) of queries ``zq`` over the memory ``mz``."""
        raise NotImplementedError


# --------------------------------------------------------------------------- NCA
class NCA(_NeighborHead):
    r"""NCA regression head, optionally with SoftStep (the paper's Algorithm 2).

    .. math::

        \hat y_i = \sum_{j \ne i} p_{ij} y_j, \qquad
        p_i = \mathrm{normalizer}_j\big(s(z_i, z_j) + \log \mathrm{SoftStep}(\tilde s_{ij}; l_i, u_i, t_i)\big)

    where :math:`\tilde s_{ij} = (s_{ij} - \min_k s_{ik}) / (\max_k s_{ik} - \min_k s_{ik})` is the
    row-wise min-max normalised similarity (the row includes the sample itself, as in Algorithm
    2), :math:`l_i = \min(l_0, \max_{j \ne i} \tilde s_{ij}) - \epsilon` (so the most similar
    neighbor always keeps a non-zero weight) and :math:`u_i = l_i + u_0 (1 - l_i)`. Without
    SoftStep the log term is absent (plain NCA). Neighbors whose SoftStep weight is exactly 0 get
    logit ``finfo.min``. The training loss is the MSE of :math:`\hat y` over the batch. At
    inference the row minimum is the expected minimum over a training-sized subset of the memory
    (see the module docstring).

    Parameters
    ----------
    in_features : int
        Embedding dimension d.
    target_dim : int, default 1
    similarity : Similarity, default NegL2()
        The paper's negative Euclidean distance.
    normalizer : Normalizer, default Softmax()
        ``Sparsemax()`` gives exact zeros (the paper's sparsemax baseline).
    softstep : {None, "global", "instance"} or SoftStepParams, default None
    softstep_init : (l0, u0, t), default (0.5, 0.5, 0.5)
        Initial SoftStep parameters, each in (0, 1) (``sigmoid(0)``; see
        :mod:`beyondmse.heads.softstep_params`).
    softstep_lr_scale : float, default 1.0
        Learning-rate multiplier of the SoftStep parameters.
    eps : float, default 1e-3
        The margin :math:`\epsilon` below the top neighbor.
    chunk_size, query_chunk_size : int
        Memory-bank and query block sizes at inference (peak memory ~ their product).
    search : {"dense", "faiss"}, default "dense"
        Inference over the memory bank: every stored point in blocks, or candidate sets from
        flat faiss indexes (``"l2"`` / ``"l2sq"`` similarities; :mod:`.faiss_search`). With
        SoftStep the faiss path searches the ball of non-zero weights and gives the dense
        predictions; it pays when the learned ball is small (it returns every point inside).
        Diagnostics, :meth:`inference_weights` and :meth:`predict_distribution` stay dense.
    search_k : int, default 1024
        Plain softmax NCA with ``search="faiss"``: keep each query's ``search_k`` nearest
        points; ``search_tail_bound_`` holds the largest bound on the softmax mass dropped.

    Attributes
    ----------
    memory_z : Tensor (M, d), memory_y : Tensor (M, m)
        The memory bank (registered buffers: saved and loaded with the state dict).
    fit_neighbors : Tensor (), int64
        Neighbor-set size seen in training (largest batch - 1).

    Examples
    --------
    >>> head = NCA(4, softstep="global")
    >>> z, y = torch.randn(8, 4), torch.rand(8, 1)
    >>> head.loss(z, y).total.shape
    torch.Size([])
    >>> head.fit_memory(z, y); head(z[:3]).shape
    torch.Size([3, 1])
    """

    def __init__(self, in_features: int, target_dim: int = 1, *, similarity: Similarity | None = None,
                 normalizer: Normalizer | None = None, softstep=None,
                 softstep_init: tuple[float, float, float] = DEFAULT_INIT, softstep_lr_scale: float = 1.0,
                 eps: float = 1e-3, chunk_size: int = 4096, query_chunk_size: int = 1024,
                 search: str = "dense", search_k: int = 1024):
        super().__init__(in_features, target_dim, similarity, chunk_size, query_chunk_size, search, search_k)
        if normalizer is not None and not isinstance(normalizer, Normalizer):
            raise ValueError("normalizer must be a Normalizer module (Softmax(), Sparsemax(), or "
                             f"beyondmse.normalizers.make_normalizer(name)), got {normalizer!r}")
        if not 0 <= eps < 1:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        self.normalizer = normalizer if normalizer is not None else Softmax()
        self.softstep = make_softstep_params(softstep, in_features, softstep_init, softstep_lr_scale)
        if search == "faiss" and self.softstep is None and not isinstance(self.normalizer, Softmax):
            raise ValueError("search='faiss' without SoftStep is a top-k approximation bounded for the "
                             f"softmax only, got {type(self.normalizer).__name__}")
        self.eps = eps
        self.min_gap = 1e-3

    def extra_repr(self) -> str:
        kind = None if self.softstep is None else type(self.softstep).__name__
        return f"in_features={self.in_features}, target_dim={self.target_dim}, softstep={kind}"

    def neighbor_weights(self, z: Tensor) -> Tensor:
        """Training-time weights ``p`` (N, N) over the rest of the batch (diagonal = 0)."""
        n = z.shape[0]
        sim = self.similarity(z, z)
        if self.softstep is None:
            self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
            logits = sim.masked_fill(self_mask, _neg_big(sim.dtype))
        else:
            # NORM over the row (self included), ROWMAXEXCLSELF, SoftStep and the log weight in
            # one fused node (functional.softstep_logits)
            logits = softstep_logits(sim, self.softstep(z), eps=self.eps, min_gap=self.min_gap,
                                     exclude_diagonal=True)
        return self.normalizer(logits)

    def _logit_fn(self, zq: Tensor, mz: Tensor) -> ScoreFn:
        """The inference logits of queries ``zq`` over the memory ``mz``, block-wise."""
        n = mz.shape[0]
        held = zq.shape[0] * n <= BLOCK_ELEMENTS
        chunk = n if held else self.chunk_size  # the row statistics' memory chunk
        block = self.similarity(zq, mz) if held else None  # small enough: compute the block once

        def rows_sims(r0: int, r1: int) -> ScoreFn:
            if held:
                return lambda start, stop: block[r0:r1, start:stop]
            return lambda start, stop: self.similarity(zq[r0:r1], mz[start:stop])

        sims = rows_sims(0, zq.shape[0])

        if self.softstep is None:
            return sims
        low, top = streaming_row_min_max(sims, n, chunk)
        self_sim = self.similarity(zq, zq).diagonal()
        hi = torch.maximum(self_sim, top)
        subset = self._train_set_size(n)
        if subset < n:
            # the k smallest similarities of a few queries at a time: the selection holds up to
            # 2k of them per query, which for a whole block of queries was 725 MB at k = 78,000
            # (1e6 memory points, trained at batch 256)
            k = _subset_min_candidates(n, subset)
            step = max(1, BLOCK_ELEMENTS // (2 * k))
            low = torch.cat([expected_subset_min(streaming_k_smallest(rows_sims(r0, r1), n, k, chunk, rows=r1 - r0),
                                                 n, subset) for r0, r1 in chunk_ranges(zq.shape[0], step)])
        lo = torch.minimum(self_sim, low)
        params = self.softstep(zq)

        def logits(start: int, stop: int) -> Tensor:
            return softstep_logits(sims(start, stop), params, eps=self.eps, min_gap=self.min_gap,
                                   row_stats=(lo, hi, top))

        return logits

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        if self.search == "faiss":
            return self._faiss_predict(zq, mz, my) if self.softstep is not None else self._faiss_top_k(zq, mz, my)
        # the weights in pieces of the configured block size (query_chunk_size x chunk_size
        # entries) even when fewer queries hold whole memory rows: the elementwise SoftStep
        # passes then run on the same cache-sized pieces, in as few Python steps
        chunk = max(self.chunk_size, self.query_chunk_size * self.chunk_size // max(zq.shape[0], 1))
        return self.normalizer.average(self._logit_fn(zq, mz), my, chunk)

    def _faiss_top_k(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        """Plain softmax NCA on each query's ``search_k`` nearest points. Every dropped point is
        no more similar than the K-th kept one, so the dropped mass is at most
        ``(M - K) exp(s_K - logsumexp_kept s)``; the largest bound is kept in ``search_tail_bound_``."""
        M = mz.shape[0]
        K = min(self.search_k, M)
        idx = self._index().nearest(zq, K)[1].to(mz.device)
        sims = self._candidate_sims(zq, mz, idx)
        if K < M and sims.numel():
            bound = ((M - K) * torch.exp(sims.min(1).values - torch.logsumexp(sims, 1))).clamp_max(1.0)
            self.search_tail_bound_ = max(self.search_tail_bound_, float(bound.max()))
        return torch.einsum("qk,qkm->qm", torch.softmax(sims, 1), my[idx])

    def _faiss_predict(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        """NCA + SoftStep over each query's ball of non-zero weights (:meth:`_faiss_balls`)."""
        out = zq.new_empty(zq.shape[0], self.target_dim)
        for b, idx, mask, (lo, hi, top) in self._faiss_balls(zq, mz):
            logits = softstep_logits(self._candidate_sims(zq[b], mz, idx), self.softstep(zq[b]), eps=self.eps,
                                     min_gap=self.min_gap, row_stats=(lo, hi, top))
            p = self.normalizer(logits.masked_fill(~mask, _neg_big(logits.dtype)))
            out[b] = torch.einsum("qk,qkm->qm", p, my[idx])
        return out

    def _faiss_balls(self, zq: Tensor, mz: Tensor):
        """Yield ``(rows, idx, mask, (lo, hi, top))`` per block of queries: the padded memory
        indices (B, K) of every point that can have a non-zero weight, found by faiss.

        The row statistics are the dense path's (:meth:`_logit_fn`): ``hi`` = the
        self-similarity (0 for these similarities, never below another point's), ``top`` = the
        nearest point, ``lo`` = the farthest point or the expected farthest of a training-sized
        subset. A point's weight is non-zero iff ``s = (sim - lo) / range > l``, i.e.
        ``sim > lo + l range``: a ball. ``l = min(l0, s_top) - eps`` needs the nearest point, but
        the ball for ``l = l0 - eps`` is right whenever it is not empty and its best point has
        ``s_top >= l0`` (that point is then the nearest): one range search serves most queries,
        the others get a nearest-point search and a second, larger ball.
        """
        index, M, dev = self._index(), mz.shape[0], mz.device
        subset = self._train_set_size(M)
        if subset >= M:
            lo = self._candidate_sims(zq, mz, index.farthest(zq, min(8, M))[1].to(dev)).min(1).values
        else:  # an average over thousands of far points: faiss's float32 distances (1e-7 relative)
            far_d2 = index.farthest(zq, _subset_min_candidates(M, subset))[0].to(device=dev, dtype=zq.dtype)
            lo = expected_subset_min(self.similarity.of_squared_distances(far_d2), M, subset)  # ascending
        lo = torch.minimum(torch.zeros_like(lo), lo)
        hi = torch.zeros_like(lo)
        l0, u0, _ = self.softstep(zq)
        l0, u0 = l0.expand(len(zq), 1), u0.expand(len(zq), 1)

        def lower(rows: Tensor, top: Tensor) -> Tensor:  # Algorithm 2's l for these rows
            return _softstep_bounds(lo[rows, None], hi[rows, None], top[:, None], l0[rows], u0[rows], self.eps,
                                    self.min_gap)[1][:, 0]

        def radii(rows: Tensor, l: Tensor) -> np.ndarray:  # squared radius of sim > lo + l range
            threshold = lo[rows] + l * (hi[rows] - lo[rows]).clamp_min(_range_floor(lo.dtype))
            r2 = self.similarity.squared_distance_within(threshold).detach().double().cpu()
            return (r2 * (1 + RADIUS_MARGIN) + 1e-6).numpy()

        everyone = torch.arange(len(zq), device=dev)
        guess = lower(everyone, hi)  # top = hi: l = l0 - eps
        redo = []
        for b, idx, mask in self._range_blocks(zq, everyone, radii(everyone, guess)):
            top = self._candidate_sims(zq[b], mz, idx).masked_fill(~mask, -math.inf).max(1).values
            found = mask.any(1)
            ok = found.clone()  # the guess was right iff the best point found gives l = l0 - eps
            ok[found] = lower(b[found], top[found]) >= guess[b[found]]
            if ok.any():
                yield b[ok], idx[ok], mask[ok], (lo[b[ok]], hi[b[ok]], top[ok])
            redo.append(b[~ok])
        rest = torch.cat(redo) if redo else everyone[:0]
        if len(rest):
            top = self._candidate_sims(zq[rest], mz, index.nearest(zq[rest], min(8, M))[1].to(dev)).max(1).values
            top_of = dict(zip(rest.tolist(), top))
            for b, idx, mask in self._range_blocks(zq, rest, radii(rest, lower(rest, top))):
                tb = torch.stack([top_of[i] for i in b.tolist()])
                yield b, idx, mask, (lo[b], hi[b], tb)

    def _range_blocks(self, zq: Tensor, rows: Tensor, r2: np.ndarray):
        """Range searches for queries ``zq[rows]`` with squared radii ``r2``: yield ``(rows, idx,
        mask)`` blocks, sorted by radius, of about 2**22 candidates each (sized on the largest balls)."""
        index, dev = self._index(), zq.device
        order = torch.from_numpy(r2.argsort(kind="stable"))
        probe = order[-min(16, len(order)):]
        hits = index.within(zq[rows[probe.to(dev)]], float(r2[probe.numpy()].max()))[0][-1] / max(1, len(probe))
        step = max(1, int((1 << 22) // max(1.0, hits)))
        for start in range(0, len(order), step):
            block = order[start:start + step]
            rb = r2[block.numpy()]
            b = rows[block.to(dev)]
            lims, d2, hit = index.within(zq[b], float(rb.max()))
            idx, mask = padded_candidates(lims, hit, d2 <= np.repeat(rb, np.diff(lims)))
            yield b, idx.to(dev), mask.to(dev)

    def _dense_weights(self, zq: Tensor, mz: Tensor) -> Tensor:
        return self.normalizer(self._logit_fn(zq, mz)(0, mz.shape[0]))

    def _param_summary(self, z: Tensor) -> dict[str, float]:
        if self.softstep is None:
            return {}
        l0, u0, t = self.softstep(z)
        return {"softstep_l0": l0.mean().item(), "softstep_u0": u0.mean().item(), "softstep_t": t.mean().item()}

    def _grid_weights_chunk(self, zq: Tensor, mz: Tensor, grid: TargetGrid) -> Tensor:
        # the normalizer's streamed average of the targets' grid codes (predict_distribution); a
        # normalizer that gathers candidates (sparsemax) holds (rows, candidates, m G) codes at once
        codes = grid.codes(zq.dtype)
        rows = max(1, (1 << 22) // (getattr(self.normalizer, "candidates", 1) * codes.shape[1]))
        rows = zq.shape[0] if rows >= zq.shape[0] else rows
        avg = torch.cat([self.normalizer.average(self._logit_fn(zq[i:i + rows], mz), codes, self.chunk_size)
                         for i in range(0, zq.shape[0], rows)])
        return avg.view(zq.shape[0], self.target_dim, grid.n_atoms)


# --------------------------------------------------------------------------- differentiable kNN
class DiffKNN(_NeighborHead):
    r"""Differentiable kNN regression head with a learned k (the paper's Algorithm 1).

    In a batch of N each query has :math:`n = N - 1` neighbors; with :math:`r_{ij}` their 0-based
    soft ranks by decreasing similarity and :math:`k_i = \max(\sigma(\theta_i)\, n, 1)`:

    .. math::

        p_i = \mathrm{softmax}_j\big(s_{ij} + \log w(r_{ij}; k_i)\big), \qquad
        \hat y_i = \sum_{j \ne i} p_{ij} y_j,

    where :math:`w` is the flipped SoftStep over ranks (:func:`knn_step_weights`: 1 up to k, 0
    beyond k + q, q = 4, t = 0.75). Soft ranks (Blondel et al. 2020) are computed on the
    similarities rescaled so that the average gap between neighbors is 1, so ``rank_strength``
    is in gap units. If every neighbor's soft rank is above k (e.g. all points tied), k is
    raised to just above the best one so at least one neighbor keeps weight.

    **Soft-rank strength: 0.1 gaps, not the paper's 1.** The soft rank of a row ``x`` is its
    projection onto the permutahedron, :math:`r_\varepsilon(x) = \arg\min_{\mu \in
    \mathcal P(1, \dots, n)} \tfrac12 \|\mu - x / \varepsilon\|^2` (Blondel et al. 2020,
    the quadratic regularization). Sorted, consecutive neighbors whose gap is below
    :math:`\varepsilon` violate the order constraint and are pooled: a pooled block keeps the
    mean of its hard ranks, but its ranks are squeezed together (spaced by gap / ε, below 1 on
    average). A row of similarities is denser than average in its middle, so at ε = 1 average
    gap most of the middle is one block and the count of soft ranks below ``k + q`` is not
    ``k + q``: with the same model, training kept 0.13 of each batch and the hard-rank
    inference 0.25 (cpu_act, dknn-softstep-i, batch 256, 20 epochs, seed 0; at batch 32 the
    error went the other way, 0.63 vs 0.24). At ε = 0.1 only near-ties pool, the soft ranks'
    count matches the hard one and the kept fractions agree (0.255 vs 0.250 on that model;
    within 6% on five shared tables after 20 epochs at 0.1, issue 14); training-mode and
    inference predictions on the same neighbor set then differ only where near-tied neighbors
    straddle the transition.
    The ranks still carry gradient inside the pooled blocks (the soft-rank Jacobian is
    ``(I - B) / ε`` with ``B`` the block averaging).

    **Memory-bank inference.** With M stored points and the training set size n, the head keeps
    ``k M / n`` points with a transition of ``q M / n`` hard ranks: the same fraction of the
    neighbor set as in training, with the same relative transition. With ``M = n`` this is the
    training computation in the hard-rank limit. The candidates come from one top-k over whole
    memory rows for blocks of queries (``BLOCK_ELEMENTS`` entries; a streamed top-k over memory
    chunks for banks too long for 64 rows), so memory is O(Q k M / n + BLOCK_ELEMENTS).

    Parameters
    ----------
    in_features : int
    target_dim : int, default 1
    similarity : Similarity, default NegL2()
    k : {"global", "instance"} or KFraction, default "global"
    k_init : float in (0, 1), default 0.5
        Initial fraction of the neighbor set kept (``sigmoid(0)``, Algorithm 1's implied start).
    k_lr_scale : float, default 1.0
        Learning-rate multiplier of k.
    q : float, default 4.0
    t : float, default 0.75
    rank_strength : float, default 0.1
        Soft-rank regularization strength (in average-gap units; see above for why not 1).
    chunk_size, query_chunk_size : int
    search : {"dense", "faiss"}, default "dense"
        How inference finds each query's K nearest stored points: a streamed top-k in torch, or
        a flat faiss index (``"l2"`` / ``"l2sq"``; the exact top K is re-ranked in torch).
    """

    def __init__(self, in_features: int, target_dim: int = 1, *, similarity: Similarity | None = None,
                 k="global", k_init: float = 0.5, k_lr_scale: float = 1.0, q: float = 4.0, t: float = 0.75,
                 rank_strength: float = 0.1, chunk_size: int = 4096, query_chunk_size: int = 1024,
                 search: str = "dense"):
        super().__init__(in_features, target_dim, similarity, chunk_size, query_chunk_size, search)
        if not q > 0:
            raise ValueError(f"q must be > 0, got {q}")
        if not t > 0:
            raise ValueError(f"t must be > 0, got {t}")
        if not rank_strength > 0:
            raise ValueError(f"rank_strength must be > 0, got {rank_strength}")
        if not 0.0 < float(k_init) < 1.0:
            raise ValueError(f"k_init must be in (0, 1), got {k_init}")
        if isinstance(k, KFraction):
            self.k_fraction = k
        elif k == "global":
            self.k_fraction = KFraction(None, k_init, k_lr_scale)
        elif k == "instance":
            self.k_fraction = KFraction(in_features, k_init, k_lr_scale)
        else:
            raise ValueError(f"unknown k parameterization {k!r}; expected 'global', 'instance' or a KFraction")
        self.q, self.t, self.rank_strength = float(q), float(t), float(rank_strength)

    def extra_repr(self) -> str:
        kind = "instance" if self.k_fraction.instance_wise else "global"
        return f"in_features={self.in_features}, target_dim={self.target_dim}, k={kind!r}, " \
               f"q={self.q}, t={self.t}, rank_strength={self.rank_strength}"

    def _soft_ranks(self, s: Tensor) -> Tensor:
        """0-based soft ranks (Q, n) of each row's similarities ``s``, most similar first."""
        n = s.shape[1]
        # the rescaling only sets the unit of rank_strength (the average gap between a row's
        # neighbors), so it is a constant for autograd: the ranks move with s alone
        lo, hi = s.detach().amin(1), s.detach().amax(1)
        rng = (hi - lo).clamp_min(_range_floor(s.dtype))[:, None]
        x = (hi[:, None] - s) / rng * max(n - 1, 1)  # best 0, worst n - 1: unit average gap
        # no NaN check here: it would cost a host synchronisation per step on a GPU, and the
        # training loop checks every loss (a NaN in z gives NaN ranks, never an error or a hang)
        return soft_rank(x, self.rank_strength, check_finite=False) - 1.0

    def _k(self, z: Tensor, n: int) -> Tensor:
        """Algorithm 1's ``k = max(sigma(theta) n, 1)``, (N, 1) or (1, 1), at most n."""
        return torch.clamp(self.k_fraction(z) * n, min=1.0, max=float(n))

    def neighbor_weights(self, z: Tensor) -> Tensor:
        """Training-time weights ``p`` (N, N) over the rest of the batch (diagonal = 0)."""
        return _with_zero_diagonal(self._others_weights(z))

    def _others_weights(self, z: Tensor) -> Tensor:
        """Weights over the N - 1 other samples (N, N - 1), in batch order without self."""
        n = z.shape[0]
        s = _off_diagonal(self.similarity(z, z))
        ranks = self._soft_ranks(s)
        k = self._k(z, n - 1)
        best = ranks.min(1, keepdim=True).values.detach()
        k = torch.minimum(torch.maximum(k, best + 1e-3), torch.full_like(k, float(n - 1)))
        return torch.softmax(knn_step_logits(s, ranks, k, n - 1, self.q, self.t), dim=-1)

    def _candidates(self, zq: Tensor, mz: Tensor) -> tuple[Tensor, Tensor]:
        """Inference weights over each query's candidates (Q, K) and their memory indices (Q, K)."""
        M = mz.shape[0]
        n = self._train_set_size(M)
        scale = M / n
        k = self._k(zq, n) * scale
        k = k.expand(zq.shape[0], 1)
        q = self.q * scale
        K = min(M, int(math.ceil(float(k.detach().max()) + q)) + 1)
        if self.search == "faiss":  # the exact top K among faiss's top K + 8 (float32 ties at the edge)
            idx = self._index().nearest(zq, min(M, K + 8))[1].to(mz.device)
            top, order = self._candidate_sims(zq, mz, idx).topk(K, dim=1)
            idx = idx.gather(1, order)
        else:
            top, idx = self._dense_top(zq, mz, K)
        ranks = torch.arange(K, dtype=zq.dtype, device=zq.device).expand_as(top)
        return torch.softmax(knn_step_logits(top, ranks, k.clamp_max(float(M)), M, q, self.t), dim=-1), idx

    def _dense_top(self, zq: Tensor, mz: Tensor, K: int) -> tuple[Tensor, Tensor]:
        """The K most similar stored points of each query, (Q, K) values and indices, descending.
        With K above a chunk, the queries go in blocks small enough for whole memory rows
        (``BLOCK_ELEMENTS``): one top-k per row instead of merging a wide running top k."""
        M = mz.shape[0]
        rows = self._query_rows(M) if K > self.chunk_size else zq.shape[0]
        parts = [streaming_topk(lambda a, b, q=zq[i:i + rows]: self.similarity(q, mz[a:b]), M, K, self.chunk_size,
                                rows=min(rows, zq.shape[0] - i)) for i in range(0, zq.shape[0], rows)]
        return torch.cat([v for v, _ in parts]), torch.cat([i for _, i in parts])

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        p, idx = self._candidates(zq, mz)
        return torch.einsum("qk,qkm->qm", p, my[idx])

    def _dense_weights(self, zq: Tensor, mz: Tensor) -> Tensor:
        p, idx = self._candidates(zq, mz)
        return torch.zeros(zq.shape[0], mz.shape[0], dtype=p.dtype, device=p.device).scatter(1, idx, p)

    def kept_neighbors(self, zq: Tensor, memory_size: int) -> Tensor:
        """Number of stored points each query gives a non-zero weight at inference, shape (Q,)."""
        n = self._train_set_size(memory_size)
        scale = memory_size / n
        k = (self._k(zq, n) * scale).expand(zq.shape[0], 1)[:, 0]
        return torch.clamp_max(torch.ceil(k + self.q * scale), memory_size).to(torch.int64)

    def _param_summary(self, z: Tensor) -> dict[str, float]:
        return {"k_frac": self.k_fraction(z).mean().item()}

    def _grid_weights_chunk(self, zq: Tensor, mz: Tensor, grid: TargetGrid) -> Tensor:
        # the kept candidates' weights scattered onto the grid (predict_distribution)
        p, idx = self._candidates(zq, mz)
        return grid.scatter(p, idx)
