"""The ``+reg`` suffixes: each representation regularizer as a :class:`RegularizerSpec`.

``rot``, ``ranksim``, ``oe`` and ``ph-reg`` compose with any torch recipe (``mt+rot`` is the
tightness paper's MT + L_ot, ``e2e-codec+rot``, ``nca-softstep-i+ph-reg``, ...). Their knobs are
prefixed with the suffix name (``-`` becomes ``_``): ``rot_weight``, ``rot_gamma``,
``ranksim_weight``, ``ph_reg_topo_weight``, ...

Default weights are for targets min-max scaled to [0, 1] and an MSE task loss (the library's
convention); the papers' values were for raw-unit targets and L1 losses (see each class).
"""

from __future__ import annotations

from typing import Any

from ..regularizers import OrdinalEntropy, PHReg, RankSim, ROTReg
from .base import RegularizerSpec, register

SUFFIX_KNOBS: dict[str, dict[str, Any]] = {
    # rot_normalization "released" + rot_plan_grad "unrolled" + rot_max_points 200 is the
    # authors' released formulation (ROTReg.released); see ROTReg for the differences
    "rot": {"rot_weight": 1.0, "rot_gamma": 0.1, "rot_max_points": 512, "rot_normalization": "mean",
            "rot_plan_grad": "none", "rot_objective": "eq9"},
    "ranksim": {"ranksim_weight": 1.0, "ranksim_lambda": 2.0, "ranksim_max_points": 256},
    "oe": {"oe_weight": 0.1, "oe_tightness_weight": 1.0},
    "ph-reg": {"ph_reg_weight": 1.0, "ph_reg_topo_weight": 1.0, "ph_reg_dim_weight": 0.1,
               "ph_reg_max_points": 80},
}


#: ``--tune`` ranges of each regularizer's weight (and ROT's entropic gamma, RankSim's lambda)
SUFFIX_SEARCH: dict[str, dict[str, tuple]] = {
    "rot": {"rot_weight": ("log", 0.01, 100.0), "rot_gamma": ("log", 0.01, 1.0)},
    "ranksim": {"ranksim_weight": ("log", 0.01, 100.0), "ranksim_lambda": ("log", 0.5, 10.0)},
    "oe": {"oe_weight": ("log", 0.001, 10.0)},
    "ph-reg": {"ph_reg_topo_weight": ("log", 0.01, 100.0), "ph_reg_dim_weight": ("log", 0.001, 10.0)},
}


def _make_rot(k: dict[str, Any]) -> ROTReg:
    return ROTReg(k["rot_weight"], gamma=k["rot_gamma"], max_points=k["rot_max_points"],
                  normalization=k["rot_normalization"], plan_grad=k["rot_plan_grad"], objective=k["rot_objective"])


def _make_ranksim(k: dict[str, Any]) -> RankSim:
    return RankSim(k["ranksim_weight"], lambda_val=k["ranksim_lambda"], max_points=k["ranksim_max_points"])


def _make_oe(k: dict[str, Any]) -> OrdinalEntropy:
    return OrdinalEntropy(k["oe_weight"], tightness_weight=k["oe_tightness_weight"])


def _make_ph(k: dict[str, Any]) -> PHReg:
    return PHReg(k["ph_reg_weight"], topo_weight=k["ph_reg_topo_weight"], dim_weight=k["ph_reg_dim_weight"],
                 max_points=k["ph_reg_max_points"])


_SUMMARIES = {
    "rot": "ROT-Reg: align self entropic OT plans of features and targets (Zhang et al. 2025)",
    "ranksim": "RankSim: rank-similarity of features vs labels, blackbox-solver gradient (Gong et al. 2022)",
    "oe": "Ordinal Entropy: label-weighted feature diversity + tightness (Zhang et al. 2023)",
    "ph-reg": "PH-Reg: 0-dim persistent-homology topology + intrinsic-dimension terms (Zhang et al. 2024)",
}
_MAKERS = {"rot": _make_rot, "ranksim": _make_ranksim, "oe": _make_oe, "ph-reg": _make_ph}

SUFFIXES = {name: register(RegularizerSpec(name, _SUMMARIES[name], make, knobs=SUFFIX_KNOBS[name],
                                           search=SUFFIX_SEARCH[name]))
            for name, make in _MAKERS.items()}

__all__ = ["SUFFIXES", "SUFFIX_KNOBS"]
