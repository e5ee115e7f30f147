"""The recipe registry: a name -> (trunk settings, head, regularizers, trainer settings).

The CLI, the benchmark, :class:`~beyondmse.BeyondMSERegressor` and the tests all build
methods through :func:`build_model`, so a recipe means the same thing everywhere
(a registry in the style of timm).

A method name is a base recipe plus optional ``+reg`` suffixes, e.g. ``"e2e-codec+rot"``:
each suffix adds that regularizer (see :data:`REGULARIZERS`) to the base recipe.
Peer baselines from scikit-learn (``sk-hgb``, ``sk-knn``, ``sk-ridge``) are in
:data:`PEERS`; they are not torch models and are run by :mod:`beyondmse.experiment`.

Each family registers its recipes from its own module of this package (``baseline``, ``codec``,
``neighbors``, ``tightness``, ``suffixes``, ``peers``); ``import beyondmse.recipes`` imports them
all. A recipe's ``family`` is the only place a family's method names are listed:
:func:`methods_in_family` answers "which methods belong to the codec family" for the suites,
the report and the plots.

Parameters a user passes are one flat dict. Keys are routed by name:

* trunk keys (:data:`TRUNK_KEYS`): ``hidden``, ``depth``, ``dropout``, ``embedding_dim``, ``trunk``,
  for a pretrained backbone ``freeze`` and ``resolution``, for ``trunk="tabular"``
  ``num_embedding_dim`` and ``frequency_scale``;
* trainer keys (:data:`TRAINER_KEYS`): ``lr``, ``weight_decay``, ``batch_size``, ...;
* everything else must be a knob the recipe or one of its regularizers declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..heads.base import Head
from ..models import RegressionModel, init_weights_, make_trunk
from ..models.backbones import BACKBONES
from ..models.tabular import TABULAR_TRAINER
from ..models.user_trunk import embedding_width
from ..regularizers.base import Regularizer

TRUNK_KEYS = ("trunk", "hidden", "depth", "dropout", "embedding_dim", "weight_init", "freeze", "resolution",
              "num_embedding_dim", "frequency_scale")
TRAINER_KEYS = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "min_delta", "clip_norm",
                "optimizer", "eval_every", "select", "augment", "schedule")

#: The search space every torch method shares under ``--tune`` (the trainer's settings); a
#: recipe, suffix or peer adds its own knobs in ``search``. Each entry is ``("log", lo, hi)``,
#: ``("float", lo, hi)``, ``("int", lo, hi)`` or ``("choice", (values...))``.
TRAINER_SEARCH: dict[str, tuple] = {
    "lr": ("log", 1e-4, 1e-2),
    "weight_decay": ("log", 1e-6, 1e-2),
    "batch_size": ("choice", (64, 128, 256, 512)),
}


@dataclass(frozen=True)
class Recipe:
    """A named torch method.

    ``make_head(d, m, knobs)`` builds the head for embedding dimension d and target
    dimension m from the recipe's knobs (its ``knobs`` defaults overridden by the user).
    ``make_regularizers(knobs)`` builds the regularizers the recipe itself needs.
    ``family`` groups recipes (:func:`methods_in_family`); ``plots`` is the import path of the
    family's figure module, whose ``report_figures(records, out_dir)`` the report calls with
    the stored runs of this family (see :mod:`beyondmse.plots`).

    Every recipe trains on the same trunk and trainer settings (the defaults of
    :func:`~beyondmse.models.make_trunk` and :class:`~beyondmse.Trainer`), so that heads are
    compared on one footing. ``trunk`` and ``trainer`` are *declared exceptions* for a head that
    needs a setting of its own to work; ``why`` must then say why. The benchmark runs the
    baseline with the same exceptions too (see :mod:`beyondmse.bench.matching`), and the report
    prints them next to the method. ``search`` is the recipe's own part of the ``--tune``
    search space (added to :data:`TRAINER_SEARCH`).
    """

    name: str
    family: str
    summary: str
    make_head: Callable[[int, int, dict[str, Any]], Head]
    knobs: Mapping[str, Any] = field(default_factory=dict)
    make_regularizers: Callable[[dict[str, Any]], list[Regularizer]] = lambda knobs: []
    trunk: Mapping[str, Any] = field(default_factory=dict)
    trainer: Mapping[str, Any] = field(default_factory=dict)
    plots: str | None = None
    why: str = ""
    search: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        if (self.trunk or self.trainer) and not self.why:
            raise ValueError(f"recipe {self.name!r} departs from the shared trunk/trainer settings "
                             f"({dict(self.trunk)} {dict(self.trainer)}) without saying why")
        _check_search(self.name, self.search, self.knobs)


@dataclass(frozen=True)
class RegularizerSpec:
    """A ``+name`` suffix: a regularizer factory and its knobs (prefixed by the suffix name)."""

    name: str
    summary: str
    make: Callable[[dict[str, Any]], Regularizer]
    knobs: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        _check_search(self.name, self.search, self.knobs)


@dataclass(frozen=True)
class PeerBaseline:
    """A scikit-learn estimator run on the same splits and scaling as the deep recipes.

    ``make(knobs, seed)`` returns an unfitted estimator; if ``select`` names a knob and gives
    candidate values, the value with the lowest validation MAE is chosen (never the test split).
    """

    name: str
    summary: str
    make: Callable[[dict[str, Any], int], Any]
    knobs: Mapping[str, Any] = field(default_factory=dict)
    select: tuple[str, tuple[Any, ...]] | None = None
    search: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        _check_search(self.name, self.search, self.knobs)


def _check_search(name: str, search: Mapping[str, tuple], knobs: Mapping[str, Any]) -> None:
    """A search space names only declared knobs, each with a known kind of range."""
    for key, spec in search.items():
        if key not in knobs:
            raise ValueError(f"{name!r}: search space names {key!r}, which is not one of its knobs {sorted(knobs)}")
        if not spec or spec[0] not in ("log", "float", "int", "choice"):
            raise ValueError(f"{name!r}: search range of {key!r} must start with 'log', 'float', 'int' or "
                             f"'choice', got {spec!r}")


RECIPES: dict[str, Recipe] = {}
REGULARIZERS: dict[str, RegularizerSpec] = {}
PEERS: dict[str, PeerBaseline] = {}


def register(recipe: Recipe | RegularizerSpec | PeerBaseline):
    """Add a recipe, a ``+suffix`` regularizer or a peer baseline to its registry."""
    table = {Recipe: RECIPES, RegularizerSpec: REGULARIZERS, PeerBaseline: PEERS}[type(recipe)]
    if recipe.name in table:
        raise ValueError(f"{recipe.name!r} is registered twice")
    table[recipe.name] = recipe
    return recipe


def available_methods() -> list[str]:
    """Every base method name (recipes and peer baselines); any recipe also takes ``+reg`` suffixes."""
    return sorted(RECIPES) + sorted(PEERS)


def parse_method(name: str) -> tuple[str, list[str]]:
    """Split ``"base+reg1+reg2"`` into the base name and the suffixes; ValueError if unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"method name must be a non-empty string, got {name!r}")
    # a recipe may itself be named with a '+', like "mt+rot": take the longest registered prefix
    parts = name.split("+")
    for cut in range(len(parts), 0, -1):
        candidate = "+".join(parts[:cut])
        if candidate in RECIPES or candidate in PEERS:
            base, suffixes = candidate, parts[cut:]
            break
    else:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    if base in PEERS and suffixes:
        raise ValueError(f"peer baseline {base!r} takes no '+regularizer' suffix")
    for s in suffixes:
        if s not in REGULARIZERS:
            raise ValueError(f"unknown regularizer suffix '+{s}' in {name!r}; available: {sorted(REGULARIZERS)}")
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"a regularizer suffix is repeated in {name!r}")
    for s in suffixes:
        if base in RECIPES and set(REGULARIZERS[s].knobs) & set(RECIPES[base].knobs):
            raise ValueError(f"recipe {base!r} already includes the '{s}' regularizer; drop '+{s}'")
    return base, suffixes


