"""Codec heads: regression as classification with a target encoder and a decoder.

The model of Stewart, Bach & Berthet [1, 2]: a target encoder :math:`\\psi : \\mathbb{R}^m \\to
\\Delta_k`, a classifier :math:`\\pi_\\theta(x) = \\mathrm{softmax}(g_\\theta(x))` (the trunk
followed by the k-way linear layer ``g`` of this head), a decoder :math:`\\mu \\in
\\mathbb{R}^{k \\times m}` and the prediction :math:`\\hat y = \\mu^\\top \\pi_\\theta(x)`.

:class:`Codec` is the base class; each codec is a subclass that overrides two hooks: the
encoder ``_encode`` behind :meth:`Codec.encode` (the soft labels :math:`\\psi(y)` of clipped
targets) and :meth:`Codec.objective` (the training loss given the classifier's logits; by
default the KL to the soft labels). Nothing in ``forward`` or ``loss`` switches on a name.
Build one by name with :meth:`Codec.for_mode` (the registry :data:`CODECS` maps names to
classes):

====================  ===============================================  ===================
name (class)          training objective                               decoder ``mu``
====================  ===============================================  ===================
``ls-softmax``        :math:`L(y - \\mu^\\top\\pi)` only                 learned
(:class:`LSSoftmax`)
``hard-bin``          cross-entropy to the nearest bin (= its KL)      bin midpoints, fixed
(:class:`HardBin`)
``soft-bin``          :math:`\\mathrm{KL}(\\psi(y)\\|\\pi)`, Gaussian psi    centers, fixed
(:class:`SoftBin`)
``hl-gauss``          :math:`\\mathrm{KL}(p_{HL}(y)\\|\\pi)` [3, 4]         bin midpoints, fixed
(:class:`HLGauss`)
``trained-codec``     stage 1 fits (psi, mu) on targets, then KL        stage-1 mu, fixed
(:class:`TrainedCodec`)
``e2e-codec``         the end-to-end objective below                   learned
(:class:`EndToEndCodec`)
====================  ===============================================  ===================

The Gaussian encoder (soft-bin, trained and end-to-end codecs) is the class posterior of a
mixture with isotropic class-conditionals :math:`\\mathcal{N}(c_i, \\sigma^2 I)` and log prior
weights :math:`\\beta_i` ([1], eqs. 3-5):

.. math::

    \\psi(y)_i = \\mathrm{softmax}_i\\Big(\\beta_i - \\frac{\\|y - c_i\\|^2}{2\\sigma^2}\\Big),

which for a fixed :math:`\\sigma` is exactly the affine family
:math:`\\mathrm{softmax}(W y + b)` of [1], eq. 5, with :math:`W_i = c_i / \\sigma^2` and
:math:`b_i = \\beta_i - \\|c_i\\|^2 / 2\\sigma^2` (:meth:`GaussianCodec.encoder_affine`).

References
----------
1. L. Stewart, F. Bach, Q. Berthet, "Beyond Binning: Soft Task Reformulation for Deep
   Regression", AISTATS 2026.
2. L. Stewart, F. Bach, Q. Berthet, "Building Bridges between Regression, Clustering, and
   Classification", 2025. https://arxiv.org/abs/2502.02996
3. E. Imani, M. White, "Improving Regression Performance with Distributional Losses", ICML 2018.
4. J. Farebrother et al., "Stop Regressing: Training Value Functions via Classification for
   Scalable Deep RL", ICML 2024.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_head_inputs
from ..distributions import Mixture
from ..functional.codec import (
    decode,
    end_to_end_mse,
    entropy_from_logits,
    hard_bin_encode,
    hl_gauss_probs,
    kl_divergence,
    kl_from_logits,
    lift_logits,
    mixture_logits_unchecked,
)
from ..functional.distances import pairwise_distances
from .base import Head, LossOutput
from .linear import point_loss

__all__ = ["CODECS", "INITS", "MODES", "Codec", "EndToEndCodec", "GaussianCodec", "HLGauss", "HardBin",
           "LSSoftmax", "SoftBin", "TrainedCodec"]

#: name -> Codec subclass; filled by each subclass that sets ``mode`` (see ``Codec.for_mode``)
CODECS: dict[str, type[Codec]] = {}
INITS = ("auto", "uniform", "kmeans", "grid")
_KMEANS_MAX_POINTS = 20000
#: the Gaussian encoders compute with logits at most this far below each row's maximum
#: (``GaussianCodec._working_logits``): weights below e^-60 are lifted to it
LOGIT_FLOOR = 60.0
#: a class counts as used by the encoder when it holds at least this share of the targets' mass
USED_CLASS_MASS = 1e-3


def _grid_side(k: int, m: int) -> int | None:
    """``n`` with ``n ** m == k``, or None."""
    n = round(k ** (1.0 / m))
    for cand in (n - 1, n, n + 1):
        if cand >= 2 and cand ** m == k:
            return cand
    return None


def _check_nonneg(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _check_pos(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


class Codec(Head):
    """Base class of the target-codec heads (regression as classification).

    Not instantiated directly: use a subclass, or :meth:`for_mode` with a registered name.

    Parameters
    ----------
    in_features : int
        Embedding dimension d; the head owns the k-way linear layer ``g: R^d -> R^k``.
    target_dim : int, default 1
        Target dimension m.
    k : int, default 25
        Number of classes (>= 2). With ``init="grid"`` (and :class:`HLGauss` when m > 1) ``k``
        must be a perfect m-th power, e.g. 625 = 25 x 25 for m = 2 (:class:`HLGauss` with
        ``init="auto"`` rounds it to the nearest grid instead; :attr:`k` holds the number used).
    init : {"auto", "uniform", "kmeans", "grid"}, default "auto"
        Where :meth:`fit_targets` puts the k centers. ``"uniform"`` (m = 1): evenly spaced over
        the training range, ``linspace(lo, hi, k)``, or the k bin midpoints for the binning
        codecs (:class:`HardBin`, :class:`HLGauss`). ``"grid"``: the same per dimension, as a
        row-major grid. ``"kmeans"``: scikit-learn's k-means++ on the training targets (at most
        20,000 of them, drawn with the torch RNG). ``"auto"``: uniform for m = 1, k-means for
        m > 1 (grid for :class:`HLGauss`, whose bin probabilities need grid cells).
    out_of_range : {"clip", "error"}, default "clip"
        Targets outside the fitted box ``[lo, hi]`` of the training targets given to
        :meth:`encode` or :meth:`loss`: ``"clip"`` clips them into it per dimension,
        ``"error"`` raises a ValueError. Predictions :math:`\\mu^\\top\\pi` always lie in the
        convex hull of the rows of ``mu``.

    Attributes
    ----------
    mode : str
        The registry name of the codec (class attribute).
    mu : Parameter, shape (k, m)
        The decoder.
    sigma, spacing : 0-d buffers
        Width of the Gaussian encoder and distance between neighbouring centers (for k-means
        centers: mean distance from a center to its nearest other center).
    lo, hi : buffers, shape (m,)
        The fitted box of the training targets.

    Notes
    -----
    Before :meth:`fit_targets` the head is initialised as if the targets filled ``[0, 1]^m``.
    """

    mode: ClassVar[str] = ""
    #: centers at bin midpoints, spacing = bin width (hard binning, HL-Gauss)
    bins: ClassVar[bool] = False
    #: the decoder ``mu`` is trained with the classifier
    learns_decoder: ClassVar[bool] = False
    #: the encoder is trained with the classifier (codecs that have one)
    learns_encoder: ClassVar[bool] = False
    #: class probabilities over the centres give a predictive distribution (:meth:`predict_distribution`)
    has_distribution = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("mode"):
            if cls.mode in CODECS:
                raise ValueError(f"codec {cls.mode!r} is registered twice")
            CODECS[cls.mode] = cls

    @classmethod
    def for_mode(cls, mode: str, in_features: int, target_dim: int = 1, k: int = 25, **knobs: Any) -> Codec:
        """Build the codec registered as ``mode`` (a key of :data:`CODECS`).

        ``knobs`` are the keyword arguments of that subclass; one it does not take raises
        TypeError (a knob is never silently ignored).

        Examples
        --------
        >>> head = Codec.for_mode("soft-bin", 16, 1, k=5)
        >>> head.fit_targets(torch.rand(100, 1))
        >>> head(torch.randn(3, 16)).shape
        torch.Size([3, 1])
        """
        if mode not in CODECS:
            raise ValueError(f"unknown codec mode {mode!r}; expected one of {tuple(CODECS)}")
        return CODECS[mode](in_features, target_dim, k, **knobs)

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip"):
        if type(self) is Codec:
            raise TypeError("Codec is the base class of the codec heads: build one with "
                            f"Codec.for_mode(name, ...) (names: {tuple(CODECS)}) or a subclass")
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"k (number of classes) must be an integer >= 2, got {k!r}")
        if in_features < 1 or target_dim < 1:
            raise ValueError(f"in_features and target_dim must be >= 1, got {in_features}, {target_dim}")
        if out_of_range not in ("clip", "error"):
            raise ValueError(f"out_of_range must be 'clip' or 'error', got {out_of_range!r}")
        m = target_dim
        auto = init == "auto"
        if auto:
            init = "uniform" if m == 1 else self._auto_init_multi()
        if init == "uniform" and m > 1:
            raise ValueError(f"init='uniform' is for m = 1; use 'kmeans' or 'grid' for m = {m}")
        if m == 1 and init == "grid":
            init = "uniform"
        if self.bins and init == "kmeans":
            raise ValueError(f"{self.mode} needs bins: use init='uniform' (m = 1) or 'grid'")
        side = k if m == 1 else _grid_side(int(k), m)
        if auto and init == "grid" and side is None:  # binning codecs, m > 1: nearest grid n ** m
            side = max(2, round(k ** (1.0 / m)))
            k = side ** m
        if init == "grid" and side is None:
            raise ValueError(f"init='grid' needs k = n ** m; got k = {k}, m = {m}")
        self.target_dim, self.k, self.init = m, int(k), init
        self.grid_side = side if init in ("uniform", "grid") else None
        self.out_of_range = out_of_range

        self.g = nn.Linear(in_features, self.k)
        self.mu = nn.Parameter(torch.zeros(self.k, m))
        self.register_buffer("sigma", torch.ones(()))
        self.register_buffer("spacing", torch.ones(()))
        self.register_buffer("lo", torch.zeros(m))
        self.register_buffer("hi", torch.ones(m))
        #: the codec's parameters when training starts (end of :meth:`fit_targets`), for
        #: :meth:`encoder_health` at the start of training
        self._start_state: dict[str, Tensor] | None = None

    def _finish_init(self) -> None:
        """Subclass constructors call this once their own parameters exist."""
        self._initialise(torch.zeros(self.target_dim), torch.ones(self.target_dim), None)
        self._set_trainable()

    def _auto_init_multi(self) -> str:
        return "grid" if self.bins else "kmeans"

    # ------------------------------------------------------------------ set-up
    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, k={self.k}, target_dim={self.target_dim}, init={self.init!r}"

    def codec_parameters(self) -> dict[str, nn.Parameter]:
        """The codec's own parameters (decoder, and encoder where it has one), by name.

        They are kept out of weight decay (:meth:`no_weight_decay`)."""
        return {"mu": self.mu}

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (relative to this head) the Trainer must not decay.

        A coupled L2 penalty on the codec moves the codec rather than fit the data: its
        gradient (weight x parameter) is independent of the loss, so it shrinks rarely used
        decoder centers toward 0 and drags the encoder at Adam's full step whatever the data
        says. The papers put the encoder-decoder under the MLP's L2 of 1e-4 ([1], Sec. 4);
        we exempt it, decoupled or not.
        """
        return set(self.codec_parameters())

    def _set_trainable(self, stage1: bool = False) -> None:
        self.mu.requires_grad_(stage1 or self.learns_decoder)

    def _axis_centers(self, lo: float, hi: float, n: int) -> tuple[Tensor, float]:
        if self.bins:
            width = (hi - lo) / n
            return lo + width * (torch.arange(n, dtype=torch.float64) + 0.5), width
        return torch.linspace(lo, hi, n, dtype=torch.float64), (hi - lo) / (n - 1)

    @torch.no_grad()
    def _initialise(self, lo: Tensor, hi: Tensor, y: Tensor | None) -> None:
        """Place centers and set sigma for the box [lo, hi] (and data y); ``mu = c``."""
        m = self.target_dim
        lo64, hi64 = lo.double().cpu(), hi.double().cpu()
        if self.init in ("uniform", "grid"):
            axes, widths = zip(*(self._axis_centers(float(lo64[d]), float(hi64[d]), self.grid_side) for d in range(m)))
            mesh = torch.meshgrid(*axes, indexing="ij")
            centers = torch.stack([t.reshape(-1) for t in mesh], dim=1)
            spacing = float(np.mean(widths))
        else:
            if y is None:  # before fit_targets: fixed random points of the box (no k-means yet)
                gen = torch.Generator().manual_seed(0)
                centers = lo64 + (hi64 - lo64) * torch.rand(self.k, m, generator=gen, dtype=torch.float64)
            else:
                centers = self._kmeans(y.double().cpu())
            dist = pairwise_distances(centers)
            dist.fill_diagonal_(math.inf)
            spacing = float(dist.min(dim=1).values.mean())
        sigma = self._sigma_for(spacing)
        dev, dt = self.mu.device, self.mu.dtype
        self.mu.copy_(centers.to(dev, dt))
        self.sigma.fill_(sigma)
        self.spacing.fill_(spacing)
        self.lo.copy_(lo64.to(dev, dt))
        self.hi.copy_(hi64.to(dev, dt))
        self._init_encoder(centers, sigma)

    def _sigma_for(self, spacing: float) -> float:
        return spacing

    def _init_encoder(self, centers: Tensor, sigma: float) -> None:
        """Hook: set the encoder's parameters for float64 ``centers`` (k, m) and width ``sigma``."""

    def _kmeans(self, y: Tensor) -> Tensor:
        from sklearn.cluster import KMeans

        if len(y) > _KMEANS_MAX_POINTS:
            y = y[torch.randperm(len(y))[:_KMEANS_MAX_POINTS]]
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        km = KMeans(n_clusters=self.k, init="k-means++", n_init=1, random_state=seed).fit(y.numpy())
        return torch.as_tensor(km.cluster_centers_, dtype=torch.float64)

    def fit_targets(self, y_train: Tensor) -> None:
        """Data-dependent initialisation from the training targets ``(N, m)``.

        Sets the fitted box ``[lo, hi]`` (per-dimension min and max), the centers (uniform,
        grid or k-means++), ``sigma``, the encoder and ``mu = c``; then runs the subclass's
        :meth:`_after_fit_targets` (stage 1 of :class:`TrainedCodec`) and keeps a copy of the
        codec's parameters as the start-of-training state of :meth:`encoder_health`.
        """
        y = self._check_y(y_train, "y_train")
        if self.init == "kmeans" and len(y) < self.k:
            raise ValueError(f"k-means with k = {self.k} needs at least k training targets, got {len(y)}")
        lo, hi = y.min(dim=0).values.detach(), y.max(dim=0).values.detach()
        flat = (hi - lo) <= 1e-12
        lo, hi = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)  # constant target
        self._initialise(lo, hi, y.detach())
        self._after_fit_targets(y.detach())
        self._set_trainable()
        self._start_state = {n: p.detach().clone() for n, p in self.codec_parameters().items()}

    def _after_fit_targets(self, y: Tensor) -> None:
        """Hook run at the end of :meth:`fit_targets` with the training targets (N, m)."""

    # ------------------------------------------------------------------ codec
    def _check_y(self, y: Tensor, name: str = "y") -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
        if y.dim() == 1 and self.target_dim == 1:
            y = y[:, None]
        if y.dim() != 2 or y.shape[1] != self.target_dim:
            raise ValueError(f"expected {name} of shape (N, {self.target_dim}), got {tuple(y.shape)}")
        if len(y) == 0:
            raise ValueError(f"{name} is empty")
        if not torch.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or inf values")
        return y

    def _clip(self, y: Tensor) -> Tensor:
        lo, hi = self.lo.to(y.dtype), self.hi.to(y.dtype)
        if self.out_of_range == "error":
            tol = 1e-6 * (hi - lo)
            if bool(((y < lo - tol) | (y > hi + tol)).any()):
                raise ValueError(f"targets outside the fitted range [{lo.tolist()}, {hi.tolist()}] "
                                 "(out_of_range='error'; use 'clip' to clip them into it)")
        return torch.maximum(torch.minimum(y, hi), lo)

    def encode(self, y: Tensor) -> Tensor:
        """Soft labels of the targets, ``(N, m) -> (N, k)``, rows on the simplex.

        Targets outside the fitted box are clipped into it (or rejected with
        ``out_of_range="error"``). Subclasses implement :meth:`_encode` on clipped targets.
        """
        y = self._check_y(y)
        return self._encode(self._clip(y))

    def _encode(self, yc: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, p: Tensor) -> Tensor:
        """Targets from class probabilities: :math:`\\mu^\\top p`, ``(N, k) -> (N, m)``."""
        return decode(p, self.mu)

    def predict_proba(self, z: Tensor) -> Tensor:
        """Classifier probabilities :math:`\\pi_\\theta = \\mathrm{softmax}(g(z))`, shape (N, k)."""
        check_head_inputs(z, None, self.target_dim)
        return torch.softmax(self.g(z), dim=-1)

    def predict_distribution(self, z: Tensor, kernel: str = "default") -> Mixture:
        """The predictive distribution :math:`\\sum_i \\pi_i(z)\\, K_i` over the decoder centres.

        The class probabilities :math:`\\pi(z)` (N, k) weight one kernel :math:`K_i` per class,
        centred on :math:`\\mu_i`, so the mean is the point prediction :math:`\\mu^\\top\\pi`.
        ``kernel="default"`` is the codec's own reading of a class (:meth:`_distribution_kernel`):

        * binning codecs (``hard-bin``, ``hl-gauss``): a uniform density over the class's bin
          (half-width = half a bin width), i.e. the histogram HL-Gauss is trained to predict;
        * Gaussian codecs (``soft-bin``, ``trained-codec``, ``e2e-codec``): :math:`\\mathcal{N}(\\mu_i,
          \\sigma^2)` with the encoder's width :math:`\\sigma` -- the class-conditional of the
          mixture whose posterior is the encoder (module docstring);
        * ``ls-softmax``: point masses at :math:`\\mu_i`. Its :math:`\\pi` is trained through its
          mean only, so this distribution is a by-product, not a calibrated one (calibrate it
          with :mod:`beyondmse.conformal`).

        ``kernel="point"`` gives point masses at the centres for any codec. For m > 1 the
        result describes the m marginals (:mod:`beyondmse.distributions`). Memory O(N k m).

        Returns
        -------
        Mixture with batch shape (N, m) and k atoms, in the units of the training targets.
        """
        if kernel not in ("default", "point"):
            raise ValueError(f"kernel must be 'default' or 'point', got {kernel!r}")
        with torch.no_grad():
            pi = self.predict_proba(z)
            locs = self.mu.detach().T[None].to(pi.dtype)  # (1, m, k)
            name, scale = ("point", 0.0) if kernel == "point" else self._distribution_kernel()
            return Mixture(pi[:, None, :], locs, name, scale)

    def _distribution_kernel(self) -> tuple[str, Tensor | float]:
        """Hook: ``(kernel, width)`` of one class in :meth:`predict_distribution`; the width is a
        float or a tensor broadcastable to (1, m, k)."""
        if self.bins:  # a class is its bin: spread its mass uniformly over it
            half = ((self.hi - self.lo) / (2 * self.grid_side)).detach()
            return "uniform", half[None, :, None]
        return "point", 0.0

    # ------------------------------------------------------------------ Head API
    def forward(self, z: Tensor) -> Tensor:
        """Predictions :math:`\\mu^\\top \\mathrm{softmax}(g(z))`, shape (N, m)."""
        return decode(self.predict_proba(z), self.mu)

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        """Check the inputs and return :meth:`objective` on the classifier's logits ``g(z)``."""
        check_head_inputs(z, y, self.target_dim)
        y = self._check_y(y)
        return self.objective(self.g(z), y)

    def objective(self, logits: Tensor, y: Tensor) -> LossOutput:
        """Hook: the training loss from the classifier logits (N, k) and targets (N, m).

        The default is the classification reformulation ([1], eq. 2):
        :math:`\\mathrm{KL}(\\psi(y) \\,\\|\\, \\mathrm{softmax}(\\text{logits}))` with the soft
        labels held fixed, averaged over the batch.
        """
        kl = kl_divergence(self._encode(self._clip(y)), logits).mean()
        return LossOutput(kl, {"kl": kl.detach()})

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def encoder_health(self, y: Tensor, which: str = "end") -> dict[str, float]:
        """How much of the target information the codec keeps, on targets ``y`` (N, m).

        Returns ``{"auto_mae", "entropy", "classes_used"}``: the auto-encoding error
        :math:`\\mathrm{mean}|\\mu^\\top\\psi(y) - y|`, the mean encoder entropy
        :math:`\\mathrm{mean}\\,H(\\psi(y))` in nats, and the number of classes holding at least
        :data:`USED_CLASS_MASS` of the targets' mass :math:`\\mathrm{mean}_n \\psi(y_n)`.
        A collapsed encoder shows as a falling entropy and class count and a rising
        auto-encoding error. ``which="start"`` evaluates the codec as it was when training
        started (the end of :meth:`fit_targets`).
        """
        if which not in ("start", "end"):
            raise ValueError(f"which must be 'start' or 'end', got {which!r}")
        y = self._check_y(y).to(self.mu.device, self.mu.dtype)
        saved = None
        if which == "start":
            if self._start_state is None:
                raise ValueError("encoder_health(which='start') needs fit_targets to have run")
            params = self.codec_parameters()
            saved = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self._start_state[n])
        try:
            p = self.encode(y)
            mass = p.mean(0)
            return {"auto_mae": float((self.decode(p) - y).abs().mean()),
                    "entropy": float(torch.special.entr(p).sum(-1).mean()),
                    "classes_used": int((mass >= USED_CLASS_MASS).sum())}
        finally:
            if saved is not None:
                for n, p in self.codec_parameters().items():
                    p.copy_(saved[n])

    def codec_state(self) -> dict[str, Any]:
        """A JSON-ready description of the fitted codec (enough to rebuild its encoder and
        decoder with :meth:`from_codec_state`, e.g. to plot the learned encoder)."""
        state = {"mode": self.mode, "k": self.k, "target_dim": self.target_dim, "init": self.init,
                 "sigma": float(self.sigma), "spacing": float(self.spacing),
                 "lo": self.lo.tolist(), "hi": self.hi.tolist(), "options": self._state_options(),
                 "params": {n: p.detach().cpu().double().tolist() for n, p in self.codec_parameters().items()}}
        if self._start_state is not None:
            state["start_params"] = {n: t.cpu().double().tolist() for n, t in self._start_state.items()}
        return state

    def _state_options(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_codec_state(cls, state: dict[str, Any], which: str = "end") -> Codec:
        """Rebuild a codec (with a 1-feature classifier) from :meth:`codec_state`'s output;
        ``which="start"`` takes the parameters it had when training started."""
        head = cls.for_mode(state["mode"], 1, int(state["target_dim"]), int(state["k"]), init=state["init"],
                            **state.get("options", {}))
        params = state["params"] if which == "end" else state.get("start_params")
        if params is None:
            raise ValueError("this codec state has no start-of-training parameters")
        with torch.no_grad():
            head.sigma.fill_(float(state["sigma"]))
            head.spacing.fill_(float(state["spacing"]))
            head.lo.copy_(torch.tensor(state["lo"]))
            head.hi.copy_(torch.tensor(state["hi"]))
            for n, p in head.codec_parameters().items():
                p.copy_(torch.tensor(params[n]).reshape(p.shape))
        return head

    def fit_summary(self, y_val: Tensor) -> dict[str, Any]:
        """What a run record keeps of the head: encoder health at the start and end of training
        on the validation targets (N, m), and the fitted codec (:meth:`codec_state`)."""
        health = {}
        if self._start_state is not None:
            health["start"] = self.encoder_health(y_val, "start")
        health["end"] = self.encoder_health(y_val, "end")
        return {"encoder_health": health, "codec": self.codec_state()}


class LSSoftmax(Codec):
    """Least squares through a softmax layer: :math:`L(y - \\mu^\\top \\mathrm{softmax}(g(z)))`
    with a learned ``mu`` ([1], Appendix A, eq. 9), the control for the codec's extra layer.

    It has no target encoder: :meth:`encode` raises ValueError.

    Parameters
    ----------
    in_features, target_dim, k, init, out_of_range
        See :class:`Codec`.
    loss : {"mse", "huber"}, default "mse"
        The point loss L (mean over samples and target dimensions, as in the ``ls`` head).
    huber_delta : float, default 1.0
    """

    mode = "ls-softmax"
    learns_decoder = True

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", loss: str = "mse", huber_delta: float = 1.0):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range)
        if loss not in ("mse", "huber"):
            raise ValueError(f"unknown loss {loss!r}; expected 'mse' or 'huber'")
        _check_pos(huber_delta=huber_delta)
        self.loss_kind, self.huber_delta = loss, float(huber_delta)
        self._finish_init()

    def encode(self, y: Tensor) -> Tensor:
        raise ValueError("ls-softmax is trained with the square loss only and has no target encoder")

    def encoder_health(self, y: Tensor, which: str = "end") -> dict[str, float]:
        raise ValueError("ls-softmax has no target encoder")

    def fit_summary(self, y_val: Tensor) -> dict[str, Any]:
        return {"codec": self.codec_state()}

    def _state_options(self) -> dict[str, Any]:
        return {"loss": self.loss_kind, "huber_delta": self.huber_delta}

    def objective(self, logits: Tensor, y: Tensor) -> LossOutput:
        pred = decode(torch.softmax(logits, dim=-1), self.mu)
        total = point_loss(pred, y, self.loss_kind, self.huber_delta)
        return LossOutput(total, {"pred": total.detach()})


class HardBin(Codec):
    """Hard binning ([1], Sec. 2.2): k uniform bins, one-hot labels, cross-entropy, decoded
    with the bin midpoints (fixed). Parameters as :class:`Codec`."""

    mode = "hard-bin"
    bins = True

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip"):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range)
        self._finish_init()

    def _encode(self, yc: Tensor) -> Tensor:
        return F.one_hot(hard_bin_encode(yc, self.mu), self.k).to(yc.dtype)

    def objective(self, logits: Tensor, y: Tensor) -> LossOutput:
        # the cross-entropy to the nearest bin is the KL to its one-hot label (zero entropy)
        total = F.cross_entropy(logits, hard_bin_encode(self._clip(y), self.mu))
        return LossOutput(total, {"ce": total.detach()})


class GaussianCodec(Codec):
    """A codec whose encoder is the Gaussian mixture posterior of the module docstring.

    Parameters
    ----------
    in_features, target_dim, k, init, out_of_range
        See :class:`Codec`.
    lambda_sigma : float, default 0.5
        Encoder width ``sigma = lambda_sigma * spacing`` ([1], Sec. 3.3). The spacing is the
        distance between neighbouring centers for uniform / grid centers and, for k-means
        centers, the mean distance from each center to its nearest other center (which reduces
        to the former on a uniform grid).

    Attributes
    ----------
    centers : Parameter, shape (k, m)
        The encoder's centers in units of ``sigma``, :math:`u_i = c_i / \\sigma`.
    log_prior : Parameter, shape (k,)
        The encoder's log prior weights :math:`\\beta_i` (0 at initialisation).

    Notes
    -----
    Why this parametrisation: Adam moves every parameter by about ``lr`` per step, so the
    units of a parameter set how fast the codec can move. In units of sigma a step moves a
    center by ``lr * sigma``, a fixed fraction of the encoder's resolution whatever k and the
    target range, and a step of the log prior moves a class boundary by ``lr * lambda_sigma**2``
    spacings (the boundary between neighbours has logit slope ``spacing / sigma**2``). The
    affine form of [1] (``W = c / sigma**2``, entries up to ~2,000 at k = 25 on [0, 1]) moves
    the centers ``1 / (lambda_sigma**2 * spacing)`` times slower, i.e. slower the larger k.
    """

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", lambda_sigma: float = 0.5):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range)
        _check_pos(lambda_sigma=lambda_sigma)
        self.lambda_sigma = float(lambda_sigma)
        self.centers = nn.Parameter(torch.zeros(self.k, target_dim))
        self.log_prior = nn.Parameter(torch.zeros(self.k))
        self._finish_init()

    def _state_options(self) -> dict[str, Any]:
        return {"lambda_sigma": self.lambda_sigma}

    def codec_parameters(self) -> dict[str, nn.Parameter]:
        return {"centers": self.centers, "log_prior": self.log_prior, "mu": self.mu}

    def _set_trainable(self, stage1: bool = False) -> None:
        super()._set_trainable(stage1)
        learn = stage1 or self.learns_encoder
        self.centers.requires_grad_(learn)
        self.log_prior.requires_grad_(learn)

    def _sigma_for(self, spacing: float) -> float:
        return self.lambda_sigma * spacing

    @torch.no_grad()
    def _init_encoder(self, centers: Tensor, sigma: float) -> None:
        self.centers.copy_((centers / sigma).to(self.centers.device, self.centers.dtype))
        self.log_prior.zero_()

    def _distribution_kernel(self) -> tuple[str, Tensor | float]:
        # the class-conditional N(c_i, sigma^2) of the mixture behind the encoder, around mu_i
        return "gaussian", float(self.sigma)

    def encoder_logits(self, y: Tensor) -> Tensor:
        """Logits of :math:`\\psi`, :math:`\\beta_i - \\|y - c_i\\|^2 / 2\\sigma^2`, shape (N, k)."""
        return self._logits(self._clip(self._check_y(y)))

    def _logits(self, yc: Tensor) -> Tensor:
        # unchecked: every caller has passed y through _check_y
        return mixture_logits_unchecked(yc / self.sigma.to(yc.dtype), self.centers, self.log_prior)

    def _working_logits(self, yc: Tensor) -> Tensor:
        """:meth:`_logits` lifted to at least ``LOGIT_FLOOR`` below each row's maximum: what
        the objectives and :meth:`encode` compute with.

        At k = 25 on [0, 1] targets a far class has a logit near -1,000, its weight underflows,
        and ``exp``, ``softmax`` and the products of the objective then run on the CPU's slow
        path for subnormal and underflowing numbers (5-40x slower per element; the end-to-end
        step was 1.5x the linear head's, most of it there). The lift changes no weight by more
        than e^-60 (about 1e-26, far below float32's resolution) and only the gradients of
        such weights (also below 1e-26); :meth:`encoder_logits` stays exact.
        """
        return lift_logits(self._logits(yc), LOGIT_FLOOR)

    def _encode(self, yc: Tensor) -> Tensor:
        return torch.softmax(self._working_logits(yc), dim=-1)

    def encoder_affine(self) -> tuple[Tensor, Tensor]:
        """The encoder in the affine form of [1], eq. 5: ``(W (k, m), b (k,))`` with
        :math:`\\psi(y) = \\mathrm{softmax}(W y + b)`."""
        s = self.sigma
        return self.centers / s, self.log_prior - 0.5 * (self.centers ** 2).sum(-1)

    def objective(self, logits: Tensor, y: Tensor) -> LossOutput:
        # from the encoder's logits: finite where psi underflows; the labels are fixed here
        kl = kl_from_logits(self._working_logits(self._clip(y)).detach(), logits).mean()
        return LossOutput(kl, {"kl": kl.detach()})


class SoftBin(GaussianCodec):
    """Soft binning ([1], Sec. 3.2): the fixed Gaussian encoder (centers on the uniform grid or
    k-means, ``sigma = lambda_sigma * spacing``), KL loss, decoder = centers (fixed).
    Parameters as :class:`GaussianCodec`."""

    mode = "soft-bin"

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", lambda_sigma: float = 0.5):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range,
                         lambda_sigma=lambda_sigma)


