"""PH-Reg (Zhang, Kawaguchi, Yao, ICML 2024): topology-preserving regularization with 0-dimensional
persistent homology (minimum spanning trees) of the feature and target point clouds."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..checks import check_batch, zero_loss
from ..functional.distances import pairwise_distances
from .base import Regularizer

__all__ = ["PHReg", "mst_edges"]


def mst_edges(dist: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(rows, cols)`` of a minimum spanning tree of the complete graph with weights
    ``dist`` (n, n) -- the persistence pairs of 0-dimensional Vietoris-Rips persistence (each
    MST edge kills one connected component at a death time equal to its length).

    Computed with :func:`scipy.sparse.csgraph.minimum_spanning_tree` on a detached float64
    copy. A small constant is added to all off-diagonal weights first, because scipy reads
    zero weights (duplicated points) as missing edges; a constant shift does not change the MST.
    """
    from scipy.sparse import csr_matrix  # here, not at the top: ``import beyondmse`` stays light
    from scipy.sparse.csgraph import minimum_spanning_tree

    d = dist.detach().to("cpu", torch.float64).numpy()
    n = d.shape[0]
    shift = 1e-9 * max(float(d.max()), 0.0) + 1e-300
    # upper triangle as an explicit sparse matrix: scipy's dense path drops near-zero weights
    tree = minimum_spanning_tree(csr_matrix(np.triu(d + shift, k=1))).tocoo()
    if tree.nnz != n - 1:  # pragma: no cover - cannot happen for a complete positive graph
        raise RuntimeError(f"minimum spanning tree has {tree.nnz} edges for {n} points")
    return tree.row.astype(np.int64), tree.col.astype(np.int64)


def _max_norm_scaled_distances(x: Tensor) -> Tensor:
    """Distances of ``x / max_i ||x_i||`` (the original code's normalisation)."""
    scale = x.norm(dim=1).max().clamp_min(torch.finfo(x.dtype).tiny)
    return pairwise_distances(x / scale)


