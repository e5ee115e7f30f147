"""Predictive distributions of the codec and neighbor heads: weighted atoms with a kernel.

Two of the three head families compute a distribution over targets before they average it
away. A codec head predicts class probabilities :math:`\\pi(x)` over its decoder centres
:math:`\\mu_i`; a neighbor head predicts weights :math:`p_{ij}` over the stored targets
:math:`y_j`. Both are mixtures

.. math::

    F_x(y) = \\sum_{i=1}^{K} w_i(x)\\, K\\Big(\\frac{y - c_i}{h_i}\\Big),
    \\qquad \\sum_i w_i(x) = 1,

of atoms :math:`c_i` with weights :math:`w_i(x)` and one symmetric kernel of width :math:`h_i`:
a point mass (``"point"``), a uniform density on :math:`[c_i - h_i, c_i + h_i]`
(``"uniform"``: a histogram when the atoms are bin midpoints) or a Gaussian
:math:`\\mathcal{N}(c_i, h_i^2)` (``"gaussian"``). A width of 0 is a point mass whatever the
kernel. :class:`Mixture` holds such a distribution for N inputs and m target dimensions and
answers ``mean``, ``quantile``, ``interval``, ``cdf``, ``sample`` and ``crps``. Its mean is
:math:`\\sum_i w_i c_i`, the head's point prediction, because every kernel is centred.

**Targets with m > 1.** A :class:`Mixture` describes the m *marginals*: each method answers
per target dimension (shapes end in ``m``), and :meth:`Mixture.sample` draws each marginal
independently, so the samples are not joint draws.

The closed forms are written here rather than taken from a scoring-rule library
(``properscoring``, ``scoringrules``): the core must not depend on one, they work on torch
tensors, and only three kernels are needed. :meth:`Mixture.crps` uses

.. math::

    \\mathrm{CRPS}(F, y) = \\mathbb{E}|X - y| - \\tfrac12\\,\\mathbb{E}|X - X'|,
    \\qquad X, X' \\overset{iid}{\\sim} F

(Gneiting & Raftery 2007, eq. 21), with :math:`\\mathbb{E}|X - X'|` summed over pairs of atoms
(:math:`O(K \\log K)` for point masses by sorting).

References
----------
1. T. Gneiting, A. E. Raftery, "Strictly Proper Scoring Rules, Prediction, and Estimation",
   JASA 102(477), 2007.
2. C. Czado, T. Gneiting, L. Held, "Predictive Model Assessment for Count Data", Biometrics
   65(4), 2009 (the non-randomized PIT of discrete predictive distributions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["KERNELS", "Mixture", "NoDistributionError", "TargetGrid", "check_alpha", "check_levels"]

KERNELS = ("point", "uniform", "gaussian")
#: elements per block in the pairwise (K x K) CRPS term and the bisection of quantiles
_BLOCK_ELEMENTS = 1 << 22
_BISECT_STEPS = 60
#: how many kernel widths a Gaussian atom reaches for the quantile search bracket
_GAUSS_REACH = 9.0


class NoDistributionError(ValueError):
    """The head predicts a point, not a distribution (a linear or multiple-targets head)."""


def check_alpha(alpha: float) -> float:
    """``alpha`` (the miscoverage of a central interval) as a float in (0, 1), else ValueError."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in (0, 1) (e.g. 0.1 for a 90% interval), got {alpha!r}")
    return value


def check_levels(q, dtype: torch.dtype = torch.float64, device=None) -> tuple[Tensor, bool]:
    """Quantile levels as a 1-D tensor in (0, 1) and whether a scalar was given."""
    t = torch.as_tensor(q, dtype=dtype, device=device)
    if t.dim() > 1:
        raise ValueError(f"quantile levels must be a scalar or a 1-D sequence, got shape {tuple(t.shape)}")
    scalar = t.dim() == 0
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError("no quantile levels given")
    if not bool(((t > 0) & (t < 1)).all()):
        raise ValueError(f"quantile levels must be in (0, 1), got {t.tolist()}")
    return t, scalar


def _normal_cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.special.erfc(-z / math.sqrt(2.0))