def methods_in_family(family: str) -> list[str]:
    """The registered recipe names of ``family`` (``"codec"``, ``"neighbors"``, ...), in registration order."""
    return [name for name, recipe in RECIPES.items() if recipe.family == family]


def families() -> list[str]:
    """Every family that has at least one registered recipe, in registration order."""
    return list(dict.fromkeys(recipe.family for recipe in RECIPES.values()))


def search_space(name: str) -> dict[str, tuple]:
    """The ``--tune`` search space of method ``name``: the shared trainer settings plus the knobs
    its recipe and suffixes declare (a peer: its own ``search`` only)."""
    base, suffixes = parse_method(name)
    if base in PEERS:
        return dict(PEERS[base].search)
    space = {**TRAINER_SEARCH, **RECIPES[base].search}
    for s in suffixes:
        space.update(REGULARIZERS[s].search)
    return space


def is_peer(name: str) -> bool:
    base, _ = parse_method(name)
    return base in PEERS


def trunk_trainer_defaults(trunk: Mapping[str, Any]) -> dict:
    """The trainer settings a trunk brings with it (``trunk="tabular"``: :data:`~beyondmse.models.tabular.TABULAR_TRAINER`;
    other trunks: none), under the recipe's and the user's settings in :func:`split_params`."""
    return dict(TABULAR_TRAINER) if trunk.get("trunk") == "tabular" else {}


