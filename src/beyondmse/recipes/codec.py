"""Recipes of the regression-as-classification ("codec") family.

Registered names (family ``"codec"``), all on the default MLP trunk (hidden 128, dropout 0.3)
with a :class:`~beyondmse.heads.Codec` head of ``k`` classes (paper values 5, 15, 25):

* ``ls-softmax``    -- :math:`\\mu^\\top\\mathrm{softmax}(g(x))`, mu learned, square loss only;
* ``hard-bin``      -- k uniform bins, one-hot targets, cross-entropy, bin-midpoint decoder;
* ``soft-bin``      -- fixed Gaussian soft binning (sigma = lambda_sigma * spacing), KL loss;
* ``hl-gauss``      -- HL-Gauss bin probabilities (sigma = hl_sigma bin widths), KL loss;
* ``trained-codec`` -- stage 1 fits (w, mu) on the training targets (``stage1_steps`` Adam
  steps inside ``fit_targets``), then the classifier is trained with the KL to the frozen codec;
* ``e2e-codec``     -- the end-to-end objective over (w, mu, theta).

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
    "trained-codec": {**_COMMON, "lambda_sigma": 0.5, "alpha": 1e-6, "stage1_steps": 500, "stage1_lr": 1e-3,
                      "encoder_scale": "sigma"},
    "e2e-codec": {**_COMMON, "lambda_sigma": 0.5, "alpha": 1e-6, "lambda_auto": 1.0, "lambda_kl": 0.068,
                  "lambda_pred": 1.0, "stage1_steps": 0, "encoder_scale": "raw"},
}
#: ``--tune`` ranges: the number of classes and each codec's loss weights / widths
_SEARCH = {"k": ("choice", (5, 15, 25)), "lambda_sigma": ("log", 0.1, 2.0), "hl_sigma": ("log", 0.25, 2.0),
           "lambda_kl": ("log", 0.0068, 0.68), "lambda_auto": ("log", 0.1, 10.0)}
_SUMMARIES = {
    "ls-softmax": "square loss on mu^T softmax(g(x)) with a learned mu (the extra-layer control)",
    "hard-bin": "k uniform bins, one-hot targets, cross-entropy, decoded with the bin midpoints",
    "soft-bin": "fixed Gaussian soft binning (affine-logit encoder), KL loss, decoder = centers",
    "hl-gauss": "HL-Gauss: Gaussian-smoothed histogram targets (Imani & White 2018), KL loss",
    "trained-codec": "softmax codec pre-trained on the targets (stage 1), then KL to the frozen codec",
    "e2e-codec": "end-to-end codec: auto-encoding + KL + prediction terms over (w, mu, theta)",
}


def _maker(mode: str):
    def make_head(d: int, m: int, knobs: dict[str, Any]) -> Codec:
        return Codec(d, m, mode=mode, **knobs)

    return make_head


for _name, _knobs in _KNOBS.items():
    register(Recipe(_name, "codec", _SUMMARIES[_name], _maker(_name), knobs=_knobs, plots="beyondmse.plots.codec",
                    search={k: v for k, v in _SEARCH.items() if k in _knobs}))

__all__: list[str] = []
