"""``RegressionModel``: a trunk, a head and a list of regularizers, trained as one."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..distributed import gather_batch
from ..heads.base import Head, LossOutput
from ..regularizers.base import Regularizer


#: What :meth:`RegressionModel.forward` predicts: the head's own point (the mean of its
#: predictive distribution for codec and neighbor heads), or that distribution's median.
POINTS = ("mean", "median")


def check_point(point: str, head: Head) -> str:
    """``point`` if it is one of :data:`POINTS` and ``head`` can give it, else ValueError.

    The median needs a predictive distribution, which only the codec and neighbor heads have
    (:attr:`Head.has_distribution`)."""
    if point not in POINTS:
        raise ValueError(f"unknown point {point!r}; expected one of {POINTS}")
    if point == "median" and not head.has_distribution:
        raise ValueError(f"point='median' needs a head with a predictive distribution (a codec or neighbor "
                         f"head); {type(head).__name__} predicts a point only")
    return point


class RegressionModel(nn.Module):
    """``x -> z = trunk(x) -> head(z)``.

    ``point`` chooses the prediction. The mean of the predictive distribution (``"mean"``, every
    head's own output) minimises the expected squared error; its median (``"median"``) minimises
    the expected absolute error, so it is the point to report when a model is judged by MAE. The
    difference matters most where targets take few values (e.g. quality scores): a median lands
    on a level where a mean falls between two.

    The training objective is ``head.loss(z, y).total + sum(r(z, y) for r in regularizers)``;
    every part is returned by name in :meth:`training_loss` so the Trainer can log it. Inside a
    process group of several processes, ``z`` and ``y`` are first gathered from every rank
    (:func:`beyondmse.distributed.gather_batch`), so the batch-level losses see the global batch.
    """

    def __init__(self, trunk: nn.Module, head: Head, regularizers: Iterable[Regularizer] = (),
                 point: str = "mean"):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.regularizers = nn.ModuleList(regularizers)
        self.point = check_point(point, head)

    @property
    def target_dim(self) -> int:
        return self.head.target_dim

    def embed(self, x: Tensor) -> Tensor:
        """Embeddings ``(N, d)``."""
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:
        """Predictions ``(N, m)``: the head's own (``point="mean"``), or the median of its
        predictive distribution (``point="median"``; computed without gradient)."""
        z = self.trunk(x)
        if self.point == "median":
            with torch.no_grad():
                return self.head.predict_distribution(z).quantile(0.5).to(z.dtype)
        return self.head(z)

    def predict_distribution(self, x: Tensor, **options):
        """The head's predictive distribution on ``trunk(x)`` (a
        :class:`~beyondmse.distributions.Mixture` with batch shape (N, m)), in the units of the
        training targets; ``options`` go to the head's ``predict_distribution`` (e.g. ``kernel``
        for codecs, ``n_atoms`` and ``bandwidth`` for neighbor heads). Like :meth:`forward`,
        it uses the current mode: call ``eval()`` first. Raises
        :class:`~beyondmse.distributions.NoDistributionError` for a point head."""
        with torch.no_grad():
            return self.head.predict_distribution(self.trunk(x), **options)

    def training_loss(self, x: Tensor, y: Tensor) -> LossOutput:
        """The objective on this rank's rows ``x (n, ...)``, ``y (n, m)``; under several processes
        on the global batch gathered from all ranks (the same value on every rank)."""
        z, y = gather_batch(self.trunk(x), y)
        out = self.head.loss(z, y)
        total = out.total
        terms = dict(out.terms)
        for reg in self.regularizers:
            value = reg(z, y)
            terms[getattr(reg, "name", type(reg).__name__)] = value.detach()
            total = total + value
        return LossOutput(total, terms)

    @torch.no_grad()
    def fit_memory_from(self, x_train: Tensor, y_train: Tensor, batch_size: int = 4096) -> None:
        """For neighbor heads: embed the training inputs (in chunks) and store them in the head.

        Inside a process group of several processes every rank passes *its own part* of the
        training set (a collective: all ranks call it); the memory bank, the same on every rank,
        is the concatenation of all ranks' embeddings and targets in rank order.
        """
        if not self.head.needs_memory:
            return
        was_training = self.training
        self.eval()
        z = torch.cat([self.trunk(x_train[i:i + batch_size]) for i in range(0, len(x_train), batch_size)]
                      or [self.trunk(x_train)])  # a rank may hold no rows
        z, y_train = gather_batch(z, y_train)
        self.head.fit_memory(z, y_train)
        self.train(was_training)
