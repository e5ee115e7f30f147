"""Recipes of the tightness family: the multiple-targets head, ROT-Reg, and the ordinality
baselines RankSim, Ordinal Entropy and PH-Reg.

Registered recipes (family ``"tightness"``), all on the default MLP trunk:

* ``mt``       -- :class:`~beyondmse.heads.MultiTarget` head (M = ``n_targets`` regressors, MSE);
* ``rot``      -- linear head (MSE) + :class:`~beyondmse.regularizers.ROTReg`;
* ``ranksim``  -- linear head (MSE) + :class:`~beyondmse.regularizers.RankSim`;
* ``oe``       -- linear head (MSE) + :class:`~beyondmse.regularizers.OrdinalEntropy`;
* ``ph-reg``   -- linear head (MSE) + :class:`~beyondmse.regularizers.PHReg`.

The regularizer recipes reuse the ``+suffix`` specs of :mod:`beyondmse.recipes.suffixes`
(same knobs, same factory), so ``rot`` and ``ls+rot`` build the same model.
"""

from __future__ import annotations

from typing import Any

from ..heads import Linear, MultiTarget
from .base import Recipe, register
from .suffixes import SUFFIXES

FAMILY = "tightness"
PLOTS = "beyondmse.plots.tightness"


def _linear(d: int, m: int, knobs: dict[str, Any]) -> Linear:
    return Linear(d, m, loss="mse")


def _regs(spec):
    return lambda knobs: [spec.make(knobs)]


register(Recipe(
    "mt", FAMILY, "multiple targets: M linear regressors on one embedding, averaged (Zhang et al. 2025)",
    lambda d, m, k: MultiTarget(d, m, n_targets=k["n_targets"], loss="mse",
                                independent_init=k["mt_independent_init"]),
    knobs={"n_targets": 8, "mt_independent_init": True}, plots=PLOTS, search={"n_targets": ("choice", (2, 4, 8, 16))},
))
for _name, _spec in SUFFIXES.items():
    register(Recipe(_name, FAMILY, "linear head (MSE) + " + _spec.summary, _linear,
                    knobs=_spec.knobs, make_regularizers=_regs(_spec), plots=PLOTS,
                    search=_spec.search))

__all__: list[str] = []
