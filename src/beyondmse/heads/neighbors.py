"""Neighbor-based heads with SoftStep: NCA, differentiable kNN, sparsemax NCA, memory-bank inference.

A neighbor head predicts a weighted average of neighbor targets,
:math:`\\hat y_i = \\sum_j p_{ij} y_j` with :math:`p_i = \\mathrm{softmax}(\\text{logits}_i)`.
In training the neighbors of a sample are the rest of its mini-batch (self-similarity masked);
after training :meth:`fit_memory` stores the training embeddings and targets (a *memory bank*)
and inference uses all of them as the neighbor set, streamed in chunks so that peak memory does
not depend on the memory size.

**k as a fraction.** Everything that counts neighbors is expressed as a fraction of the
neighbor-set size so that it transfers from a batch of N (N - 1 neighbors) to a memory bank of
M: the SoftStep interval lives on row-wise min-max normalised similarities (a scale-free
quantity), and the DiffKNN head learns ``k / (N - 1)`` rather than ``k``; at inference it keeps
the ``k_frac (M - 1)`` most similar stored points.

References
----------
1. A. Susman, B. Lin, M. Suárez-Fariñas, J. T. Colonel, "SoftStep: Learning Sparse Similarity
   Powers Deep Neighbor-Based Regression", arXiv:2506.08139, 2025 (Algorithms 1 and 2).
2. J. Goldberger, S. Roweis, G. Hinton, R. Salakhutdinov, "Neighbourhood Components Analysis",
   NeurIPS 2004.
3. A. Martins, R. Astudillo, "From Softmax to Sparsemax", ICML 2016.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_head_inputs
from ..configurable import Configurable
from ..functional.rank import soft_rank
from ..functional.softstep import softstep
from ..functional.streaming import (float_order_keys, streaming_kth_largest, streaming_row_min_max,
                                    streaming_softmax_average, streaming_topk)
from ..similarity import NegSquaredL2, Similarity
from .base import Head, LossOutput

__all__ = ["NCA", "DiffKNN", "SoftStepParams", "GlobalSoftStep", "InstanceSoftStep", "make_softstep_params",
           "knn_step_weights", "NORMALIZATIONS"]

NORMALIZATIONS = ("softmax", "sparsemax")
_SOFTSTEP_KINDS = (None, "global", "instance")


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _check_unit(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


# --------------------------------------------------------------------------- SoftStep parameters
class SoftStepParams(Configurable, nn.Module):
    """Maps query embeddings ``z`` (N, d) to SoftStep parameters ``(l0, u0, t)``, each
    broadcastable to (N, 1) and in (0, 1) through a sigmoid (``t`` is kept >= ``t_min``)."""

    t_min = 1e-3

    def _split(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = torch.sigmoid(raw)
        return p[..., 0:1], p[..., 1:2], p[..., 2:3].clamp_min(self.t_min)


class GlobalSoftStep(SoftStepParams):
    """One learnable ``(l0, u0, t)`` for the whole model (the paper's *global* SoftStep)."""

    def __init__(self, init: tuple[float, float, float] = (0.25, 0.5, 0.5)):
        super().__init__()
        for name, v in zip(("l0", "u0", "t"), init):
            _check_unit(f"softstep init {name}", v)
        self.raw = nn.Parameter(torch.tensor([_logit(v) for v in init]))

    def forward(self, z: Tensor):
        return self._split(self.raw.to(z.dtype)[None, :])


class InstanceSoftStep(SoftStepParams):
    """A linear layer + sigmoid giving each query its own ``(l0, u0, t)`` (*instance* SoftStep).

    The weights start at zero and the bias at the logits of ``init``, so training starts from
    the global SoftStep with those values.
    """

    def __init__(self, in_features: int, init: tuple[float, float, float] = (0.25, 0.5, 0.5)):
        super().__init__()
        for name, v in zip(("l0", "u0", "t"), init):
            _check_unit(f"softstep init {name}", v)
        self.linear = nn.Linear(in_features, 3)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.tensor([_logit(v) for v in init]))

    def forward(self, z: Tensor):
        return self._split(self.linear(z))


