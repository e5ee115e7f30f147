"""Recipes of the regression-as-classification ("codec") family.

Registered names (family ``"codec"``), all on the shared trunk (:data:`beyondmse.models.DEFAULT_MLP`)
with a :class:`~beyondmse.heads.Codec` head of ``k`` classes (paper values 5, 15, 25):

* ``ls-softmax``    -- :math:`\\mu^\\top\\mathrm{softmax}(g(x))`, mu learned, square loss only;
* ``hard-bin``      -- k uniform bins, one-hot targets, cross-entropy, bin-midpoint decoder;
* ``soft-bin``      -- fixed Gaussian soft binning (sigma = lambda_sigma * spacing), KL loss;
* ``hl-gauss``      -- HL-Gauss bin probabilities (sigma = hl_sigma bin widths), KL loss;
* ``trained-codec`` -- stage 1 fits (encoder, mu) on the training targets (``stage1_steps`` Adam
  steps inside ``fit_targets``), then the classifier is trained with the KL to the frozen codec;
* ``e2e-codec``     -- the end-to-end objective over (encoder, mu, theta), its auto-encoding term
  in units of 2 sigma^2 and its prediction term in units of the target range
  (:class:`~beyondmse.heads.codec.EndToEndCodec`).

Each recipe builds its head with :meth:`Codec.for_mode(name, ...) <beyondmse.heads.Codec.for_mode>`.
:data:`PAPER_LAMBDA_KL` holds the papers' per-dataset lambda_KL (Beyond Binning, Table 6).

Knobs a user may override (e.g. ``params={"k": 15}``) are listed per recipe in ``knobs``.
"""

from __future__ import annotations

from typing import Any

from ..heads.codec import Codec
from .base import Recipe, register

_COMMON = {"k": 25, "init": "auto"}
_KNOBS: dict[str, dict[str, Any]] = {
    "ls-softmax": {**_COMMON},
    "hard-bin": {**_COMMON},
    "soft-bin": {**_COMMON, "lambda_sigma": 0.5},
    "hl-gauss": {**_COMMON, "hl_sigma": 0.75},
    "trained-codec": {**_COMMON, "lambda_sigma": 0.5, "alpha": 1e-6, "stage1_steps": 500, "stage1_lr": 1e-3},
    "e2e-codec": {**_COMMON, "lambda_sigma": 0.5, "alpha": 1e-6, "lambda_auto": 1.0, "lambda_kl": 1.0,
                  "lambda_pred": 1.0, "stage1_steps": 0},
}
#: ``--tune`` ranges: the number of classes and each codec's loss weights / widths. The loss
#: weights span several decades: the papers' lambda_KL sweep (Beyond Binning, Table 6) runs
#: from 0.068 to 3.163, and lambda_auto (in units of 2 sigma^2, see EndToEndCodec) has no
#: published value at all.
_SEARCH = {"k": ("choice", (5, 15, 25)), "lambda_sigma": ("log", 0.1, 2.0), "hl_sigma": ("log", 0.25, 2.0),
           "lambda_kl": ("log", 1e-3, 10.0), "lambda_auto": ("log", 1e-2, 1e2)}

#: Beyond Binning (Stewart, Bach, Berthet, AISTATS 2026), Table 6: the lambda_KL its sweep chose
#: for the end-to-end codec per dataset and k, with lambda_pred = 1 (dataset codes of its
#: Table 1 mapped to our names; SC, superconductivity, is not shipped here)
PAPER_LAMBDA_KL: dict[str, dict[int, float]] = {
    "wine_quality-num": {5: 0.068, 15: 0.068, 25: 0.316},
    "ailerons-num": {5: 0.068, 15: 0.068, 25: 0.147},
    "bike_sharing-num": {5: 0.068, 15: 0.068, 25: 0.068},
    "superconductivity": {5: 0.068, 15: 0.147, 25: 0.068},
    "elevators-num": {5: 0.068, 15: 0.068, 25: 0.147},
    "cpu_act-num": {5: 0.068, 15: 0.068, 25: 0.068},
    "diamonds-num": {5: 0.068, 15: 0.068, 25: 0.068},
    "retinamnist": {5: 0.147, 15: 3.163, 25: 0.147},
}


def paper_lambda_kl(dataset: str, k: int, default: float = 0.068) -> float:
    """The papers' lambda_KL for ``dataset`` at ``k`` classes (:data:`PAPER_LAMBDA_KL`), or
    ``default`` (their most frequent value) where the table has none."""
    return PAPER_LAMBDA_KL.get(dataset, {}).get(int(k), default)


_SUMMARIES = {
    "ls-softmax": "square loss on mu^T softmax(g(x)) with a learned mu (the extra-layer control)",
    "hard-bin": "k uniform bins, one-hot targets, cross-entropy, decoded with the bin midpoints",
    "soft-bin": "fixed Gaussian soft binning, KL loss, decoder = centers",
    "hl-gauss": "HL-Gauss: Gaussian-smoothed histogram targets (Imani & White 2018), KL loss",
    "trained-codec": "softmax codec pre-trained on the targets (stage 1), then KL to the frozen codec",
    "e2e-codec": "end-to-end codec: auto-encoding + KL + prediction terms over (w, mu, theta)",
}


def _maker(mode: str):
    def make_head(d: int, m: int, knobs: dict[str, Any]) -> Codec:
        return Codec.for_mode(mode, d, m, **knobs)

    return make_head


for _name, _knobs in _KNOBS.items():
    register(Recipe(_name, "codec", _SUMMARIES[_name], _maker(_name), knobs=_knobs, plots="beyondmse.plots.codec",
                    search={k: v for k, v in _SEARCH.items() if k in _knobs}))

__all__ = ["PAPER_LAMBDA_KL", "paper_lambda_kl"]
