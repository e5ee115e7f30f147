"""Datasets: the registry, loaders (embedded, files, OpenML with a local cache), splits, scaling."""

from .builtin import register_builtin
from .presets import PRESETS, Preset, get_preset, register_builtin_presets, register_preset
from .dataset import Dataset
from .loading import load_dataset
from .registry import DATASETS, DatasetEntry, register_dataset
from .splits import PROTOCOLS, Splits, make_splits

register_builtin()
register_builtin_presets()


# generated tasks (SoftStep's 2-D surfaces, the manifold coordinates) register themselves on import
from . import coordinates, synthetic, unstructured  # noqa: E402,F401

__all__ = ["Dataset", "DATASETS", "DatasetEntry", "PRESETS", "PROTOCOLS", "Preset", "Splits", "get_preset",
           "load_dataset", "make_splits", "register_dataset", "register_preset"]