class HLGauss(Codec):
    """HL-Gauss ([3, 4]): the mass of :math:`\\mathcal{N}(y, (h\\,w)^2)` in each of k uniform
    bins of width w as the soft label, KL loss, bin-midpoint decoder (fixed).

    Parameters
    ----------
    in_features, target_dim, k, init, out_of_range
        See :class:`Codec`.
    hl_sigma : float, default 0.75
        The smoothing h in bin widths (per dimension).
    """

    mode = "hl-gauss"
    bins = True

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", hl_sigma: float = 0.75):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range)
        _check_pos(hl_sigma=hl_sigma)
        self.hl_sigma = float(hl_sigma)
        self._finish_init()

    def _state_options(self) -> dict[str, Any]:
        return {"hl_sigma": self.hl_sigma}

    def _edges(self) -> list[Tensor]:
        return [torch.linspace(float(self.lo[d]), float(self.hi[d]), self.grid_side + 1,
                               device=self.lo.device, dtype=self.lo.dtype) for d in range(self.target_dim)]

    def _encode(self, yc: Tensor) -> Tensor:
        widths = ((self.hi - self.lo) / self.grid_side).tolist()
        return hl_gauss_probs(yc, self._edges(), [self.hl_sigma * w for w in widths])


def _scaled_point_loss(pred: Tensor, y: Tensor, scale: Tensor, kind: str, delta: float) -> Tensor:
    """``point_loss`` of the residuals measured in units of ``scale`` (0-d or (m,))."""
    return point_loss(pred / scale, y / scale, kind, delta)


