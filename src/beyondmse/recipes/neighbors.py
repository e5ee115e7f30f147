"""Recipes of the neighbor family (SoftStep paper): NCA, NCA + SoftStep, differentiable kNN, sparsemax NCA.

The trunk and trainer are the shared ones (:mod:`beyondmse.recipes.base`), so a neighbor head
is compared with ``ls`` on the same trunk, batch size, budget and selection metric. Knobs:

``similarity``
    ``"l2"``: negative Euclidean distance (the paper's "negative l2 distance", default),
    ``"l2sq"``: negative squared distance, ``"cosine"``, or ``"rbf"`` (Gaussian kernel over a
    learned temperature; see :class:`beyondmse.similarity.RBF`).
``l2_scale``, ``learn_scale``
    Factor on the (squared) distance, starting at 1, and whether it is learned (``"l2"``,
    ``"l2sq"``): learned for ``nca`` and the DiffKNN recipes, fixed for NCA + SoftStep and
    sparsemax (see "Defaults" below).
``rbf_bandwidth``, ``learn_bandwidth``, ``rbf_temperature``, ``learn_temperature``
    RBF kernel width and softmax temperature, and whether each is learned.
``softstep_l0``, ``softstep_u0``, ``softstep_t``
    Initial SoftStep parameters (NCA + SoftStep), default 0.5 each: ``sigmoid(0)``, the one
    initialisation of :mod:`beyondmse.heads.softstep_params`.
``softstep_lr_scale``, ``k_lr_scale``
    Learning-rate multipliers of the SoftStep parameters and of DiffKNN's k.
``k_init``, ``rank_strength``, ``q``, ``t``
    DiffKNN: initial kept fraction (0.5, ``sigmoid(0)``), soft-rank strength (0.1 average
    gaps: near the hard ranks inference uses, so the kept fractions agree; see
    :class:`~beyondmse.heads.DiffKNN`), transition width (ranks) and sharpness (the paper's
    q = 4, t = 0.75).
``chunk_size``
    Memory-bank block size at inference.
``search``, ``search_k``
    Memory-bank search at inference: ``"dense"`` (default; every stored point, in blocks) or
    ``"faiss"`` (``pip install 'beyondmse[faiss]'``; ``"l2"``/``"l2sq"`` only): exact candidate
    sets for NCA + SoftStep (the ball of non-zero weights) and DiffKNN (its top K), and for
    plain NCA the ``search_k`` nearest points with the dropped softmax mass bounded
    (:mod:`beyondmse.heads.faiss_search`).

Defaults, chosen on validation (issue 14). The SoftStep paper tuned similarity x embedding
dimension {25, 100} x batch {32, 128} on one dataset (its Appendix A). Here the shared trunk
(MLP 200-200, embedding 64, batch 256) was screened one axis at a time on wine_quality-num and
cpu_act-num (seed 0, the families protocol: 200-epoch cap, selection on validation RMSE), for
``nca``, ``nca-softstep-g`` and ``dknn-softstep-g``. Validation RMSE, wine / cpu_act:

* ``nca``: fixed scale (the paper's plain l2) .1217 / .0318; learned scale **.1133 / .0261**;
  ``rbf`` (learned temperature) .1141 / .0273; ``l2sq`` .1178 / .0287. Embedding 25 or 100 and
  batch 32 or 128 moved it by less than 1% on wine and 1-6% on cpu_act, against 7% and 18% for
  the learned scale: a softmax over a fixed scale is too flat, whatever the trunk.
* ``dknn-softstep-g``: fixed .1186 / .0312; learned scale .1194 / **.0266**; ``rbf`` .1169 /
  .0276; ``l2sq`` **.1145** / .0289; embedding 25 / 100 within 1.1% of the fixed default;
  batch 32 .1233 / .0274 and 128 .1193 / .0305 (worse on wine, better on cpu_act). All
  three alternatives beat the fixed l2 on cpu_act by 7-15%; the learned l2 scale is best on
  average (its 0.6% loss on wine is within seed noise) and keeps the paper's similarity. The
  instance-wise head shares the choice.
* ``nca-softstep-g``: the defaults .1104 / .0254 are within 0.3% / 2.1% of the best variant
  (learned scale .1110 / .0260, ``l2sq`` .1122 / .0249, ``rbf`` .1116 / .0282, embedding 100
  .1100 / .0272, batch 128 .1117 / .0256, batch 32 .1143 / .0272): SoftStep's min-max
  normalisation makes it insensitive to the scale.

Embedding dimension and batch size stay the shared trunk's (64, 256), so every head is compared
with ``ls`` on one footing (issue 12).
"""

from __future__ import annotations

import inspect
from typing import Any

from ..heads.neighbors import NCA, DiffKNN
from ..heads.softstep_params import DEFAULT_INIT
from ..normalizers import Softmax, Sparsemax
from ..similarity import make_similarity
from .base import Recipe, register