def _abs_normal_mean(delta: Tensor, s: Tensor) -> Tensor:
    """:math:`\\mathbb{E}|D|` for :math:`D \\sim \\mathcal{N}(\\delta, s^2)`, ``|delta|`` where s = 0."""
    pos = s > 0
    s_ = torch.where(pos, s, torch.ones_like(s))
    z = delta / s_
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    val = s_ * (2.0 * pdf + z * (2.0 * _normal_cdf(z) - 1.0))
    return torch.where(pos, val, delta.abs())


def _abs_uniform_mean(d: Tensor, h: Tensor) -> Tensor:
    """:math:`\\mathbb{E}|U - y|` for :math:`U \\sim U[c - h, c + h]` and ``d = |y - c|``."""
    inside = d < h
    h_ = torch.where(inside, h, torch.ones_like(h))
    return torch.where(inside, (h_ * h_ + d * d) / (2.0 * h_), d)


def _abs_uniform_pair(delta: Tensor, h1: Tensor, h2: Tensor) -> Tensor:
    """:math:`\\mathbb{E}|U_1 - U_2|` for independent :math:`U_k \\sim U[c_k - h_k, c_k + h_k]`,
    ``delta = c_1 - c_2``; any width may be 0 (a point mass).

    For overlapping supports, with :math:`H(t) = |t|^3 / 6` (so :math:`H'' = |t|`),
    :math:`\\iint |x - x'| = H(\\delta + h_1 + h_2) + H(\\delta - h_1 - h_2) - H(\\delta + h_1 - h_2)
    - H(\\delta - h_1 + h_2)`, divided by :math:`4 h_1 h_2`.
    """
    d = delta.abs()
    both = (h1 > 0) & (h2 > 0) & (d < h1 + h2)
    one1 = _abs_uniform_mean(d, h1)  # U_1 against the point c_2 (h2 = 0)
    one2 = _abs_uniform_mean(d, h2)
    a = torch.where(both, h1, torch.ones_like(h1))
    b = torch.where(both, h2, torch.ones_like(h2))

    def H(t: Tensor) -> Tensor:
        return t.abs() ** 3 / 6.0

    full = (H(d + a + b) + H(d - a - b) - H(d + a - b) - H(d - a + b)) / (4.0 * a * b)
    out = torch.where(h2 == 0, one1, one2)  # one width is 0 (or both: both formulas give d)
    out = torch.where((h1 > 0) & (h2 > 0), torch.where(both, full, d), out)
    return out


