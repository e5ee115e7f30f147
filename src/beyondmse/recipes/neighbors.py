"""Recipes of the neighbor family (SoftStep paper): NCA, NCA + SoftStep, differentiable kNN, sparsemax NCA.

Every recipe uses an MLP trunk of hidden size 200 ending in a linear embedding layer
(``embedding_dim``, default 64; the paper tuned 25-100) and mini-batches of 32, the paper's
defaults. Knobs:

``similarity``
    ``"l2"`` (negative squared Euclidean, default), ``"cosine"`` or ``"rbf"``.
``rbf_bandwidth``, ``learn_bandwidth``
    RBF kernel width and whether it is learned (only with ``similarity="rbf"``).
``l2_scale``, ``learn_scale``
    Factor on the negative squared distance and whether it is learned (``similarity="l2"``;
    default 1, fixed, as in the paper).
``softstep_l0``, ``softstep_u0``, ``softstep_t``
    Initial SoftStep parameters (NCA + SoftStep recipes).
``k_init``, ``rank_strength``, ``q``, ``t``
    DiffKNN: initial k as a fraction of the neighbor set, soft-rank strength, transition width
    and sharpness.
``chunk_size``
    Memory-bank block size at inference.
"""

from __future__ import annotations

from typing import Any

from ..similarity import make_similarity
from ..heads.neighbors import NCA, DiffKNN
from .base import Recipe, register

FAMILY = "neighbors"
PLOTS = "beyondmse.plots.neighbors"

_COMMON = {"similarity": "l2", "rbf_bandwidth": 1.0, "learn_bandwidth": False, "l2_scale": 1.0, "learn_scale": False,
           "chunk_size": 4096}
_SOFTSTEP = {"softstep_l0": 0.5, "softstep_u0": 0.5, "softstep_t": 0.5}
_DKNN = {"k_init": 0.1, "rank_strength": 1.0, "q": 4.0, "t": 0.75}


#: ``--tune`` ranges of the family's knobs (the similarity scale, SoftStep's initial (l, u), DiffKNN's k)
_SEARCH = {"l2_scale": ("log", 0.3, 100.0), "softstep_l0": ("float", 0.05, 0.95),
           "softstep_u0": ("float", 0.05, 0.95), "k_init": ("log", 0.01, 0.5)}


def _search(knobs: dict[str, Any]) -> dict[str, tuple]:
    return {k: v for k, v in _SEARCH.items() if k in knobs or k in _COMMON}


def _similarity(k: dict[str, Any]):
    if k["similarity"] == "rbf":
        return make_similarity("rbf", bandwidth=k["rbf_bandwidth"], learnable=bool(k["learn_bandwidth"]))
    if k["similarity"] == "l2":
        return make_similarity("l2", scale=k["l2_scale"], learnable=bool(k["learn_scale"]))
    return make_similarity(k["similarity"])


def _nca(softstep, normalization="softmax"):
    def make(d: int, m: int, k: dict[str, Any]):
        init = (k.get("softstep_l0", 0.5), k.get("softstep_u0", 0.5), k.get("softstep_t", 0.5))
        return NCA(d, m, similarity=_similarity(k), softstep=softstep, normalization=normalization,
                   softstep_init=init, chunk_size=int(k["chunk_size"]))
    return make


def _dknn(kind):
    def make(d: int, m: int, k: dict[str, Any]):
        return DiffKNN(d, m, similarity=_similarity(k), k=kind, k_init=k["k_init"], q=k["q"], t=k["t"],
                       rank_strength=k["rank_strength"], chunk_size=int(k["chunk_size"]))
    return make


register(Recipe("nca", FAMILY, "NCA head: softmax over batch similarities, memory-bank inference",
                _nca(None), knobs=dict(_COMMON), plots=PLOTS, search=_search(_COMMON)))
register(Recipe("nca-softstep-g", FAMILY, "NCA + SoftStep with global (l, u, t) (SoftStep Alg. 2)",
                _nca("global"), knobs={**_COMMON, **_SOFTSTEP}, plots=PLOTS, search=_search(_SOFTSTEP)))
register(Recipe("nca-softstep-i", FAMILY, "NCA + SoftStep with per-instance (l, u, t) (SoftStep Alg. 2)",
                _nca("instance"), knobs={**_COMMON, **_SOFTSTEP}, plots=PLOTS, search=_search(_SOFTSTEP)))
register(Recipe("dknn-softstep-g", FAMILY, "differentiable kNN, soft ranks + learned global k (SoftStep Alg. 1)",
                _dknn("global"), knobs={**_COMMON, **_DKNN}, plots=PLOTS, search=_search(_DKNN)))
register(Recipe("dknn-softstep-i", FAMILY, "differentiable kNN, soft ranks + per-instance k (SoftStep Alg. 1)",
                _dknn("instance"), knobs={**_COMMON, **_DKNN}, plots=PLOTS, search=_search(_DKNN)))
register(Recipe("nca-sparsemax", FAMILY, "NCA with sparsemax instead of softmax (entmax)",
                _nca(None, "sparsemax"), knobs=dict(_COMMON), plots=PLOTS, search=_search(_COMMON)))
