"""The head contract: embedding ``z`` of shape ``(N, d)`` -> predictions ``(N, m)``."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class LossOutput(NamedTuple):
    """A head's training objective: the scalar to minimize and its named parts (for logging)."""

    total: Tensor
    terms: dict[str, Tensor]


class Head(nn.Module):
    """Base class of every prediction head.

    Subclasses set ``target_dim`` (m) and implement :meth:`forward` (the inference path) and
    :meth:`loss` (the training objective). Data-dependent set-up goes in :meth:`fit_targets`
    (called once by the Trainer with the training targets) and, for neighbor heads, in
    :meth:`fit_memory` (called after training with the training embeddings).
    """

    target_dim: int
    #: True for heads whose inference path needs :meth:`fit_memory` first.
    needs_memory: bool = False

    def forward(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_targets(self, y_train: Tensor) -> None:
        """Data-dependent initialisation from the training targets ``(N, m)``; default: nothing."""

    def fit_memory(self, z_train: Tensor, y_train: Tensor) -> None:
        """Store the training embeddings ``(N, d)`` and targets ``(N, m)``; neighbor heads only."""


def check_head_inputs(z: Tensor, y: Tensor | None, target_dim: int) -> None:
    """Raise a ``ValueError`` that names the problem for malformed ``z`` / ``y``."""
    if z.dim() != 2:
        raise ValueError(f"expected embeddings of shape (N, d), got {tuple(z.shape)}")
    if y is None:
        return
    if y.dim() != 2 or y.shape[1] != target_dim:
        raise ValueError(f"expected targets of shape (N, {target_dim}), got {tuple(y.shape)}")
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"z has {z.shape[0]} rows but y has {y.shape[0]}")


def zero_loss(z: Tensor) -> Tensor:
    """A zero that stays in the autograd graph, for degenerate batches."""
    return z.sum() * 0.0


__all__ = ["Head", "LossOutput", "check_head_inputs", "zero_loss", "torch"]
