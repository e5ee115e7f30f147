"""Target codecs for regression as classification: encoders, decoders and their losses.

A *codec* turns a target :math:`y \\in \\mathbb{R}^m` into a distribution over ``k`` classes
(the encoder :math:`\\psi`) and a distribution back into a target (the decoder
:math:`\\mu \\in \\mathbb{R}^{k \\times m}`, :math:`\\hat y = \\mu^\\top p`). Everything here is a
pure tensor function; the :class:`~beyondmse.heads.Codec` head holds the state.

Shapes: ``y`` is ``(N, m)``, centers / decoder ``(k, m)``, probabilities and logits ``(N, k)``.

References
----------
1. L. Stewart, F. Bach, Q. Berthet, "Building Bridges between Regression, Clustering, and
   Classification", 2025. https://arxiv.org/abs/2502.02996
2. E. Imani, M. White, "Improving Regression Performance with Distributional Losses",
   ICML 2018. https://arxiv.org/abs/1806.04613
3. J. Farebrother et al., "Stop Regressing: Training Value Functions via Classification for
   Scalable Deep RL", ICML 2024. https://arxiv.org/abs/2403.03950
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "affine_encode",
    "affine_logits",
    "decode",
    "end_to_end_mse",
    "entropy_from_logits",
    "gaussian_encode",
    "gaussian_mixture_logits",
    "gaussian_logit_params",
    "hard_bin_encode",
    "hl_gauss_probs",
    "kl_divergence",
    "kl_from_logits",
]


# --------------------------------------------------------------------------- checks
def _check_targets(y: Tensor, m: int | None = None, name: str = "y") -> None:
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 2 or (m is not None and y.shape[1] != m):
        want = f"(N, {m})" if m is not None else "(N, m)"
        raise ValueError(f"expected {name} of shape {want}, got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf values")


def _check_centers(centers: Tensor, name: str = "centers") -> None:
    if centers.dim() != 2 or centers.shape[0] < 2:
        raise ValueError(f"expected {name} of shape (k, m) with k >= 2, got {tuple(centers.shape)}")


def _check_sigma(sigma: float | Tensor) -> None:
    value = float(sigma) if not isinstance(sigma, Tensor) else None
    if value is not None and not value > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if isinstance(sigma, Tensor) and not bool((sigma > 0).all()):
        raise ValueError("sigma must be > 0")


def _check_logits_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    if a.dim() != 2:
        raise ValueError(f"expected {names[0]} of shape (N, k), got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"{names[1]} must have the shape of {names[0]} {tuple(a.shape)}, got {tuple(b.shape)}")


# --------------------------------------------------------------------------- encoders
def gaussian_logit_params(centers: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
    """The affine-logit form of the Gaussian soft-binning encoder.

    .. math::

        \\psi(y)_i \\propto \\exp\\Big(-\\frac{\\|c_i - y\\|^2}{2\\sigma^2}\\Big)
        = \\mathrm{softmax}(W y + b)_i,\\quad W = \\frac{c}{\\sigma^2},\\;
        b_i = -\\frac{\\|c_i\\|^2}{2\\sigma^2}

    (the :math:`-\\|y\\|^2 / 2\\sigma^2` term is the same for every class and cancels).

    Parameters
    ----------
    centers : Tensor, shape (k, m)
    sigma : float or 0-d Tensor, > 0

    Returns
    -------
    weight : Tensor, shape (k, m)
    bias : Tensor, shape (k,)
    """
    _check_centers(centers)
    _check_sigma(sigma)
    var = sigma * sigma
    return centers / var, -(centers * centers).sum(-1) / (2 * var)


def gaussian_encode(y: Tensor, centers: Tensor, sigma: float | Tensor) -> Tensor:
    """Gaussian soft binning from squared distances: ``softmax(-||c_i - y||^2 / 2 sigma^2)``.

    Parameters
    ----------
    y : Tensor, shape (N, m)
    centers : Tensor, shape (k, m)
    sigma : float, > 0

    Returns
    -------
    Tensor, shape (N, k), rows on the simplex.
    """
    _check_centers(centers)
    _check_targets(y, centers.shape[1])
    _check_sigma(sigma)
    sq = ((y[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return torch.softmax(-sq / (2 * sigma * sigma), dim=-1)


def affine_logits(y: Tensor, weight: Tensor, bias: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Encoder logits ``(y W^T + b) / temperature``, shape (N, k).

    A temperature only rescales the parametrisation (the same encoder with ``W, b`` divided by it).
    """
    if weight.dim() != 2:
        raise ValueError(f"expected weight of shape (k, m), got {tuple(weight.shape)}")
    if bias.shape != weight.shape[:1]:
        raise ValueError(f"expected bias of shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    _check_targets(y, weight.shape[1])
    return (y @ weight.T + bias) / temperature


def affine_encode(y: Tensor, weight: Tensor, bias: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """The softmax encoder of ref. [1]: :math:`\\psi_w(y) = \\mathrm{softmax}((W y + b)/\\tau)`, shape (N, k)."""
    return torch.softmax(affine_logits(y, weight, bias, temperature), dim=-1)


def gaussian_mixture_logits(y: Tensor, centers: Tensor, log_prior: Tensor) -> Tensor:
    """Class-posterior logits of an isotropic Gaussian mixture, in units of its width.

    With targets and centers divided by the common width :math:`\\sigma`
    (:math:`\\tilde y = y / \\sigma`, :math:`u_i = c_i / \\sigma`) and log prior weights
    :math:`\\beta_i`,

    .. math::

        a_i(y) = \\beta_i - \\tfrac12 \\|\\tilde y - u_i\\|^2
               = \\beta_i - \\frac{\\|y - c_i\\|^2}{2\\sigma^2},

    so that :math:`\\mathrm{softmax}(a)` is the Gaussian soft-binning encoder of ref. [1]
    (eq. 3 there, with a prior). The differences are taken directly rather than through
    :math:`\\|\\tilde y\\|^2 - 2\\tilde y^\\top u + \\|u\\|^2`, whose terms reach ~1e3 at k = 25
    and would cost float32 most of its digits.

    Parameters
    ----------
    y : Tensor, shape (N, m)
        Targets in units of sigma.
    centers : Tensor, shape (k, m)
        Centers in units of sigma.
    log_prior : Tensor, shape (k,)

    Returns
    -------
    Tensor, shape (N, k)
    """
    _check_centers(centers)
    _check_targets(y, centers.shape[1])
    if log_prior.shape != centers.shape[:1]:
        raise ValueError(f"expected log_prior of shape ({centers.shape[0]},), got {tuple(log_prior.shape)}")
    return mixture_logits_unchecked(y, centers, log_prior)


def mixture_logits_unchecked(y: Tensor, centers: Tensor, log_prior: Tensor) -> Tensor:
    """:func:`gaussian_mixture_logits` without its input checks, for callers that checked
    already (a codec head's training loss; the finiteness check costs a host sync per call)."""
    return log_prior - 0.5 * ((y[:, None, :] - centers[None, :, :]) ** 2).sum(-1)


def lift_logits(a: Tensor, floor: float) -> Tensor:
    """Logits ``a`` (N, k) raised to at least ``floor`` below each row's maximum (a constant for
    autograd): softmax weights below e^-floor are lifted to it, which keeps ``exp`` off the
    CPU's slow path for underflowing numbers (see ``GaussianCodec._working_logits``)."""
    return torch.maximum(a, a.detach().amax(-1, keepdim=True) - floor)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def hl_gauss_probs(y: Tensor, edges: Tensor | Sequence[Tensor], sigma: float | Sequence[float]) -> Tensor:
    """HL-Gauss bin probabilities (histogram loss with Gaussian smoothing, refs. [2, 3]).

    For one target dimension with bin edges :math:`e_0 < \\dots < e_k`,

    .. math::

        p_i(y) = \\Phi\\Big(\\frac{e_{i+1} - y}{\\sigma}\\Big) - \\Phi\\Big(\\frac{e_i - y}{\\sigma}\\Big),

    except that the first bin also takes the mass below :math:`e_0` and the last bin the mass
    above :math:`e_k` (:math:`e_0 \\to -\\infty`, :math:`e_k \\to +\\infty`), so every row sums to
    one *including the tails*. (Refs. [2, 3] instead divide by the mass inside
    :math:`[e_0, e_k]`; folding the tails keeps targets near the range ends centred on the
    end bins.) For ``m > 1`` the bins are the cells of a grid, one edge vector per dimension,
    and the isotropic Gaussian factorises: the cell probability is the product of the
    per-dimension probabilities, flattened in row-major (C) order.

    Parameters
    ----------
    y : Tensor, shape (N, m)
    edges : Tensor of shape (k + 1,) when m == 1, or a sequence of m such tensors
    sigma : float, or one float per dimension, > 0

    Returns
    -------
    Tensor, shape (N, prod_d k_d)
    """
    if isinstance(edges, Tensor):
        edges = [edges]
    edges = list(edges)
    sigmas = [float(s) for s in sigma] if isinstance(sigma, Sequence) else [float(sigma)] * len(edges)
    if len(sigmas) != len(edges):
        raise ValueError(f"got {len(sigmas)} sigmas for {len(edges)} edge vectors")
    _check_targets(y, len(edges))
    probs = None
    for d, (e, s) in enumerate(zip(edges, sigmas)):
        if e.dim() != 1 or e.numel() < 3:
            raise ValueError(f"edges[{d}] must be 1-D with at least 3 entries (2 bins), got {tuple(e.shape)}")
        if not bool((e[1:] > e[:-1]).all()):
            raise ValueError(f"edges[{d}] must be strictly increasing")
        _check_sigma(s)
        inner = e[1:-1].to(device=y.device, dtype=y.dtype)
        cdf = _normal_cdf((inner[None, :] - y[:, d:d + 1]) / s)  # (N, k_d - 1)
        zeros = torch.zeros_like(cdf[:, :1])
        ones = torch.ones_like(cdf[:, :1])
        full = torch.cat([zeros, cdf, ones], dim=1)  # CDF at -inf, inner edges, +inf
        p = (full[:, 1:] - full[:, :-1]).clamp_min(0.0)
        probs = p if probs is None else (probs[:, :, None] * p[:, None, :]).reshape(len(y), -1)
    return probs


def hard_bin_encode(y: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest center for each target (hard binning), shape (N,), int64.

    Ties go to the lower index. For uniform 1-D bins with midpoints as centers this is the bin
    that contains ``y`` (targets outside the range go to the end bins).
    """
    _check_centers(centers)
    _check_targets(y, centers.shape[1])
    # Kept on torch.cdist rather than functional.distances on purpose: targets that lie exactly
    # on a bin edge (integer labels, min-max scaled) are ties, and cdist's direct difference form
    # (used for batches of <= 25 rows, e.g. an epoch's last batch) resolves them differently from
    # the Gram form; switching would change published codec results for the same seed.
    return torch.cdist(y, centers.to(y.dtype)).argmin(dim=1)


def decode(p: Tensor, mu: Tensor) -> Tensor:
    """The decoder :math:`\\hat y = \\mu^\\top p`: ``p`` (N, k) on the simplex, ``mu`` (k, m) -> (N, m).

    For ``p`` on the simplex the result lies in the convex hull of the rows of ``mu``.
    """
    _check_centers(mu, "mu")
    if p.dim() != 2 or p.shape[1] != mu.shape[0]:
        raise ValueError(f"expected p of shape (N, {mu.shape[0]}), got {tuple(p.shape)}")
    return p @ mu


# --------------------------------------------------------------------------- divergences
class _KLFromLogits(torch.autograd.Function):
    """Row-wise :math:`\\mathrm{KL}(\\mathrm{softmax}(a) \\,\\|\\, \\mathrm{softmax}(l))` with a
    closed-form VJP.

    With :math:`p = \\mathrm{softmax}(a)`, :math:`q = \\mathrm{softmax}(l)` and
    :math:`d = \\log p - \\log q`: :math:`\\partial/\\partial l = q - p` and
    :math:`\\partial/\\partial a = p \\odot (d - \\langle p, d\\rangle)`. Working from the
    encoder's logits keeps ``log p`` finite where ``p`` underflows to 0 (a ``p log p`` term
    computed from probabilities would give NaN gradients there).
    """

    @staticmethod
    def forward(ctx, a: Tensor, l: Tensor) -> Tensor:
        log_p = torch.log_softmax(a, dim=-1)
        log_q = torch.log_softmax(l, dim=-1)
        p = log_p.exp()
        d = log_p - log_q
        ctx.save_for_backward(p, log_q, d)
        return (p * d).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        p, log_q, d = ctx.saved_tensors
        g = grad[:, None]
        grad_a = grad_l = None
        if ctx.needs_input_grad[0]:
            grad_a = g * p * (d - (p * d).sum(-1, keepdim=True))
        if ctx.needs_input_grad[1]:
            grad_l = g * (log_q.exp() - p)
        return grad_a, grad_l


def kl_from_logits(encoder_logits: Tensor, classifier_logits: Tensor) -> Tensor:
    """Row-wise :math:`\\mathrm{KL}(\\psi \\,\\|\\, \\pi)` with :math:`\\psi = \\mathrm{softmax}(a)`,
    :math:`\\pi = \\mathrm{softmax}(l)`; differentiable in both (the end-to-end objective).

    Parameters
    ----------
    encoder_logits : Tensor, shape (N, k)
    classifier_logits : Tensor, shape (N, k)

    Returns
    -------
    Tensor, shape (N,), >= 0.

    Examples
    --------
    >>> a = torch.tensor([[0.0, 1.0, 2.0]])
    >>> float(kl_from_logits(a, a))
    0.0
    """
    _check_logits_pair(encoder_logits, classifier_logits, ("encoder_logits", "classifier_logits"))
    return _KLFromLogits.apply(encoder_logits, classifier_logits)


def kl_divergence(p: Tensor, classifier_logits: Tensor) -> Tensor:
    """Row-wise :math:`\\mathrm{KL}(p \\,\\|\\, \\mathrm{softmax}(l)) = \\sum_i p_i (\\log p_i - \\log \\pi_i)`
    for *fixed* target probabilities ``p`` (N, k) (``0 log 0 = 0``); gradient w.r.t. the logits only.

    For one-hot ``p`` this is the cross-entropy (its entropy term is 0); in general it is the
    cross-entropy minus the constant :math:`H(p)`.
    """
    _check_logits_pair(p, classifier_logits, ("p", "classifier_logits"))
    p = p.detach()
    log_q = torch.log_softmax(classifier_logits, dim=-1)
    return (torch.xlogy(p, p) - p * log_q).sum(-1)


class _EntropyFromLogits(torch.autograd.Function):
    """Row-wise Shannon entropy :math:`H(\\mathrm{softmax}(a))` with the closed-form VJP
    :math:`\\partial H / \\partial a = -p \\odot (\\log p - \\langle p, \\log p\\rangle)`."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        log_p = torch.log_softmax(a, dim=-1)
        p = log_p.exp()
        ctx.save_for_backward(p, log_p)
        return -(p * log_p).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        p, log_p = ctx.saved_tensors
        return -grad[:, None] * p * (log_p - (p * log_p).sum(-1, keepdim=True))


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Row-wise entropy :math:`H(\\mathrm{softmax}(a)) = -\\sum_i p_i \\log p_i`, shape (N,).

    Parameters
    ----------
    logits : Tensor, shape (N, k)
    """
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (N, k), got {tuple(logits.shape)}")
    return _EntropyFromLogits.apply(logits)


# --------------------------------------------------------------------------- end-to-end objective
class _EndToEndMSE(torch.autograd.Function):
    """The end-to-end objective with MSE terms as one autograd node (see :func:`end_to_end_mse`).

    With :math:`p = \\mathrm{softmax}(a)`, :math:`q = \\mathrm{softmax}(l)`,
    :math:`d = \\log p - \\log q`, residuals :math:`e_r = (\\mu^\\top p - y) / s_a` and
    :math:`e_s = (\\mu^\\top q - y) / R`, and :math:`n = N m`, the gradients are

    .. math::

        g_r = \\tfrac{2\\lambda_a}{n s_a} e_r,\\quad g_s = \\tfrac{2\\lambda_p}{n R} e_s,\\quad
        X = g_r \\mu^\\top + \\tfrac{\\lambda_a\\alpha}{N}\\log p + \\tfrac{\\lambda_{KL}}{N} d,

        \\partial_a = p \\odot (X - \\langle p, X\\rangle),\\quad
        \\partial_l = q \\odot (g_s\\mu^\\top - \\langle q, g_s\\mu^\\top\\rangle)
                    + \\tfrac{\\lambda_{KL}}{N}(q - p),\\quad
        \\partial_\\mu = p^\\top g_r + q^\\top g_s,

    and through :math:`a_{ik} = \\beta_k - \\frac12\\|\\tilde y_i - u_k\\|^2`:
    :math:`\\partial_\\beta = \\sum_i \\partial_{a_i}`,
    :math:`\\partial_u = \\partial_a^\\top \\tilde y - \\partial_\\beta u`. The three softmax
    gradients share one form, so the backward is one pass where the composed graph had
    separate softmax, entropy and KL nodes.
    """

    @staticmethod
    def forward(ctx, logits, centers, log_prior, mu, ys, y, auto_scale, span, weights, floor):
        lam_auto, alpha, lam_kl, lam_pred = weights
        a = mixture_logits_unchecked(ys, centers, log_prior)
        lifted = lift_logits(a, floor)
        keep = lifted == a  # the entries not lifted, which carry the gradient
        log_p = torch.log_softmax(lifted, dim=-1)
        p = log_p.exp()
        log_q = torch.log_softmax(logits, dim=-1)
        q = log_q.exp()
        e_r = (p @ mu - y) / auto_scale
        e_s = (q @ mu - y) / span
        n_rows, n_el = len(y), y.numel()
        d = log_p - log_q
        auto = e_r.pow(2).sum() / n_el
        pred = e_s.pow(2).sum() / n_el
        ent = -(p * log_p).sum() / n_rows
        kl = (p * d).sum() / n_rows
        total = lam_auto * (auto - alpha * ent) + lam_kl * kl + lam_pred * pred
        ctx.save_for_backward(p, q, log_p, d, e_r, e_s, keep, centers, mu, ys, span)
        ctx.constants = (lam_auto, alpha, lam_kl, lam_pred, auto_scale)
        terms = torch.stack([auto, ent, kl, pred])
        ctx.mark_non_differentiable(terms)
        return total, terms

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total, _grad_terms):
        p, q, log_p, d, e_r, e_s, keep, centers, mu, ys, span = ctx.saved_tensors
        lam_auto, alpha, lam_kl, lam_pred, auto_scale = ctx.constants
        n_rows, n_el = len(e_r), e_r.numel()
        g_r = e_r * (grad_total * 2.0 * lam_auto / (n_el * auto_scale))
        g_s = e_s * (grad_total * 2.0 * lam_pred / n_el) / span
        c_kl = grad_total * lam_kl / n_rows
        x = (g_r @ mu.T).add_(log_p, alpha=float(grad_total) * lam_auto * alpha / n_rows).add_(d * c_kl)
        grad_a = p * (x - (p * x).sum(-1, keepdim=True))
        grad_a = grad_a.masked_fill_(~keep, 0.0)
        g_q = g_s @ mu.T
        grad_l = q * (g_q - (q * g_q).sum(-1, keepdim=True)) + (q - p) * c_kl
        grad_beta = grad_a.sum(0)
        grad_u = grad_a.T @ ys - grad_beta[:, None] * centers
        grad_mu = p.T @ g_r + q.T @ g_s
        return grad_l, grad_u, grad_beta, grad_mu, None, None, None, None, None, None


def end_to_end_mse(logits: Tensor, centers: Tensor, log_prior: Tensor, mu: Tensor, ys: Tensor, y: Tensor,
                   auto_scale: float, span: Tensor, weights: tuple[float, float, float, float],
                   floor: float = math.inf) -> tuple[Tensor, Tensor]:
    """The end-to-end codec objective of [1] (Sec. 3.4, eq. 8) with squared-error terms, in one
    autograd node (no input checks: :class:`~beyondmse.heads.codec.EndToEndCodec` calls it on
    checked inputs).

    .. math::

        \\lambda_a\\Big[\\tfrac1n\\big\\|\\tfrac{\\mu^\\top\\psi - y}{s_a}\\big\\|^2 - \\alpha H(\\psi)\\Big]
        + \\lambda_{KL}\\,\\mathrm{KL}(\\psi\\,\\|\\,\\pi)
        + \\lambda_p\\tfrac1n\\big\\|\\tfrac{\\mu^\\top\\pi - y}{R}\\big\\|^2,

    with the encoder :math:`\\psi = \\mathrm{softmax}(a)`,
    :math:`a_{ik} = \\beta_k - \\frac12\\|\\tilde y_i - u_k\\|^2` (targets and centers in units of
    the encoder width, logits lifted to at most ``floor`` below each row's maximum), the
    classifier :math:`\\pi = \\mathrm{softmax}(l)`, :math:`n = N m`, entropy and KL averaged over
    the rows. The same value and gradients as composing :func:`decode`,
    :func:`entropy_from_logits` and :func:`kl_from_logits`, with each softmax computed once and
    one backward pass: at k = 25 and batch 256 a codec loss is dominated by per-operation
    overhead.

    Parameters
    ----------
    logits : Tensor, shape (N, k)
        Classifier logits :math:`l`.
    centers : Tensor, shape (k, m)
        Encoder centers in units of its width, :math:`u`.
    log_prior : Tensor, shape (k,)
    mu : Tensor, shape (k, m)
        Decoder.
    ys : Tensor, shape (N, m)
        Targets (clipped to the codec's box) in units of the encoder width, :math:`\\tilde y`.
    y : Tensor, shape (N, m)
        Targets.
    auto_scale : float
        :math:`s_a` (the head uses :math:`\\sigma\\sqrt2`).
    span : Tensor, shape (m,) or ()
        :math:`R`.
    weights : (lambda_auto, alpha, lambda_kl, lambda_pred)
    floor : float, default inf (no lift)

    Returns
    -------
    (total, terms)
        The scalar objective and the detached terms ``(auto, entropy, kl, pred)``, shape (4,).
    """
    return _EndToEndMSE.apply(logits, centers, log_prior, mu, ys, y, float(auto_scale), span,
                              tuple(float(w) for w in weights), float(floor))