class PHReg(Regularizer):
    r"""PH-Reg: preserve the target space's topology in the feature space (Eq. 5 of [1]_).

    Two terms on a batch of features ``z`` (N, d) and targets ``y`` (N, m):

    * **Topological-autoencoder term** :math:`L_t` (Moor et al. 2020), on 0-dimensional
      persistence: with distance matrices :math:`A^Z, A^Y` of the point sets scaled by their
      largest norm, and :math:`\pi^Z, \pi^Y` the edges of their minimum spanning trees,

      .. math::

          L_t = \operatorname{mean}\big(A^Y[\pi^Y] - A^Z[\pi^Y]\big)^2
              + \operatorname{mean}\big(A^Z[\pi^Z] - A^Y[\pi^Z]\big)^2 .

    * **Intrinsic-dimension term** :math:`L_d`: for point subsets of sizes
      :math:`n \in \{n_1, n_2, \dots\}`, :math:`E(n) = E^Z_0(n) / E^Y_0(n)` is the ratio of
      the total MST lengths (sums of 0-dim persistence) of features and targets;
      :math:`L_d = |\text{slope}|` of the least-squares line of :math:`\log E` on
      :math:`\log n` -- the difference of the persistent-homology dimensions of the two sets,
      driven to zero.

    The penalty is ``topo_weight * L_t + dim_weight * L_d``. The MSTs are found on detached
    matrices with scipy; gradients flow through the selected feature distances only.
    m-dimensional targets are supported directly (the original uses them for coordinates).

    Parameters
    ----------
    weight : float, default 1.0
    topo_weight : float, default 1.0
        :math:`\lambda_t` (the paper's coordinate benchmark: 100; mammoth 10,000).
    dim_weight : float, default 1.0
        :math:`\lambda_d` (coordinate benchmark: 1).
    max_points : int, default 80
        Subsample size for :math:`L_t` and the largest subset size for :math:`L_d`
        (batches smaller than this are used whole).
    min_points, point_jump : int, default 19, 20
        Subset sizes of :math:`L_d` are ``range(min_points, max_points, point_jump)``, clipped
        to the batch; with fewer than two sizes left :math:`L_d` is skipped (zero). The
        defaults (19, 39, 59, 79) are those of the released coordinate script.

    Notes
    -----
    Needs a batch of at least 3 (``ValueError`` otherwise). Subsamples come from torch's
    global RNG, so seeded training is deterministic.

    References
    ----------
    .. [1] S. Zhang, K. Kawaguchi, A. Yao. "Deep regression representation learning with
       topology", ICML 2024. https://github.com/needylove/PH-Reg
    """

    name = "ph-reg"

    def __init__(self, weight: float = 1.0, topo_weight: float = 1.0, dim_weight: float = 1.0,
                 max_points: int = 80, min_points: int = 19, point_jump: int = 20):
        super().__init__(weight)
        for label, v in (("topo_weight", topo_weight), ("dim_weight", dim_weight)):
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"{label} must be a finite number >= 0, got {v!r}")
        for label, v in (("max_points", max_points), ("min_points", min_points)):
            if not (isinstance(v, int) and v >= 3):
                raise ValueError(f"{label} must be an int >= 3, got {v!r}")
        if not (isinstance(point_jump, int) and point_jump >= 1):
            raise ValueError(f"point_jump must be an int >= 1, got {point_jump!r}")
        self.topo_weight, self.dim_weight = float(topo_weight), float(dim_weight)
        self.max_points, self.min_points, self.point_jump = max_points, min_points, point_jump

    def topological_term(self, z: Tensor, y: Tensor) -> Tensor:
        """:math:`L_t` on the whole of ``z``, ``y``."""
        az = _max_norm_scaled_distances(z)
        ay = _max_norm_scaled_distances(y.to(z.dtype)).detach()
        ry, cy = (torch.as_tensor(a, device=z.device) for a in mst_edges(ay))
        rz, cz = (torch.as_tensor(a, device=z.device) for a in mst_edges(az))
        return ((ay[ry, cy] - az[ry, cy]) ** 2).mean() + ((az[rz, cz] - ay[rz, cz]) ** 2).mean()

    def dimension_term(self, z: Tensor, y: Tensor) -> Tensor:
        """:math:`L_d` with random subsets of ``z``, ``y``; zero if fewer than two sizes fit."""
        sizes = [s for s in range(self.min_points, self.max_points, self.point_jump) if s <= len(z)]
        if len(sizes) < 2:
            return zero_loss(z)
        tiny = torch.finfo(z.dtype).tiny
        log_ratios = []
        for s in sizes:
            idx = torch.randperm(len(z)).to(z.device)[:s]
            dz = pairwise_distances(z[idx])
            dy = pairwise_distances(y[idx].to(z.dtype)).detach()
            ez = dz[tuple(torch.as_tensor(a, device=z.device) for a in mst_edges(dz))].sum()
            ey = dy[tuple(torch.as_tensor(a, device=z.device) for a in mst_edges(dy))].sum()
            log_ratios.append(ez.clamp_min(tiny).log() - ey.clamp_min(tiny).log())
        ly = torch.stack(log_ratios)
        lx = torch.tensor(sizes, dtype=z.dtype, device=z.device).log()
        k = len(sizes)
        slope = (k * (lx * ly).sum() - lx.sum() * ly.sum()) / (k * (lx ** 2).sum() - lx.sum() ** 2)
        return slope.abs()

    def penalty(self, z: Tensor, y: Tensor) -> Tensor:
        check_batch("PHReg", z, y)
        total = zero_loss(z)
        if self.topo_weight > 0:
            zt, yt = z, y
            if len(z) > self.max_points:
                idx = torch.randperm(len(z)).to(z.device)[: self.max_points]
                zt, yt = z[idx], y[idx]
            total = total + self.topo_weight * self.topological_term(zt, yt)
        if self.dim_weight > 0:
            total = total + self.dim_weight * self.dimension_term(z, y)
        return total

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, topo_weight={self.topo_weight}, dim_weight={self.dim_weight}, "
                f"max_points={self.max_points}")