def make_softstep_params(kind, in_features: int, init=(0.25, 0.5, 0.5)) -> SoftStepParams | None:
    """``None`` -> no SoftStep; ``"global"`` / ``"instance"`` -> the module; a module passes through."""
    if kind is None or isinstance(kind, SoftStepParams):
        return kind
    if kind == "global":
        return GlobalSoftStep(init)
    if kind == "instance":
        return InstanceSoftStep(in_features, init)
    raise ValueError(f"unknown softstep {kind!r}; expected one of {_SOFTSTEP_KINDS} or a SoftStepParams module")


# --------------------------------------------------------------------------- shared pieces
def _neg_big(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def _masked_log_weight_logits(sim: Tensor, w: Tensor, keep: Tensor | None = None) -> Tensor:
    """``sim + log(w)`` where ``w > 0`` (and ``keep``), ``finfo.min`` elsewhere.

    The log is taken of ``w`` clamped at ``finfo.tiny`` and selected by ``where``, so a zero
    weight never produces ``-inf`` logits or a ``0 * inf`` NaN in the backward pass.
    """
    ok = w > 0
    if keep is not None:
        ok = ok & keep
    tiny = torch.finfo(w.dtype).tiny
    return torch.where(ok, sim + torch.log(w.clamp_min(tiny)), torch.full_like(sim, _neg_big(sim.dtype)))


def _range_floor(dtype: torch.dtype) -> float:
    # floor on the min-max range: avoids 0/0 for a row of identical similarities while keeping
    # the normalisation's gradient bounded
    return math.sqrt(torch.finfo(dtype).eps)


def _softstep_weights(sim: Tensor, lo: Tensor, hi: Tensor, params, eps: float, min_gap: float) -> Tensor:
    """Algorithm 2 of the paper on similarities ``sim`` (Q, n) given row min/max (Q,).

    ``s = (sim - lo) / (hi - lo)``, ``l = min(l0, top) - eps`` with ``top = max_j s`` (1, or 0
    for a constant row) so that the most similar neighbor is always above ``l``, and
    ``u = l + u0 (1 - l)`` (at least ``min_gap`` above ``l``).
    """
    l0, u0, t = params
    rng = (hi - lo).clamp_min(_range_floor(sim.dtype))[:, None]
    s = (sim - lo[:, None]) / rng
    top = (hi - lo)[:, None] / rng
    l = torch.minimum(l0, top) - eps
    u = l + torch.clamp_min(u0 * (1.0 - l), min_gap)
    return softstep(s, l, u, t)


def knn_step_weights(ranks: Tensor, k: Tensor | float, n_neighbors: int, q: float = 4.0, t: float = 0.75) -> Tensor:
    """The flipped SoftStep over 0-based ranks (the paper's Algorithm 1).

    Weight 1 for ``rank <= k``, 0 for ``rank >= k + q``, and in between the real-valued
    transition :math:`(k+q-r)^{1/t} / ((r-k)^{1/t} + (k+q-r)^{1/t})`, computed as
    ``softstep(-r, -(k+q), -k, t)``. (The paper's pseudo-code has a sign slip in the
    denominator; this is the transition that stays real.)

    Parameters
    ----------
    ranks : Tensor, shape (Q, n)
    k : Tensor broadcastable to (Q, 1), or float
        Number of neighbors kept with full weight, ``1 <= k <= n_neighbors``.
    n_neighbors : int
        Size of the neighbor set (``N - 1`` in a batch of N).
    q, t : float
        Transition width (in ranks) and sharpness.
    """
    if not isinstance(k, Tensor):
        k = torch.as_tensor(float(k), dtype=ranks.dtype, device=ranks.device)
    if bool((k > n_neighbors).any()):
        raise ValueError(f"k = {float(k.max()):.4g} is larger than the neighbor set ({n_neighbors} neighbors)")
    if bool((k < 0).any()):
        raise ValueError(f"k must be >= 0, got {float(k.min()):.4g}")
    if not q > 0:
        raise ValueError(f"q must be > 0, got {q}")
    return softstep(-ranks, -(k + q), -k, t)


class _NeighborHead(Head):
    """Shared memory-bank plumbing for :class:`NCA` and :class:`DiffKNN`."""

    needs_memory = True

    def __init__(self, in_features: int, target_dim: int, similarity: Similarity | None,
                 chunk_size: int, query_chunk_size: int):
        super().__init__()
        if in_features < 1 or target_dim < 1:
            raise ValueError(f"in_features and target_dim must be >= 1, got {in_features}, {target_dim}")
        if chunk_size < 1 or query_chunk_size < 1:
            raise ValueError(f"chunk sizes must be >= 1, got {chunk_size}, {query_chunk_size}")
        if similarity is not None and not isinstance(similarity, nn.Module):
            raise ValueError(f"similarity must be a Similarity module, got {type(similarity).__name__}")
        self.in_features = in_features
        self.target_dim = target_dim
        self.similarity = similarity if similarity is not None else NegSquaredL2()
        self.chunk_size = chunk_size
        self.query_chunk_size = query_chunk_size
        self.register_buffer("memory_z", torch.empty(0, in_features))
        self.register_buffer("memory_y", torch.empty(0, target_dim))

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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the memory bank's size is data-dependent: resize the (empty) buffers to the incoming
        # ones so that loading a trained head into a fresh one restores its memory
        for name in ("memory_z", "memory_y"):
            key = prefix + name
            if key in state_dict and isinstance(state_dict[key], Tensor):
                current = getattr(self, name)
                setattr(self, name, torch.empty(state_dict[key].shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z: Tensor) -> Tensor:
        """Predict ``(Q, m)`` for query embeddings ``z`` (Q, d) from the memory bank (inference path)."""
        check_head_inputs(z, None, self.target_dim)
        if z.shape[1] != self.in_features:
            raise ValueError(f"expected embeddings of dimension {self.in_features}, got {z.shape[1]}")
        if self.memory_size == 0:
            raise ValueError(f"{type(self).__name__} has an empty memory bank: call fit_memory(z_train, y_train) "
                             "(RegressionModel.fit_memory_from, or Trainer.fit, does it) before predicting")
        mz = self.memory_z.to(z.dtype)
        my = self.memory_y.to(z.dtype)
        outs = [self._predict_chunk(z[i:i + self.query_chunk_size], mz, my)
                for i in range(0, z.shape[0], self.query_chunk_size)]
        if not outs:
            return z.new_zeros(0, self.target_dim)
        return torch.cat(outs)

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _check_batch(z: Tensor, y: Tensor, target_dim: int) -> None:
        check_head_inputs(z, y, target_dim)
        if z.shape[0] < 2:
            raise ValueError(f"a neighbor head needs a batch of at least 2 samples in training "
                             f"(each sample's neighbors are the rest of the batch), got {z.shape[0]}")

    @staticmethod
    def _others_min_max(sim: Tensor, self_mask: Tensor) -> tuple[Tensor, Tensor]:
        big = torch.finfo(sim.dtype).max
        lo = sim.masked_fill(self_mask, big).min(1).values
        hi = sim.masked_fill(self_mask, -big).max(1).values
        return lo, hi


# --------------------------------------------------------------------------- NCA
class NCA(_NeighborHead):
    r"""NCA regression head, optionally with SoftStep (the paper's Algorithm 2) or sparsemax.

    .. math::

        \hat y_i = \sum_{j \ne i} p_{ij} y_j, \qquad
        p_i = \mathrm{softmax}_j\big(s(z_i, z_j) + \log \mathrm{SoftStep}(\tilde s_{ij}; l_i, u_i, t_i)\big)

    where :math:`\tilde s_{ij}` are the row-wise min-max normalised similarities,
    :math:`l_i = \min(l_0, \max_j \tilde s_{ij}) - \epsilon` (so the most similar neighbor always
    keeps a non-zero weight) and :math:`u_i = l_i + u_0 (1 - l_i)`. Without SoftStep the log term
    is absent (plain NCA). Neighbors whose SoftStep weight is exactly 0 get logit ``finfo.min``.
    The training loss is the MSE of :math:`\hat y` over the batch.

    Parameters
    ----------
    in_features : int
        Embedding dimension d.
    target_dim : int, default 1
    similarity : Similarity, default NegSquaredL2()
    softstep : {None, "global", "instance"} or SoftStepParams, default None
    normalization : {"softmax", "sparsemax"}, default "softmax"
        ``"sparsemax"`` (Martins & Astudillo 2016, via the ``entmax`` package) gives exact zeros.
    softstep_init : (l0, u0, t), default (0.25, 0.5, 0.5)
        Initial SoftStep parameters, each in (0, 1).
    eps : float, default 1e-3
        The margin :math:`\epsilon` below the top neighbor.
    chunk_size, query_chunk_size : int
        Memory-bank and query block sizes at inference (peak memory ~ their product).
    sparsemax_candidates : int, default 2048
        Inference with sparsemax keeps this many most similar stored points per query (the
        support of sparsemax is small); a warning is issued when the support reaches it.

    Attributes
    ----------
    memory_z : Tensor (M, d), memory_y : Tensor (M, m)
        The memory bank (registered buffers: saved and loaded with the state dict).

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
                 softstep=None, normalization: str = "softmax",
                 softstep_init: tuple[float, float, float] = (0.25, 0.5, 0.5), eps: float = 1e-3,
                 chunk_size: int = 4096, query_chunk_size: int = 1024, sparsemax_candidates: int = 2048):
        super().__init__(in_features, target_dim, similarity, chunk_size, query_chunk_size)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")
        if not 0 <= eps < 1:
            raise ValueError(f"eps must be in [0, 1), got {eps}")
        if sparsemax_candidates < 1:
            raise ValueError(f"sparsemax_candidates must be >= 1, got {sparsemax_candidates}")
        self.softstep = make_softstep_params(softstep, in_features, softstep_init)
        self.normalization = normalization
        self.eps = eps
        self.min_gap = 1e-3
        self.sparsemax_candidates = sparsemax_candidates

    def extra_repr(self) -> str:
        kind = None if self.softstep is None else type(self.softstep).__name__
        return f"in_features={self.in_features}, target_dim={self.target_dim}, softstep={kind}, " \
               f"normalization={self.normalization!r}"

    # -- pieces -------------------------------------------------------------------------------
    def _logits(self, sim: Tensor, lo: Tensor | None, hi: Tensor | None, params, keep: Tensor | None) -> Tensor:
        if self.softstep is None:
            if keep is None:
                return sim
            return sim.masked_fill(~keep, _neg_big(sim.dtype))
        w = _softstep_weights(sim, lo, hi, params, self.eps, self.min_gap)
        return _masked_log_weight_logits(sim, w, keep)

    def _normalize(self, logits: Tensor) -> Tensor:
        if self.normalization == "softmax":
            return torch.softmax(logits, dim=-1)
        from entmax import sparsemax

        # sparsemax gives exactly 0 to anything more than 1 below the row max; replacing
        # finfo.min by (max - 2) keeps them at 0 without huge values in its cumulative sums
        neg = _neg_big(logits.dtype)
        valid = logits > neg
        row_max = logits.max(-1, keepdim=True).values.detach()
        return sparsemax(torch.where(valid, logits, row_max - 2.0), dim=-1)

    def neighbor_weights(self, z: Tensor) -> Tensor:
        """Training-time weights ``p`` (N, N) over the rest of the batch (diagonal = 0)."""
        n = z.shape[0]
        sim = self.similarity(z, z)
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        lo = hi = params = None
        if self.softstep is not None:
            lo, hi = self._others_min_max(sim, self_mask)
            params = self.softstep(z)
        return self._normalize(self._logits(sim, lo, hi, params, ~self_mask))

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        self._check_batch(z, y, self.target_dim)
        pred = self.neighbor_weights(z) @ y.to(z.dtype)
        mse = F.mse_loss(pred, y.to(z.dtype))
        return LossOutput(mse, {"mse": mse.detach()})

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        n = mz.shape[0]

        def sims(start: int, stop: int) -> Tensor:
            return self.similarity(zq, mz[start:stop])

        lo = hi = params = None
        if self.softstep is not None:
            lo, hi = streaming_row_min_max(sims, n, self.chunk_size)
            params = self.softstep(zq)
        if self.normalization == "softmax":
            return streaming_softmax_average(lambda a, b: self._logits(sims(a, b), lo, hi, params, None),
                                             my, self.chunk_size)
        # sparsemax: its support is among the most similar points (the SoftStep term is
        # increasing in the similarity, so the order is the same), so a bounded candidate set
        # from a streaming top-k is exact as long as the support is smaller than it
        k = min(self.sparsemax_candidates, n)
        cand, idx = streaming_topk(sims, n, k, self.chunk_size)
        p = self._normalize(self._logits(cand, lo, hi, params, None))
        if k < n and bool((p[:, -1] > 0).any()):
            warnings.warn(f"sparsemax support reached sparsemax_candidates={k}; predictions may be truncated",
                          RuntimeWarning, stacklevel=3)
        return torch.einsum("qk,qkm->qm", p, my[idx])


# --------------------------------------------------------------------------- differentiable kNN
class _KFraction(nn.Module):
    """``k / (neighbor-set size)`` in (0, 1): a global scalar or a per-instance linear layer."""

    def __init__(self, kind: str, in_features: int, init: float):
        super().__init__()
        _check_unit("k_init", init)
        if kind == "global":
            self.raw = nn.Parameter(torch.tensor(_logit(init)))
            self.linear = None
        elif kind == "instance":
            self.raw = None
            self.linear = nn.Linear(in_features, 1)
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.bias.fill_(_logit(init))
        else:
            raise ValueError(f"unknown k parameterization {kind!r}; expected 'global' or 'instance'")
        self.kind = kind

    def forward(self, z: Tensor) -> Tensor:
        if self.linear is None:
            return torch.sigmoid(self.raw.to(z.dtype)).reshape(1, 1)
        return torch.sigmoid(self.linear(z))


class DiffKNN(_NeighborHead):
    r"""Differentiable kNN regression head with a learned k (the paper's Algorithm 1).

    In a batch of N, with :math:`r_{ij}` = soft_rank(:math:`-s_{ij}`) - 1 (0-based; self pushed
    to the worst rank) and :math:`k_i = \max(\sigma(\theta_i) (N - 1), 1)`:

    .. math::

        p_i = \mathrm{softmax}_j\big(s_{ij} + \log w(r_{ij}; k_i)\big), \qquad
        \hat y_i = \sum_j p_{ij} y_j,

    where :math:`w` is the flipped SoftStep over ranks (:func:`knn_step_weights`: 1 up to k, 0
    beyond k + q, q = 4, t = 0.75). Soft ranks (Blondel et al. 2020) are computed on the
    row-wise min-max normalised similarities scaled by N - 1, so ``rank_strength`` is in units
    of the average gap between neighbors. If every neighbor's soft rank is above k (e.g. all
    points tied), k is raised to just above the best neighbor's rank so at least one neighbor
    keeps weight.

    **Memory-bank inference.** The learned quantity is the fraction :math:`\sigma(\theta)`; with
    M stored points the head keeps the :math:`\lfloor \max(\sigma(\theta)(M-1), 1) \rfloor + 1`
    most similar ones (hard ranks: the limit of soft ranks as the strength goes to 0) and takes
    the softmax of their similarities. The q-rank transition is dropped there, as it is a
    vanishing fraction of M; the selection is an exact streaming radix select, so peak memory
    does not depend on M.

    Parameters
    ----------
    in_features : int
    target_dim : int, default 1
    similarity : Similarity, default NegSquaredL2()
    k : {"global", "instance"}, default "global"
    k_init : float in (0, 1), default 0.1
        Initial fraction of the neighbor set kept.
    q : float, default 4.0
    t : float, default 0.75
    rank_strength : float, default 1.0
        Soft-rank regularization strength (in average-gap units).
    chunk_size, query_chunk_size : int
    """

    def __init__(self, in_features: int, target_dim: int = 1, *, similarity: Similarity | None = None,
                 k: str = "global", k_init: float = 0.1, q: float = 4.0, t: float = 0.75,
                 rank_strength: float = 1.0, chunk_size: int = 4096, query_chunk_size: int = 1024):
        super().__init__(in_features, target_dim, similarity, chunk_size, query_chunk_size)
        if not q > 0:
            raise ValueError(f"q must be > 0, got {q}")
        if not t > 0:
            raise ValueError(f"t must be > 0, got {t}")
        if not rank_strength > 0:
            raise ValueError(f"rank_strength must be > 0, got {rank_strength}")
        self.k_fraction = _KFraction(k, in_features, k_init)
        self.q, self.t, self.rank_strength = float(q), float(t), float(rank_strength)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, target_dim={self.target_dim}, k={self.k_fraction.kind!r}, " \
               f"q={self.q}, t={self.t}, rank_strength={self.rank_strength}"

    def neighbor_weights(self, z: Tensor) -> Tensor:
        """Training-time weights ``p`` (N, N) over the rest of the batch (diagonal = 0)."""
        n = z.shape[0]
        sim = self.similarity(z, z)
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        lo, hi = self._others_min_max(sim, self_mask)
        rng = (hi - lo).clamp_min(_range_floor(sim.dtype))[:, None]
        x = (hi[:, None] - sim) / rng * (n - 1)  # best neighbor 0, worst n - 1
        x = torch.where(self_mask, torch.full_like(x, float(n)), x)  # self: the worst rank
        ranks = soft_rank(x, self.rank_strength) - 1.0
        k = torch.clamp_min(self.k_fraction(z) * (n - 1), 1.0)
        best = ranks.masked_fill(self_mask, float("inf")).min(1, keepdim=True).values.detach()
        k = torch.maximum(k, best + 1e-3)
        k = torch.minimum(k, torch.full_like(k, float(n - 1)))
        w = knn_step_weights(ranks, k, n - 1, self.q, self.t)
        return torch.softmax(_masked_log_weight_logits(sim, w, ~self_mask), dim=-1)

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        self._check_batch(z, y, self.target_dim)
        pred = self.neighbor_weights(z) @ y.to(z.dtype)
        mse = F.mse_loss(pred, y.to(z.dtype))
        return LossOutput(mse, {"mse": mse.detach()})

    def kept_neighbors(self, zq: Tensor, memory_size: int) -> Tensor:
        """Number of stored points each query keeps at inference, ``floor(max(frac (M-1), 1)) + 1``
        capped at M (int64, shape (Q,))."""
        frac = self.k_fraction(zq).expand(zq.shape[0], 1)[:, 0]
        k = torch.clamp_min(frac * (memory_size - 1), 1.0).floor().to(torch.int64)
        return torch.clamp_max(k, memory_size - 1) + 1

    def _predict_chunk(self, zq: Tensor, mz: Tensor, my: Tensor) -> Tensor:
        n = mz.shape[0]

        def sims(start: int, stop: int) -> Tensor:
            return self.similarity(zq, mz[start:stop])

        kth = self.kept_neighbors(zq, n) - 1
        thr = streaming_kth_largest(sims, n, kth, self.chunk_size)
        neg = _neg_big(zq.dtype)

        def logits(start: int, stop: int) -> Tensor:
            s = sims(start, stop)
            return torch.where(float_order_keys(s) >= thr[:, None], s, torch.full_like(s, neg))

        return streaming_softmax_average(logits, my, self.chunk_size)
