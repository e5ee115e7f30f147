"""Datasets: the registry, loaders (embedded, files, OpenML with a local cache), splits, scaling."""

from .builtin import register_builtin
from .dataset import Dataset
from .loading import load_dataset
from .registry import DATASETS, DatasetEntry, register_dataset
from .splits import PROTOCOLS, Splits, make_splits

register_builtin()


def _register_generated() -> None:
    """Generated tasks (synthetic 2-D surfaces, manifold coordinates) register themselves on import."""
    import importlib

    for module in ("synthetic", "coordinates"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise


_register_generated()

__all__ = ["Dataset", "DATASETS", "DatasetEntry", "PROTOCOLS", "Splits", "load_dataset", "make_splits",
           "register_dataset"]