class Mixture:
    """A weighted-atoms distribution with a kernel, for N inputs and m target dimensions.

    Parameters
    ----------
    weights : Tensor, broadcastable to (N, m, K)
        Non-negative, summing to 1 over the last axis (rows are renormalised; a row that sums
        to 0 raises ValueError).
    locs : Tensor, broadcastable to (N, m, K)
        Atom positions :math:`c_i` (any order).
    kernel : {"point", "uniform", "gaussian"}, default "point"
    scale : Tensor or float, broadcastable to (N, m, K), default 0
        Kernel widths :math:`h_i \\ge 0`: the half-width of a uniform kernel or the standard
        deviation of a Gaussian one (0 is a point mass). Ignored for ``"point"``.

    All tensors are broadcast (views, no copy) and kept in float64 on the weights' device.
    Methods return float64 tensors of shape ``(N, m)`` (or ``(N, m, L)`` for L levels).

    Examples
    --------
    >>> hist = Mixture(torch.tensor([[0.5, 0.5]]), torch.tensor([0.25, 0.75]), "uniform", 0.25)
    >>> hist.cdf(torch.tensor([[0.5]])).item()   # U[0, 1]
    0.5
    >>> round(hist.quantile(0.9).item(), 6)
    0.9
    """

    def __init__(self, weights: Tensor, locs: Tensor, kernel: str = "point", scale: Tensor | float = 0.0):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
        w = torch.as_tensor(weights)
        dev = w.device
        w = w.to(torch.float64)
        c = torch.as_tensor(locs, device=dev).to(torch.float64)
        h = torch.as_tensor(0.0 if kernel == "point" else scale, device=dev).to(torch.float64)
        w = w[None, None] if w.dim() == 1 else (w[:, None] if w.dim() == 2 else w)
        c = c[None, None] if c.dim() == 1 else (c[None] if c.dim() == 2 else c)
        h = h[None, None] if h.dim() == 1 else (h[None] if h.dim() == 2 else h)
        if w.dim() != 3 or c.dim() != 3 or h.dim() not in (0, 3):
            raise ValueError(f"weights, locs and scale must broadcast to (N, m, K); got shapes "
                             f"{tuple(w.shape)}, {tuple(c.shape)}, {tuple(h.shape)}")
        try:
            shape = torch.broadcast_shapes(w.shape, c.shape, h.shape)
        except RuntimeError:
            raise ValueError(f"weights {tuple(w.shape)}, locs {tuple(c.shape)} and scale {tuple(h.shape)} "
                             "do not broadcast to one (N, m, K) shape") from None
        if shape[-1] < 1:
            raise ValueError("a mixture needs at least one atom")
        for name, t in (("weights", w), ("locs", c), ("scale", h)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contain NaN or inf values")
        if bool((w < 0).any()):
            raise ValueError("weights must be >= 0")
        if bool((h < 0).any()):
            raise ValueError("kernel widths (scale) must be >= 0")
        total = w.sum(-1, keepdim=True)
        if bool((total <= 0).any()):
            raise ValueError("every row of weights needs a positive sum")
        self.kernel = kernel
        self.weights = (w / total).expand(shape)
        self.locs = c.expand(shape)
        self.scale = h.expand(shape)

    # ------------------------------------------------------------------ shape
    @property
    def batch_shape(self) -> tuple[int, int]:
        """``(N, m)``."""
        return tuple(self.weights.shape[:2])  # type: ignore[return-value]

    @property
    def n_atoms(self) -> int:
        return int(self.weights.shape[-1])

    def __len__(self) -> int:
        return self.batch_shape[0]

    def __repr__(self) -> str:
        n, m = self.batch_shape
        return f"Mixture(N={n}, m={m}, atoms={self.n_atoms}, kernel={self.kernel!r})"

    def _rows(self, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.weights[start:stop], self.locs[start:stop], self.scale[start:stop]

    def _row_block(self, per_row: int) -> int:
        return max(1, _BLOCK_ELEMENTS // max(1, per_row))

    def _as_points(self, y, what: str = "y") -> Tensor:
        """``y`` as float64 (N, m) (or (N, m, L)) on the mixture's device."""
        n, m = self.batch_shape
        t = torch.as_tensor(y, device=self.weights.device).to(torch.float64)
        if t.dim() == 1 and m == 1 and t.shape[0] == n:
            t = t[:, None]
        if t.dim() not in (2, 3) or tuple(t.shape[:2]) != (n, m):
            raise ValueError(f"expected {what} of shape ({n}, {m}) (or ({n}, {m}, L)), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what} contains NaN or inf values")
        return t

    # ------------------------------------------------------------------ moments
    @property
    def mean(self) -> Tensor:
        """:math:`\\sum_i w_i c_i`, shape (N, m): the head's point prediction."""
        return (self.weights * self.locs).sum(-1)

    @property
    def variance(self) -> Tensor:
        """:math:`\\sum_i w_i (c_i^2 + v_i) - \\bar y^2` with the kernel variance :math:`v_i`
        (:math:`h^2/3` uniform, :math:`h^2` Gaussian), shape (N, m)."""
        kvar = {"point": 0.0, "uniform": 1.0 / 3.0, "gaussian": 1.0}[self.kernel] * self.scale ** 2
        second = (self.weights * (self.locs ** 2 + kvar)).sum(-1)
        return (second - self.mean ** 2).clamp_min(0.0)

    # ------------------------------------------------------------------ cdf
    def _kernel_cdf(self, y: Tensor, c: Tensor, h: Tensor, left: bool) -> Tensor:
        """Per-atom cdf at ``y`` (..., 1) for atoms ``c, h`` (..., K)."""
        point = (y > c) if left else (y >= c)
        point = point.to(torch.float64)
        if self.kernel == "point":
            return point
        pos = h > 0
        h_ = torch.where(pos, h, torch.ones_like(h))
        if self.kernel == "uniform":
            val = ((y - (c - h_)) / (2.0 * h_)).clamp(0.0, 1.0)
        else:
            val = _normal_cdf((y - c) / h_)
        return torch.where(pos, val, point)

    def _cdf(self, y: Tensor, left: bool) -> Tensor:
        t = self._as_points(y)
        squeeze = t.dim() == 2
        t = t[..., None] if squeeze else t  # (N, m, L)
        L, K = t.shape[-1], self.n_atoms
        out = []
        step = self._row_block(self.batch_shape[1] * L * K)
        for s in range(0, len(self), step):
            w, c, h = self._rows(s, s + step)
            k = self._kernel_cdf(t[s:s + step, :, :, None], c[:, :, None], h[:, :, None], left)
            out.append((w[:, :, None] * k).sum(-1))
        res = torch.cat(out) if out else t.new_zeros(t.shape)
        res = res.clamp(0.0, 1.0)
        return res[..., 0] if squeeze else res

    def cdf(self, y) -> Tensor:
        """:math:`F(y) = P(Y \\le y)`; ``y`` of shape (N, m) -> (N, m), or (N, m, L) -> (N, m, L)."""
        return self._cdf(y, left=False)

    def cdf_left(self, y) -> Tensor:
        """:math:`F(y^-) = P(Y < y)` (differs from :meth:`cdf` only at a point mass)."""
        return self._cdf(y, left=True)

    # ------------------------------------------------------------------ quantiles
    def quantile(self, q) -> Tensor:
        """The lower quantile :math:`F^{-1}(q) = \\min\\{y : F(y) \\ge q\\}`.

        ``q`` in (0, 1): a float -> (N, m), a 1-D sequence of L levels -> (N, m, L); monotone in
        q. Point masses: exact (sorted atoms and cumulative weights). Uniform and Gaussian
        kernels: bisection on the cdf to about 1e-15 of the support's extent.
        """
        levels, scalar = check_levels(q, device=self.weights.device)
        out = self._quantile_points(levels) if self.kernel == "point" else self._quantile_bisect(levels)
        return out[..., 0] if scalar else out

    def _quantile_points(self, levels: Tensor) -> Tensor:
        c, order = self.locs.sort(-1)
        cum = self.weights.gather(-1, order).cumsum(-1)
        cum = cum / cum[..., -1:]
        # the first atom whose cumulative weight reaches q (a 1e-12 slack for rounding in cumsum)
        target = (levels - 1e-12).expand(*cum.shape[:2], -1).contiguous()
        idx = torch.searchsorted(cum.contiguous(), target).clamp_max(self.n_atoms - 1)
        return c.gather(-1, idx)

    def _quantile_bisect(self, levels: Tensor) -> Tensor:
        reach = 1.0 if self.kernel == "uniform" else _GAUSS_REACH
        lo = (self.locs - reach * self.scale).min(-1).values
        hi = (self.locs + reach * self.scale).max(-1).values
        L, K = levels.numel(), self.n_atoms
        out = []
        step = self._row_block(self.batch_shape[1] * L * K)
        for s in range(0, len(self), step):
            w, c, h = self._rows(s, s + step)
            a = lo[s:s + step, :, None].expand(-1, -1, L).clone()
            b = hi[s:s + step, :, None].expand(-1, -1, L).clone()
            for _ in range(_BISECT_STEPS):
                mid = 0.5 * (a + b)
                F = (w[:, :, None] * self._kernel_cdf(mid[..., None], c[:, :, None], h[:, :, None], False)).sum(-1)
                below = F < levels
                a = torch.where(below, mid, a)
                b = torch.where(below, b, mid)
            out.append(b)
        return torch.cat(out) if out else lo[..., None].expand(-1, -1, L)

    def interval(self, alpha: float) -> Tensor:
        """The central interval :math:`[F^{-1}(\\alpha/2), F^{-1}(1 - \\alpha/2)]`, shape (N, m, 2);
        ``alpha`` in (0, 1) (0.1 for a 90% interval), else ValueError."""
        a = check_alpha(alpha)
        return self.quantile([a / 2.0, 1.0 - a / 2.0])

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of each marginal, shape (n, N, m) (independent across the m dimensions)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        N, m = self.batch_shape
        K = self.n_atoms
        flat_w = self.weights.reshape(N * m, K)
        idx = torch.multinomial(flat_w, n, replacement=True, generator=generator)  # (N m, n)
        c = self.locs.reshape(N * m, K).gather(1, idx)
        h = self.scale.reshape(N * m, K).gather(1, idx)
        if self.kernel == "uniform":
            u = torch.rand(c.shape, dtype=c.dtype, device=c.device, generator=generator)
            c = c + (2.0 * u - 1.0) * h
        elif self.kernel == "gaussian":
            c = c + h * torch.randn(c.shape, dtype=c.dtype, device=c.device, generator=generator)
        return c.reshape(N, m, n).permute(2, 0, 1)

    # ------------------------------------------------------------------ scoring
    def crps(self, y) -> Tensor:
        """The continuous ranked probability score at observations ``y`` (N, m) -> (N, m).

        :math:`\\mathrm{CRPS}(F, y) = \\int (F(t) - 1\\{t \\ge y\\})^2 dt
        = \\mathbb{E}|X - y| - \\frac12 \\mathbb{E}|X - X'|` (lower is better; the absolute
        error for a point mass). Exact for all three kernels.
        """
        t = self._as_points(y)
        if t.dim() != 2:
            raise ValueError(f"crps takes one observation per (N, m) entry, got shape {tuple(t.shape)}")
        w, c, h = self.weights, self.locs, self.scale
        d = (c - t[..., None]).abs()
        if self.kernel == "point":
            first = (w * d).sum(-1)
            cs, order = c.sort(-1)
            ws = w.gather(-1, order)
            cum = ws.cumsum(-1)
            # sum_{i,j} w_i w_j |c_i - c_j| = 2 sum_i w_i c_i (2 C_i - w_i - 1) over sorted atoms
            pair = 2.0 * (ws * cs * (2.0 * cum - ws - 1.0)).sum(-1)
            return (first - 0.5 * pair).clamp_min(0.0)
        first = (w * (_abs_uniform_mean(d, h) if self.kernel == "uniform" else _abs_normal_mean(d, h))).sum(-1)
        K = self.n_atoms
        pairs = []
        step = self._row_block(self.batch_shape[1] * K * K)
        for s in range(0, len(self), step):
            wb, cb, hb = self._rows(s, s + step)
            delta = cb[..., :, None] - cb[..., None, :]
            if self.kernel == "uniform":
                e = _abs_uniform_pair(delta, hb[..., :, None], hb[..., None, :])
            else:
                e = _abs_normal_mean(delta, torch.sqrt(hb[..., :, None] ** 2 + hb[..., None, :] ** 2))
            pairs.append(torch.einsum("nmi,nmij,nmj->nm", wb, e, wb))
        pair = torch.cat(pairs)
        return (first - 0.5 * pair).clamp_min(0.0)

    # ------------------------------------------------------------------ transforms
    def affine(self, scale, offset) -> Mixture:
        """The distribution of :math:`a Y + b` per target dimension, ``a >= 0`` and ``b`` of shape
        (m,) (or scalars): how a front end maps [0, 1]-scaled targets back to the user's units.
        ``a = 0`` gives a point mass at ``b`` (a constant target column)."""
        m = self.batch_shape[1]
        a = torch.as_tensor(scale, device=self.weights.device).to(torch.float64).reshape(-1)
        b = torch.as_tensor(offset, device=self.weights.device).to(torch.float64).reshape(-1)
        if a.numel() not in (1, m) or b.numel() not in (1, m):
            raise ValueError(f"scale and offset must be scalars or have {m} entries, got {a.numel()}, {b.numel()}")
        if bool((a < 0).any()) or not bool(torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ValueError("affine needs a finite scale >= 0 and a finite offset")
        a, b = a[None, :, None], b[None, :, None]
        kernel = self.kernel
        return Mixture(self.weights, self.locs * a + b, kernel, self.scale * a)

    def with_kernel(self, kernel: str, scale) -> Mixture:
        """The same atoms and weights with another kernel (e.g. Gaussian smoothing of width
        ``scale`` around neighbor targets)."""
        return Mixture(self.weights, self.locs, kernel, scale)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_quantiles(cls, levels: Sequence[float] | Tensor, values: Tensor) -> Mixture:
        """The distribution whose quantile function interpolates ``values`` at ``levels``.

        ``levels`` (L,) ascending in (0, 1); ``values`` (N, L) or (N, m, L), sorted along the
        last axis (sorted here if not: crossing quantiles are rearranged, Chernozhukov et al.
        2010). Between consecutive levels the mass :math:`\\tau_{l+1} - \\tau_l` is spread
        uniformly over :math:`[q_l, q_{l+1}]` (a piecewise-linear cdf through every given
        point, so ``quantile(levels) == values``); the tails, :math:`\\tau_1` and
        :math:`1 - \\tau_L`, are point masses at :math:`q_1` and :math:`q_L`. Used for peers
        that output quantiles (quantile forests, conformal intervals).
        """
        lv, _ = check_levels(levels)
        v = torch.as_tensor(values).to(torch.float64)
        if v.dim() == 2:
            v = v[:, None]
        if v.dim() != 3 or v.shape[-1] != lv.numel():
            raise ValueError(f"values must be (N, L) or (N, m, L) with L = {lv.numel()} levels, got {tuple(v.shape)}")
        if not bool((lv[1:] > lv[:-1]).all()):
            raise ValueError("levels must be strictly increasing")
        lv = lv.to(v.device)
        v = v.sort(-1).values
        mids = 0.5 * (v[..., 1:] + v[..., :-1])
        halfs = 0.5 * (v[..., 1:] - v[..., :-1])
        shape = (*v.shape[:2], 1)
        locs = torch.cat([v[..., :1], mids, v[..., -1:]], -1)
        scale = torch.cat([torch.zeros(shape, dtype=v.dtype, device=v.device), halfs,
                           torch.zeros(shape, dtype=v.dtype, device=v.device)], -1)
        mass = torch.cat([lv[:1], lv[1:] - lv[:-1], 1.0 - lv[-1:]])
        return cls(mass.expand_as(locs), locs, "uniform", scale)


class TargetGrid:
    """A grid of at most G atoms per target dimension for the targets of a memory bank.

    A neighbor head's distribution is :math:`\\sum_j p_{ij} \\delta_{y_j}` over M stored
    targets. Kept exactly it would be a (N, M) matrix; instead each target is spread over the
    two grid atoms around it with linear weights (``y = (1 - f) g_l + f g_{l+1}``), so the
    distribution becomes G weights per query that keep its mean exactly and move no mass by
    more than one grid gap. When a dimension has at most G distinct targets the grid is those
    values and the distribution is exact. Otherwise the grid is G quantiles of the stored
    targets (so each gap holds about 1/G of them).

    Parameters
    ----------
    y : Tensor, shape (M, m)
    n_atoms : int, default 128
        G, at least 2.

    Attributes
    ----------
    locs : Tensor (m, G)
        Ascending atoms per dimension (padded with the last atom, which then carries no mass).
    lower : Tensor (M, m), int64
    frac : Tensor (M, m)
        Target ``j`` puts weight ``1 - frac`` on atom ``lower`` and ``frac`` on ``lower + 1``.
    discrete_gap : Tensor (m,)
        For a dimension with at most G distinct targets (an exact grid: a discrete target such as
        a rating or a count), the smallest gap between two of them; 0 for the other dimensions
        (quantile atoms) and for a single distinct value.
    """

    def __init__(self, y: Tensor, n_atoms: int = 128):
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, int) or n_atoms < 2:
            raise ValueError(f"n_atoms must be an int >= 2, got {n_atoms!r}")
        if y.dim() != 2 or y.shape[0] < 1:
            raise ValueError(f"expected targets of shape (M, m) with M >= 1, got {tuple(y.shape)}")
        y64 = y.detach().to(torch.float64)
        M, m = y64.shape
        G = n_atoms
        locs = torch.empty(m, G, dtype=torch.float64, device=y.device)
        lower = torch.empty(M, m, dtype=torch.int64, device=y.device)
        frac = torch.empty(M, m, dtype=torch.float64, device=y.device)
        gaps = torch.zeros(m, dtype=torch.float64, device=y.device)
        for d in range(m):
            col = y64[:, d]
            grid = torch.unique(col)
            if 1 < grid.numel() <= G:
                gaps[d] = grid.diff().min()
            if grid.numel() > G:
                qs = torch.linspace(0.0, 1.0, G, dtype=torch.float64, device=y.device)
                grid = torch.unique(col.sort().values[(qs * (M - 1)).round().long()])  # includes min, max
            g = grid.numel()
            if g == 1:
                low, f = torch.zeros(M, dtype=torch.int64, device=y.device), torch.zeros(M, dtype=torch.float64,
                                                                                      device=y.device)
            else:
                low = (torch.searchsorted(grid, col.contiguous(), right=True) - 1).clamp(0, g - 2)
                f = ((col - grid[low]) / (grid[low + 1] - grid[low])).clamp(0.0, 1.0)
            locs[d, :g] = grid
            locs[d, g:] = grid[-1]
            lower[:, d], frac[:, d] = low, f
        self.locs, self.lower, self.frac, self.discrete_gap = locs, lower, frac, gaps
        self._codes: dict[torch.dtype, Tensor] = {}

    @property
    def n_atoms(self) -> int:
        return int(self.locs.shape[1])

    def codes(self, dtype: torch.dtype | None = None) -> Tensor:
        """Each stored target as grid weights, a dense (M, m * G) matrix (row-major over (m, G)):
        the values a neighbor head averages to get its grid weights. Memory M m G (built once
        per dtype and kept)."""
        key = dtype or torch.float64
        if key not in self._codes:
            self._codes[key] = self._dense_codes(key)
        return self._codes[key]

    def _dense_codes(self, dtype: torch.dtype) -> Tensor:
        M, m = self.lower.shape
        G = self.n_atoms
        out = torch.zeros(M, m, G, dtype=dtype, device=self.locs.device)
        out.scatter_add_(2, self.lower[..., None], (1.0 - self.frac)[..., None].to(out.dtype))
        upper = (self.lower + 1).clamp_max(G - 1)
        out.scatter_add_(2, upper[..., None], self.frac[..., None].to(out.dtype))
        return out.reshape(M, m * G)

    def scatter(self, p: Tensor, idx: Tensor) -> Tensor:
        """Grid weights (Q, m, G) of sparse neighbor weights ``p`` (Q, K) on memory rows ``idx`` (Q, K)."""
        Q = p.shape[0]
        m, G = self.locs.shape
        out = torch.zeros(Q, m, G, dtype=torch.float64, device=p.device)
        p64 = p.to(torch.float64)
        for d in range(m):
            low = self.lower[idx, d]
            f = self.frac[idx, d]
            out[:, d].scatter_add_(1, low, p64 * (1.0 - f))
            out[:, d].scatter_add_(1, (low + 1).clamp_max(G - 1), p64 * f)
        return out

    def mixture(self, grid_weights: Tensor, bandwidth: float | str | None = None) -> Mixture:
        """The :class:`Mixture` of grid weights (Q, m, G): atoms, or Gaussian kernels of standard
        deviation ``bandwidth`` (in target units) around them.

        ``bandwidth="auto"`` smooths discrete targets only: a Gaussian of standard deviation half
        the smallest gap (:attr:`discrete_gap`) on each dimension with at most G distinct targets,
        point masses on the others. Why: on a discrete target the point-mass quantiles land on
        the target values themselves, so many conformity scores
        :math:`\\max(\\hat q_{lo} - y, y - \\hat q_{hi})` tie at 0 and CQR cannot move the interval
        (on wine quality, 7 levels, 31% of the calibration scores were exactly 0: coverage 0.965
        at nominal 0.90 before and after calibration). The kernel makes the quantiles continuous
        and the scores distinct, and CQR then reaches the nominal level.
        """
        w = grid_weights.to(torch.float64).clamp_min(0.0)
        if bandwidth is None:
            return Mixture(w, self.locs[None], "point")
        if isinstance(bandwidth, str):
            if bandwidth != "auto":
                raise ValueError(f"bandwidth must be a float >= 0, 'auto' or None, got {bandwidth!r}")
            return Mixture(w, self.locs[None], "gaussian", (0.5 * self.discrete_gap)[None, :, None])
        if not bandwidth >= 0:
            raise ValueError(f"bandwidth must be >= 0 or None, got {bandwidth}")
        return Mixture(w, self.locs[None], "gaussian", float(bandwidth))
