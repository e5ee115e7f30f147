"""Recipes of the tightness family: the multiple-targets head, ROT-Reg, and the ordinality
baselines RankSim, Ordinal Entropy and PH-Reg.

Registered recipes (family ``"tightness"``), all on the default MLP trunk:

* ``mt``       -- :class:`~beyondmse.heads.MultiTarget` head (M = ``n_targets`` regressors, MSE);
* ``rot``      -- linear head (MSE) + :class:`~beyondmse.regularizers.ROTReg`;
* ``ranksim``  -- linear head (MSE) + :class:`~beyondmse.regularizers.RankSim`;
* ``oe``       -- linear head (MSE) + :class:`~beyondmse.regularizers.OrdinalEntropy`;
* ``ph-reg``   -- linear head (MSE) + :class:`~beyondmse.regularizers.PHReg`.

The four regularizers are also ``+suffix`` specs (:class:`~beyondmse.methods.RegularizerSpec`)
named ``rot``, ``ranksim``, ``oe`` and ``ph-reg``, so they compose with any recipe:
``mt+rot`` (the paper's MT + L_ot), ``e2e-codec+rot``, ``nca-softstep-i+ph-reg``, ...
Their knobs are prefixed with the suffix name (``-`` becomes ``_``): ``rot_weight``,
``rot_gamma``, ``ranksim_weight``, ``ph_reg_topo_weight``, ...

Default weights are for targets min-max scaled to [0, 1] and an MSE task loss (the library's
convention); the papers' values were for raw-unit targets and L1 losses (see each class).
"""

from __future__ import annotations

from typing import Any

from .heads import Linear, MultiTarget
from .methods import Recipe, RegularizerSpec, register
from .regularizers import OrdinalEntropy, PHReg, RankSim, ROTReg

_REG_KNOBS: dict[str, dict[str, Any]] = {
    "rot": {"rot_weight": 1.0, "rot_gamma": 0.1, "rot_max_points": 512},
    "ranksim": {"ranksim_weight": 1.0, "ranksim_lambda": 2.0, "ranksim_max_points": 256},
    "oe": {"oe_weight": 0.1, "oe_tightness_weight": 1.0},
    "ph-reg": {"ph_reg_weight": 1.0, "ph_reg_topo_weight": 1.0, "ph_reg_dim_weight": 0.1,
               "ph_reg_max_points": 80},
}


def _make_rot(k: dict[str, Any]) -> ROTReg:
    return ROTReg(k["rot_weight"], gamma=k["rot_gamma"], max_points=k["rot_max_points"])


def _make_ranksim(k: dict[str, Any]) -> RankSim:
    return RankSim(k["ranksim_weight"], lambda_val=k["ranksim_lambda"], max_points=k["ranksim_max_points"])


def _make_oe(k: dict[str, Any]) -> OrdinalEntropy:
    return OrdinalEntropy(k["oe_weight"], tightness_weight=k["oe_tightness_weight"])


def _make_ph(k: dict[str, Any]) -> PHReg:
    return PHReg(k["ph_reg_weight"], topo_weight=k["ph_reg_topo_weight"], dim_weight=k["ph_reg_dim_weight"],
                 max_points=k["ph_reg_max_points"])


_MAKERS = {"rot": _make_rot, "ranksim": _make_ranksim, "oe": _make_oe, "ph-reg": _make_ph}
_SUMMARIES = {
    "rot": "ROT-Reg: align self entropic OT plans of features and targets (Zhang et al. 2025)",
    "ranksim": "RankSim: rank-similarity of features vs labels, blackbox-solver gradient (Gong et al. 2022)",
    "oe": "Ordinal Entropy: label-weighted feature diversity + tightness (Zhang et al. 2023)",
    "ph-reg": "PH-Reg: 0-dim persistent-homology topology + intrinsic-dimension terms (Zhang et al. 2024)",
}

for _name, _maker in _MAKERS.items():
    register(RegularizerSpec(_name, _SUMMARIES[_name], _maker, knobs=_REG_KNOBS[_name]))


def _linear(d: int, m: int, knobs: dict[str, Any]) -> Linear:
    return Linear(d, m, loss="mse")


def _regs(name: str):
    maker = _MAKERS[name]
    return lambda knobs: [maker(knobs)]


register(Recipe(
    "mt", "tightness", "multiple targets: M linear regressors on one embedding, averaged (Zhang et al. 2025)",
    lambda d, m, k: MultiTarget(d, m, n_targets=k["n_targets"], loss="mse"),
    knobs={"n_targets": 8},
))
for _name in _MAKERS:
    register(Recipe(_name, "tightness", "linear head (MSE) + " + _SUMMARIES[_name], _linear,
                    knobs=_REG_KNOBS[_name], make_regularizers=_regs(_name)))

__all__: list[str] = []
