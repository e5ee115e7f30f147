"""Ordinal Entropy (Zhang, Yang, et al., ICLR 2023): a label-distance-weighted diversity term
on feature centres plus a tightness term pulling features to their centres."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_batch, check_positive, zero_loss
from ..functional.distances import pairwise_distances
from .base import Regularizer

__all__ = ["OrdinalEntropy"]


class OrdinalEntropy(Regularizer):
    r"""Ordinal entropy regularizer: spread feature centres apart in proportion to their label
    distance, and tighten the features of one label around its centre.

    Samples are grouped by distinct target row (m-dimensional targets allowed); group centres
    :math:`c_k` are the mean features, :math:`p_k = c_k / \|c_k\|`. With label distances
    :math:`w_{kl} = \|y_k - y_l\|_2` min-max scaled as in the original code,
    :math:`\tilde w = (w - \min w) / \max w` over the pairs :math:`k < l`,

    .. math::

        L_d = -\operatorname{mean}_{k<l}\; \tilde w_{kl}\, \|p_k - p_l\|_2,\qquad
        L_t = \operatorname{mean}_{i:\, r_i > 0}\; r_i,\quad
        r_i = \big\| z_i/\|z_i\| - p_{k(i)} \big\|_2^2,

    and the penalty is :math:`L_d + \beta L_t` (Eqs. 5-7 of [1]_; the released age-estimation
    code, which this follows, uses :math:`\beta = 1`). With continuous targets every sample is
    its own group and :math:`L_t = 0`.

    Parameters
    ----------
    weight : float, default 1.0
        Weight of the regularizer (PH-Reg's coordinate benchmark uses 0.1).
    tightness_weight : float, default 1.0
        :math:`\beta`, >= 0.
    max_points : int or None, default None
        Subsample the batch (uniformly) before grouping; the original coordinate script
        sampled 80 of 100 points. ``None`` uses the whole batch.

    Notes
    -----
    Needs a batch of at least 3 (``ValueError`` otherwise). A batch with one distinct target
    has no pairs and gives only the tightness term.

    References
    ----------
    .. [1] S. Zhang, L. Yang, M. Bi Mi, X. Zheng, A. Yao. "Improving deep regression with
       ordinal entropy", ICLR 2023. https://github.com/needylove/OrdinalEntropy
    """

    name = "oe"

    def __init__(self, weight: float = 1.0, tightness_weight: float = 1.0, max_points: int | None = None):
        super().__init__(weight)
        if not (isinstance(tightness_weight, (int, float)) and tightness_weight >= 0):
            raise ValueError(f"tightness_weight must be >= 0, got {tightness_weight!r}")
        if max_points is not None:
            check_positive("max_points", max_points)
            if max_points < 3:
                raise ValueError(f"max_points must be >= 3 or None, got {max_points}")
        self.tightness_weight, self.max_points = float(tightness_weight), max_points

    def penalty(self, z: Tensor, y: Tensor) -> Tensor:
        check_batch("OrdinalEntropy", z, y)
        if self.max_points is not None and len(z) > self.max_points:
            idx = torch.randperm(len(z)).to(z.device)[: int(self.max_points)]
            z, y = z[idx], y[idx]
        values, inverse, counts = torch.unique(y, dim=0, return_inverse=True, return_counts=True)
        n_groups = len(values)
        centres = torch.zeros(n_groups, z.shape[1], dtype=z.dtype, device=z.device)
        centres = centres.index_add(0, inverse, z) / counts[:, None].to(z.dtype)
        p = F.normalize(centres, dim=1)
        total = zero_loss(z)
        if n_groups >= 2:
            iu = torch.triu_indices(n_groups, n_groups, offset=1, device=z.device)
            dist = pairwise_distances(p)[iu[0], iu[1]]
            w = pairwise_distances(values.to(z.dtype))[iu[0], iu[1]].detach()
            w = (w - w.min()) / w.max().clamp_min(torch.finfo(z.dtype).tiny)
            total = total - (dist * w).mean()
        if self.tightness_weight > 0 and n_groups < len(z):
            r = ((F.normalize(z, dim=1) - p[inverse]) ** 2).sum(dim=1)
            r = r[r > 0]
            if len(r):
                total = total + self.tightness_weight * r.mean()
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, tightness_weight={self.tightness_weight}, max_points={self.max_points}"