FAMILY = "neighbors"
PLOTS = "beyondmse.plots.neighbors"

_COMMON = {"similarity": "l2", "l2_scale": 1.0, "learn_scale": False, "rbf_bandwidth": 1.0, "learn_bandwidth": False,
           "rbf_temperature": 0.1, "learn_temperature": True, "chunk_size": 4096, "search": "dense", "search_k": 1024}
#: the recipes whose softmax sees the similarity's scale learn it (validation screen in the docstring)
_LEARNED_SCALE = {"learn_scale": True}
_SOFTSTEP = {"softstep_l0": DEFAULT_INIT[0], "softstep_u0": DEFAULT_INIT[1], "softstep_t": DEFAULT_INIT[2],
             "softstep_lr_scale": 1.0}


def _head_defaults(head: type, *names: str) -> dict[str, Any]:
    """The head's own keyword defaults, so a recipe's knob table cannot drift from the head's."""
    params = inspect.signature(head.__init__).parameters
    return {name: params[name].default for name in names}


_DKNN = _head_defaults(DiffKNN, "k_init", "k_lr_scale", "rank_strength", "q", "t")


#: ``--tune`` ranges of the family's knobs (the similarity scale, SoftStep's initial (l, u), DiffKNN's k)
_SEARCH = {"l2_scale": ("log", 0.3, 100.0), "softstep_l0": ("float", 0.05, 0.95),
           "softstep_u0": ("float", 0.05, 0.95), "k_init": ("float", 0.05, 0.95)}


def _search(knobs: dict[str, Any]) -> dict[str, tuple]:
    return {k: v for k, v in _SEARCH.items() if k in knobs or k in _COMMON}


def _similarity(k: dict[str, Any]):
    if k["similarity"] == "rbf":
        return make_similarity("rbf", bandwidth=k["rbf_bandwidth"], learnable=bool(k["learn_bandwidth"]),
                               temperature=k["rbf_temperature"], learn_temperature=bool(k["learn_temperature"]))
    if k["similarity"] in ("l2", "l2sq"):
        return make_similarity(k["similarity"], scale=k["l2_scale"], learnable=bool(k["learn_scale"]))
    return make_similarity(k["similarity"])


def _nca(softstep, normalizer=Softmax):
    def make(d: int, m: int, k: dict[str, Any]):
        init = tuple(k.get(f"softstep_{p}", v) for p, v in zip(("l0", "u0", "t"), DEFAULT_INIT))
        return NCA(d, m, similarity=_similarity(k), normalizer=normalizer(), softstep=softstep,
                   softstep_init=init, softstep_lr_scale=float(k.get("softstep_lr_scale", 1.0)),
                   chunk_size=int(k["chunk_size"]), search=k["search"], search_k=int(k["search_k"]))
    return make


def _dknn(kind):
    def make(d: int, m: int, k: dict[str, Any]):
        return DiffKNN(d, m, similarity=_similarity(k), k=kind, k_init=k["k_init"], k_lr_scale=float(k["k_lr_scale"]),
                       q=k["q"], t=k["t"], rank_strength=k["rank_strength"], chunk_size=int(k["chunk_size"]),
                       search=k["search"])
    return make


register(Recipe("nca", FAMILY, "NCA head: softmax over batch similarities, memory-bank inference",
                _nca(None), knobs={**_COMMON, **_LEARNED_SCALE}, plots=PLOTS, search=_search(_COMMON)))
register(Recipe("nca-softstep-g", FAMILY, "NCA + SoftStep with global (l, u, t) (SoftStep Alg. 2)",
                _nca("global"), knobs={**_COMMON, **_SOFTSTEP}, plots=PLOTS, search=_search(_SOFTSTEP)))
register(Recipe("nca-softstep-i", FAMILY, "NCA + SoftStep with per-instance (l, u, t) (SoftStep Alg. 2)",
                _nca("instance"), knobs={**_COMMON, **_SOFTSTEP}, plots=PLOTS, search=_search(_SOFTSTEP)))
register(Recipe("dknn-softstep-g", FAMILY, "differentiable kNN, soft ranks + learned global k (SoftStep Alg. 1)",
                _dknn("global"), knobs={**_COMMON, **_LEARNED_SCALE, **_DKNN}, plots=PLOTS, search=_search(_DKNN)))
register(Recipe("dknn-softstep-i", FAMILY, "differentiable kNN, soft ranks + per-instance k (SoftStep Alg. 1)",
                _dknn("instance"), knobs={**_COMMON, **_LEARNED_SCALE, **_DKNN}, plots=PLOTS, search=_search(_DKNN)))
register(Recipe("nca-sparsemax", FAMILY, "NCA with sparsemax instead of softmax (entmax)",
                _nca(None, Sparsemax), knobs=dict(_COMMON), plots=PLOTS, search=_search(_COMMON)))