def split_params(name: str, params: Mapping[str, Any] | None) -> tuple[dict, dict, dict]:
    """Route a flat params dict to (trunk, trainer, knobs), filling defaults; ValueError on unknown keys."""
    base, suffixes = parse_method(name)
    params = dict(params or {})
    if base in PEERS:
        peer = PEERS[base]
        unknown = set(params) - set(peer.knobs)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {name!r}; known: {sorted(peer.knobs)}")
        return {}, {}, {**peer.knobs, **params}
    recipe = RECIPES[base]
    # ``point`` (mean or median of the predictive distribution) is a knob of every torch method;
    # build_model refuses the median for a head that has no distribution
    knob_defaults = {"point": "mean", **recipe.knobs}
    for s in suffixes:
        knob_defaults.update(REGULARIZERS[s].knobs)
    trunk = {**recipe.trunk, **{k: v for k, v in params.items() if k in TRUNK_KEYS}}
    # the trunk's training defaults, then the recipe's, then the user's
    trainer = {**trunk_trainer_defaults(trunk), **recipe.trainer,
               **{k: v for k, v in params.items() if k in TRAINER_KEYS}}
    rest = {k: v for k, v in params.items() if k not in TRUNK_KEYS and k not in TRAINER_KEYS}
    unknown = set(rest) - set(knob_defaults)
    if unknown:
        known = sorted(set(knob_defaults) | set(TRUNK_KEYS) | set(TRAINER_KEYS))
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {name!r}; known: {known}")
    return trunk, trainer, {**knob_defaults, **rest}


def build_model(name: str, input_shape: tuple[int, ...] | int, target_dim: int,
                params: Mapping[str, Any] | None = None,
                trunk: nn.Module | None = None) -> tuple[RegressionModel, dict[str, Any]]:
    """Build the torch model of method ``name`` and return it with its Trainer keyword arguments.

    ``trunk``: your own module instead of the recipe's trunk (any ``(N, *input_shape) -> (N, d)``
    module, e.g. a pretrained backbone; ``d`` is found by one dry forward pass,
    :func:`~beyondmse.models.user_trunk.embedding_width`). ``params`` may then hold no trunk
    settings.

    >>> model, trainer_kwargs = build_model("ls", input_shape=6, target_dim=1)
    >>> model(torch.zeros(4, 6)).shape
    torch.Size([4, 1])
    """
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if target_dim < 1:
        raise ValueError(f"target_dim must be >= 1, got {target_dim}")
    base, suffixes = parse_method(name)
    if base in PEERS:
        raise ValueError(f"{name!r} is a scikit-learn peer baseline, not a torch model")
    trunk_kw, trainer_kw, knobs = split_params(name, params)
    recipe = RECIPES[base]
    weight_init = trunk_kw.pop("weight_init", None)
    if trunk is not None:  # a user's module (issue 16)
        given = sorted(k for k in params or {} if k in TRUNK_KEYS)
        if given:
            raise ValueError(f"trunk settings {given} apply to the recipe's trunk, not to the module passed as trunk=")
        width = embedding_width(trunk, tuple(input_shape))
    else:
        if weight_init not in (None, "default") and trunk_kw.get("trunk") in BACKBONES:
            raise ValueError("weight_init re-initialises every Linear layer, which would erase the pretrained "
                             f"backbone {trunk_kw['trunk']!r}; leave weight_init unset")
        trunk = make_trunk(tuple(input_shape), trunk_kw)
        width = trunk.out_features
    # the head and the recipe's own regularizers see the recipe's knobs; each suffix sees its own
    own = {k: v for k, v in knobs.items() if k in recipe.knobs}
    head = recipe.make_head(width, target_dim, own)
    regs = list(recipe.make_regularizers(own))
    regs += [REGULARIZERS[s].make({k: v for k, v in knobs.items() if k in REGULARIZERS[s].knobs}) for s in suffixes]
    # after the head exists: the coordinate protocol re-initialises every Linear, the head's too
    model = RegressionModel(trunk, head, regs, point=knobs["point"])
    return init_weights_(model, weight_init), trainer_kw