class TrainedCodec(GaussianCodec):
    """A Gaussian codec pre-trained on the targets alone (stage 1, [1], Sec. 3.3, eq. 7), then
    frozen while the classifier is trained with the KL to its soft labels.

    Stage 1 runs inside :meth:`fit_targets` and minimises over (centers, log prior, mu)

    .. math::

        \\mathbb{E}_y\\Big[\\frac{L(y - \\mu^\\top\\psi(y))}{2\\sigma^2} - \\alpha H(\\psi(y))\\Big].

    The auto-encoding error is measured in units of :math:`2\\sigma^2`: it is then the
    Gaussian negative log-likelihood of the reconstruction under the mixture the encoder
    describes, of order one at initialisation whatever k and the target range (on [0, 1]
    targets the raw squared error is ~1e-5 at k = 25). Dividing by a constant changes nothing
    here but the meaning of ``alpha``; it matters in :class:`EndToEndCodec`, where the term
    competes with the KL.

    The entropy enters with a **minus** sign, a bonus, as written in both papers' equations
    ([1] eqs. 7-8, [2] eqs. 8-10); their text speaks of penalising near-uniform codes, which
    contradicts the equation. We keep the equation because the failure we observe is the
    opposite one: the KL term of the end-to-end objective is mode-seeking in psi and collapses
    the encoder onto a few hard classes, which a bonus resists and a penalty would speed up.
    At the papers' ``alpha = 1e-6`` the term is negligible either way.

    Parameters
    ----------
    in_features, target_dim, k, init, out_of_range, lambda_sigma
        See :class:`GaussianCodec`.
    alpha : float, default 1e-6
        Entropy bonus on the encoder.
    stage1_steps : int, default 500
        Adam steps of stage 1. Each step uses all training targets, or ``stage1_batch`` of them
        drawn with the torch RNG when there are more. Every ``max(1, min(50, stage1_steps //
        10))`` steps the objective is evaluated on all training targets and the best codec
        seen (the initial one included) is kept, so stage 1 never raises the full-data
        objective.
    stage1_lr : float, default 1e-3
    stage1_batch : int, default 8192
    loss : {"mse", "huber"}, default "mse"
        The point loss L; with ``"huber"`` the threshold ``huber_delta`` is in the units the
        residual is measured in (here ``sigma * sqrt(2)``).
    huber_delta : float, default 1.0

    Attributes
    ----------
    stage1_objective : list of float
        The stage-1 objective on all training targets, ``[before, after]`` (empty if no stage 1).
    """

    mode = "trained-codec"
    _default_stage1_steps: ClassVar[int] = 500

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", lambda_sigma: float = 0.5, alpha: float = 1e-6,
                 stage1_steps: int | None = None, stage1_lr: float = 1e-3, stage1_batch: int = 8192,
                 loss: str = "mse", huber_delta: float = 1.0):
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range,
                         lambda_sigma=lambda_sigma)
        _check_nonneg(alpha=alpha)
        _check_pos(stage1_lr=stage1_lr, huber_delta=huber_delta)
        if stage1_steps is None:
            stage1_steps = self._default_stage1_steps
        if isinstance(stage1_steps, bool) or int(stage1_steps) != stage1_steps or stage1_steps < 0 \
                or stage1_batch < 1:
            raise ValueError(f"stage1_steps must be an integer >= 0 and stage1_batch >= 1, "
                             f"got {stage1_steps}, {stage1_batch}")
        if loss not in ("mse", "huber"):
            raise ValueError(f"unknown loss {loss!r}; expected 'mse' or 'huber'")
        self.alpha = float(alpha)
        self.stage1_steps, self.stage1_lr, self.stage1_batch = int(stage1_steps), float(stage1_lr), int(stage1_batch)
        self.loss_kind, self.huber_delta = loss, float(huber_delta)
        self.stage1_objective: list[float] = []

    def _state_options(self) -> dict[str, Any]:
        return {**super()._state_options(), "alpha": self.alpha, "stage1_steps": 0, "loss": self.loss_kind,
                "huber_delta": self.huber_delta}

    def auto_terms(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(encoder logits (N, k), auto-encoding error / 2 sigma^2, mean entropy)`` on targets
        ``y`` (N, m), differentiable in the codec's parameters."""
        return self._auto_terms(self._check_y(y))

    def _auto_terms(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a = self._working_logits(self._clip(y))
        recon = decode(torch.softmax(a, dim=-1), self.mu)
        scale = self.sigma.to(y.dtype) * math.sqrt(2.0)
        auto = _scaled_point_loss(recon, y, scale, self.loss_kind, self.huber_delta)
        return a, auto, entropy_from_logits(a).mean()

    def auto_objective(self, y: Tensor) -> Tensor:
        """The stage-1 objective (class docstring) on targets ``y`` (N, m)."""
        _, auto, ent = self.auto_terms(y)
        return auto - self.alpha * ent

    def _after_fit_targets(self, y: Tensor) -> None:
        self.stage1_objective = []
        if self.stage1_steps > 0:
            self._stage1(y)

    def _stage1(self, y: Tensor) -> None:
        self._set_trainable(stage1=True)
        params = list(self.codec_parameters().values())
        opt = torch.optim.Adam(params, lr=self.stage1_lr)
        check_every = max(1, min(50, self.stage1_steps // 10))
        with torch.enable_grad():
            with torch.no_grad():
                first = best = float(self.auto_objective(y))
            best_state = [p.detach().clone() for p in params]
            for step in range(1, self.stage1_steps + 1):
                batch = y if len(y) <= self.stage1_batch else y[torch.randint(0, len(y), (self.stage1_batch,)).to(y.device)]
                opt.zero_grad(set_to_none=True)
                self.auto_objective(batch).backward()
                opt.step()
                if step % check_every == 0 or step == self.stage1_steps:
                    with torch.no_grad():
                        value = float(self.auto_objective(y))
                    if value < best:  # keep the best full-data objective: Adam's noise near the optimum
                        best, best_state = value, [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)
                p.grad = None
        self.stage1_objective = [first, best]


class EndToEndCodec(TrainedCodec):
    """The end-to-end codec ([1], Sec. 3.4, eq. 8): encoder, decoder and classifier trained
    jointly on

    .. math::

        \\lambda_{auto}\\,\\mathbb{E}_y\\Big[\\frac{L(y - \\mu^\\top\\psi(y))}{2\\sigma^2}
            - \\alpha H(\\psi(y))\\Big]
        + \\lambda_{KL}\\,\\mathbb{E}\\big[\\mathrm{KL}(\\psi(y)\\,\\|\\,\\pi_\\theta(x))\\big]
        + \\lambda_{pred}\\,\\mathbb{E}\\Big[L\\Big(\\frac{y - \\mu^\\top\\pi_\\theta(x)}{R}\\Big)\\Big],

    with :math:`\\sigma` the encoder's initial width and :math:`R = hi - lo` the fitted range
    of the training targets (per dimension). Both scalings are ours, so that the three terms
    are on comparable scales whatever the target range and k:

    * the auto-encoding term in units of :math:`2\\sigma^2` (the mixture's negative
      log-likelihood, see :class:`TrainedCodec`). Losing the resolution of the codec (a hard
      code with the initial spacing) then costs about :math:`1 / (12 \\lambda_\\sigma^2)`,
      comparable with the KL in nats, whatever k. Unscaled, the term is ~1e-5 on [0, 1]
      targets and the KL's gradient collapses the encoder (the papers tune
      :math:`\\lambda_{auto}` by a sweep they do not report; ``lambda_auto = 1`` here equals a
      raw weight of :math:`1/2\\sigma^2`, about 1,150 at k = 25 and 32 at k = 5 on [0, 1]);
    * the prediction term in units of the target range, which on [0, 1]-scaled targets (the
      papers' protocol) is exactly their term, so their :math:`\\lambda_{KL}` sweep (Table 6
      of [1]) carries over unchanged.

    The KL is the true divergence, differentiable in both the encoder and the classifier
    (its entropy part is not constant when the encoder trains). The entropy sign is
    discussed in :class:`TrainedCodec`. The encoder, decoder and prior are exempt from
    weight decay (:meth:`Codec.no_weight_decay`).

    Parameters
    ----------
    in_features, target_dim, k, init, out_of_range, lambda_sigma, alpha, stage1_lr, stage1_batch, loss, huber_delta
        See :class:`TrainedCodec`.
    lambda_auto, lambda_kl, lambda_pred : float, defaults 1, 1, 1
        Term weights. The papers' sweep chose :math:`\\lambda_{KL}` between 0.068 and 0.316 on
        the tabular sets (Table 6 of [1]; ``beyondmse.recipes.codec.PAPER_LAMBDA_KL``). With the
        papers' MLP (128 hidden, dropout 0.3), batch 256, lr 1e-3 and the scalings above, a
        validation sweep (seed 0, k = 25, validation MAE) rose with it: cpu_act-num 0.0191 /
        0.0182 / 0.0176 / 0.0171 at 0.068 / 0.3 / 1 / 3, elevators-num 0.0262 / 0.0257 /
        0.0249 / 0.0247 at 0.068 / 0.147 / 0.5 / 1; 1 is the default (3 was not tried on
        elevators).
    stage1_steps : int, default 0
        Optional stage-1 pre-training of the codec before the end-to-end phase.
    """

    mode = "e2e-codec"
    learns_encoder = True
    learns_decoder = True
    _default_stage1_steps = 0

    def __init__(self, in_features: int, target_dim: int = 1, k: int = 25, *, init: str = "auto",
                 out_of_range: str = "clip", lambda_sigma: float = 0.5, alpha: float = 1e-6,
                 lambda_auto: float = 1.0, lambda_kl: float = 1.0, lambda_pred: float = 1.0,
                 stage1_steps: int | None = None, stage1_lr: float = 1e-3, stage1_batch: int = 8192,
                 loss: str = "mse", huber_delta: float = 1.0):
        _check_nonneg(lambda_auto=lambda_auto, lambda_kl=lambda_kl, lambda_pred=lambda_pred)
        if lambda_pred == 0 and lambda_kl == 0:
            raise ValueError("e2e-codec needs lambda_pred > 0 or lambda_kl > 0 to train the classifier")
        super().__init__(in_features, target_dim, k, init=init, out_of_range=out_of_range,
                         lambda_sigma=lambda_sigma, alpha=alpha, stage1_steps=stage1_steps,
                         stage1_lr=stage1_lr, stage1_batch=stage1_batch, loss=loss, huber_delta=huber_delta)
        self.lambda_auto, self.lambda_kl, self.lambda_pred = float(lambda_auto), float(lambda_kl), float(lambda_pred)

    def _state_options(self) -> dict[str, Any]:
        return {**super()._state_options(), "lambda_auto": self.lambda_auto, "lambda_kl": self.lambda_kl,
                "lambda_pred": self.lambda_pred}

    def objective(self, logits: Tensor, y: Tensor) -> LossOutput:
        if self.loss_kind == "mse":  # one autograd node, the same value and gradients
            span = (self.hi - self.lo).to(y.dtype)
            weights = (self.lambda_auto, self.alpha, self.lambda_kl, self.lambda_pred)
            sigma = self.sigma.to(y.dtype)
            total, terms = end_to_end_mse(logits, self.centers, self.log_prior, self.mu, self._clip(y) / sigma, y,
                                          float(sigma) * math.sqrt(2.0), span, weights, LOGIT_FLOOR)
            return LossOutput(total, dict(zip(("auto", "entropy", "kl", "pred"), terms)))
        a, auto, ent = self._auto_terms(y)  # y checked by loss()
        kl = kl_from_logits(a, logits).mean()
        span = (self.hi - self.lo).to(y.dtype)
        pred = _scaled_point_loss(decode(torch.softmax(logits, dim=-1), self.mu), y, span,
                                  self.loss_kind, self.huber_delta)
        total = self.lambda_auto * (auto - self.alpha * ent) + self.lambda_kl * kl + self.lambda_pred * pred
        terms = {"auto": auto.detach(), "entropy": ent.detach(), "kl": kl.detach(), "pred": pred.detach()}
        return LossOutput(total, terms)


#: the registered codec names, in registration order
MODES = tuple(CODECS)
