"""The baselines every other recipe is compared with: least squares and Huber on a linear head."""

from __future__ import annotations

from ..heads import Linear
from .base import Recipe, register

register(Recipe(
    "ls", "baseline", "least squares on a linear head (the MSE baseline)",
    lambda d, m, k: Linear(d, m, loss="mse"),
))
register(Recipe(
    "huber", "baseline", "Huber loss (delta on the [0, 1] target scale) on a linear head",
    lambda d, m, k: Linear(d, m, loss="huber", huber_delta=k["huber_delta"]),
    knobs={"huber_delta": 0.1}, search={"huber_delta": ("log", 0.01, 1.0)},
))

__all__: list[str] = []
