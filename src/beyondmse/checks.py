"""Small input checks and helpers shared by heads and regularizers.

They raise ``ValueError`` with a message that names the argument and shows what was expected
and what was given (never ``assert`` on user input).
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["check_positive", "check_batch", "check_head_inputs", "zero_loss"]


def check_positive(name: str, value, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number > 0.

    Parameters
    ----------
    name : str
        Argument name used in the message.
    value : object
        The value to check; ``bool`` is accepted as an int, like Python does.
    allow_none : bool, default False
        Accept ``None`` (an optional argument left unset).
    """
    if allow_none and value is None:
        return
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_batch(name: str, z: Tensor, y: Tensor, min_n: int = 3) -> None:
    """Raise ``ValueError`` for a batch too small for a batch-wise regularizer, or for shapes
    other than ``z`` (N, d) and ``y`` (N, m) with the same N.

    Parameters
    ----------
    name : str
        The regularizer's name, used in the message.
    z : Tensor, shape (N, d)
    y : Tensor, shape (N, m)
    min_n : int, default 3
        Smallest batch size for which the regularizer is defined.
    """
    if z.dim() != 2 or y.dim() != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name} expects z (N, d) and y (N, m) with the same N, got {tuple(z.shape)} and {tuple(y.shape)}"
        )
    if z.shape[0] < min_n:
        raise ValueError(
            f"{name} is computed over the batch and needs a batch of at least {min_n} samples, "
            f"got {z.shape[0]}"
        )


def check_head_inputs(z: Tensor, y: Tensor | None, target_dim: int) -> None:
    """Raise ``ValueError`` naming the problem unless ``z`` is (N, d) and ``y`` (if given) is
    (N, ``target_dim``)."""
    if z.dim() != 2:
        raise ValueError(f"expected embeddings of shape (N, d), got {tuple(z.shape)}")
    if y is None:
        return
    if y.dim() != 2 or y.shape[1] != target_dim:
        raise ValueError(f"expected targets of shape (N, {target_dim}), got {tuple(y.shape)}")
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"z has {z.shape[0]} rows but y has {y.shape[0]}")


def zero_loss(z: Tensor) -> Tensor:
    """A zero that stays in the autograd graph (``z.sum() * 0``), for degenerate batches, so that
    ``backward`` still runs and every parameter gets a (zero) gradient."""
    return z.sum() * 0.0
