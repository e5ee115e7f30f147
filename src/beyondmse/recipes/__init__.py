"""Named recipes: every method the CLI, the benchmark, the estimator and the tests can build.

Importing this package imports every module in it, and each module registers its family's
recipes with :func:`register`: :mod:`.baseline`, :mod:`.codec`, :mod:`.neighbors`,
:mod:`.tightness`, the ``+reg`` :mod:`.suffixes` and the scikit-learn :mod:`.peers`. A new
family is one new module here; nothing else in the package lists method names (the suites,
the report and the plots ask :func:`methods_in_family`).
"""

import importlib
import pkgutil

from .base import (PEERS, RECIPES, REGULARIZERS, TRAINER_KEYS, TRAINER_SEARCH, TRUNK_KEYS, PeerBaseline, Recipe, RegularizerSpec,
                   available_methods, build_model, families, is_peer, methods_in_family, parse_method, register,
                   search_space, split_params, trunk_trainer_defaults)


def load_families() -> list[str]:
    """Import every module of this package (each registers its recipes on import); idempotent.

    Discovery by listing the package keeps "a new family is a new file" true: there is no
    list of family modules to forget. Returns the module names imported.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


load_families()

__all__ = ["PEERS", "RECIPES", "REGULARIZERS", "TRAINER_KEYS", "TRAINER_SEARCH", "TRUNK_KEYS", "PeerBaseline", "Recipe",
           "RegularizerSpec", "available_methods", "build_model", "families", "is_peer", "load_families",
           "methods_in_family", "parse_method", "register", "search_space", "split_params", "trunk_trainer_defaults"]
