"""The head contract: embedding ``z`` of shape ``(N, d)`` -> predictions ``(N, m)``."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from ..configurable import Configurable

__all__ = ["Head", "LossOutput"]


class LossOutput(NamedTuple):
    """A head's training objective: the scalar to minimize and its named parts (for logging)."""

    total: Tensor
    terms: dict[str, Tensor]


class Head(Configurable, nn.Module):
    """Base class of every prediction head.

    Subclasses set ``target_dim`` (m) and implement :meth:`forward` (the inference path) and
    :meth:`loss` (the training objective). Data-dependent set-up goes in :meth:`fit_targets`
    (called once by the Trainer with the training targets) and, for neighbor heads, in
    :meth:`fit_memory` (called after training with the training embeddings).
    """

    target_dim: int
    #: True for heads whose inference path needs :meth:`fit_memory` first.
    needs_memory: bool = False
    #: True for heads that implement :meth:`predict_distribution` (codec and neighbor heads).
    has_distribution: bool = False

    def forward(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_targets(self, y_train: Tensor) -> None:
        """Data-dependent initialisation from the training targets ``(N, m)``; default: nothing."""

    def fit_memory(self, z_train: Tensor, y_train: Tensor) -> None:
        """Store the training embeddings ``(N, d)`` and targets ``(N, m)``; neighbor heads only."""

    def predict_distribution(self, z: Tensor):
        """The predictive distribution (:class:`beyondmse.distributions.Mixture`) of embeddings
        ``z`` (N, d). Codec and neighbor heads override this; a head that predicts a point only
        raises :class:`~beyondmse.distributions.NoDistributionError` (a ValueError)."""
        from ..distributions import NoDistributionError

        raise NoDistributionError(
            f"{type(self).__name__} predicts a point, not a distribution: predict_distribution needs a codec head "
            "(e.g. 'hl-gauss', 'soft-bin', 'e2e-codec') or a neighbor head ('nca', 'nca-softstep-g', ...); "
            "for intervals around a point model use split conformal (beyondmse.conformal)")
