"""The dataset registry: name -> loader. ``beyondmse datasets`` lists it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .dataset import Dataset


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: ``load()`` returns a :class:`Dataset`; ``where()`` says where it
    would load from on this machine (or why it cannot); ``size`` is a short description."""

    name: str
    summary: str
    load: Callable[[], Dataset]
    where: Callable[[], str]
    size: str = ""


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, summary: str, load: Callable[[], Dataset],
                     where: Callable[[], str] = lambda: "generated", size: str = "") -> None:
    """Add a dataset to the registry (names are unique)."""
    if name in DATASETS:
        raise ValueError(f"dataset {name!r} is registered twice")
    DATASETS[name] = DatasetEntry(name, summary, load, where, size)
