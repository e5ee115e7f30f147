"""Linear heads: least squares / Huber on ``W z + b`` and the multiple-targets head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_head_inputs
from .base import Head, LossOutput

__all__ = ["Linear", "MultiTarget", "point_loss"]

_POINT_LOSSES = ("mse", "huber")


def point_loss(pred: Tensor, y: Tensor, kind: str = "mse", delta: float = 1.0) -> Tensor:
    """Mean pointwise regression loss between ``pred`` and ``y`` (same shape).

    ``kind="mse"`` is :math:`\\frac{1}{N}\\sum_i \\|\\hat y_i - y_i\\|^2 / m`;
    ``kind="huber"`` is the Huber loss with threshold ``delta`` averaged the same way.
    """
    if kind == "mse":
        return F.mse_loss(pred, y)
    if kind == "huber":
        return F.huber_loss(pred, y, delta=delta)
    raise ValueError(f"unknown loss {kind!r}; expected one of {_POINT_LOSSES}")


class Linear(Head):
    """The baseline head: :math:`\\hat y = W z + b`, trained with MSE or Huber.

    Parameters
    ----------
    in_features : int
        Embedding dimension d.
    target_dim : int
        Target dimension m.
    loss : {"mse", "huber"}
        Training loss.
    huber_delta : float
        Huber threshold (targets are usually scaled to [0, 1], so the default 1.0 is MSE-like;
        the ``huber`` recipe uses 0.1).
    """

    def __init__(self, in_features: int, target_dim: int = 1, loss: str = "mse", huber_delta: float = 1.0):
        super().__init__()
        if loss not in _POINT_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {_POINT_LOSSES}")
        if huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
        self.target_dim = target_dim
        self.loss_kind = loss
        self.huber_delta = huber_delta
        self.fc = nn.Linear(in_features, target_dim)

    def forward(self, z: Tensor) -> Tensor:
        check_head_inputs(z, None, self.target_dim)
        return self.fc(z)

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        check_head_inputs(z, y, self.target_dim)
        value = point_loss(self.fc(z), y, self.loss_kind, self.huber_delta)
        return LossOutput(value, {self.loss_kind: value.detach()})


class MultiTarget(Head):
    r"""Multiple targets: M linear regressors on the same embedding, averaged at inference.

    Each regressor :math:`\hat y^{(k)} = W_k z + b_k` is trained with the task loss against
    the same target, i.e. the target is expanded to :math:`[y, \dots, y]` (Eq. 6 of Zhang et al.,
    "Improving deep regression with tightness", ICLR 2025): the loss is
    :math:`\frac{1}{M}\sum_k \ell(\hat y^{(k)}, y)`, and the prediction is
    :math:`\hat y = \frac{1}{M}\sum_k \hat y^{(k)}`. Training M regressors pulls the
    embedding into a space where the target varies along M (random) directions, which tightens
    the feature manifold around the target manifold.

    Parameters
    ----------
    in_features : int
        Embedding dimension d.
    target_dim : int, default 1
        Target dimension m; the head has ``M * m`` outputs.
    n_targets : int, default 8
        M, the number of regressors (>= 1). ``n_targets=1`` is exactly :class:`Linear` (same
        initial draw, same outputs).
    loss : {"mse", "huber"}
    huber_delta : float, default 1.0
    independent_init : bool, default True
        Keep the regressors' own (PyTorch default) initialisation when a model-wide
        ``weight_init`` re-initialises every ``nn.Linear``. With the coordinate protocol's
        N(0, 0.001^2) init, M near-zero regressors all receive the same gradient
        :math:`(\hat y^{(k)} - y) z \approx -y z` and collapse into one (the smallest cosine
        between them ends above 0.99), which makes MT a single head. The paper's Sec. 5.4
        notes that the regressors' update directions align but that they do not collapse,
        so their initial draws must differ by more than the updates. ``False`` lets a
        model-wide scheme reach them (the regressors are then a plain ``nn.Linear``).

    Shapes: ``z`` (N, d) -> predictions (N, m); ``y`` (N, m).

    Examples
    --------
    >>> import torch
    >>> head = MultiTarget(16, target_dim=2, n_targets=4)
    >>> head(torch.zeros(3, 16)).shape
    torch.Size([3, 2])
    """

    def __init__(self, in_features: int, target_dim: int = 1, n_targets: int = 8, loss: str = "mse",
                 huber_delta: float = 1.0, independent_init: bool = True):
        super().__init__()
        if loss not in _POINT_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {_POINT_LOSSES}")
        if huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
        if not (isinstance(n_targets, int) and n_targets >= 1):
            raise ValueError(f"n_targets (M) must be an int >= 1, got {n_targets!r}")
        if target_dim < 1:
            raise ValueError(f"target_dim must be >= 1, got {target_dim}")
        self.target_dim = target_dim
        self.n_targets = n_targets
        self.loss_kind = loss
        self.huber_delta = huber_delta
        self.independent_init = bool(independent_init)
        # one layer with M*m outputs: with M = 1 it is initialised exactly like Linear's
        layer = nn.Linear(in_features, n_targets * target_dim)
        self.fc = _OwnInitLinear(layer) if self.independent_init else layer

    def all_predictions(self, z: Tensor) -> Tensor:
        """The M regressors' predictions, shape (N, M, m)."""
        check_head_inputs(z, None, self.target_dim)
        return self.fc(z).view(z.shape[0], self.n_targets, self.target_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.all_predictions(z).mean(dim=1)

    def loss(self, z: Tensor, y: Tensor) -> LossOutput:
        check_head_inputs(z, y, self.target_dim)
        pred = self.all_predictions(z)
        value = point_loss(pred, y.unsqueeze(1).expand_as(pred), self.loss_kind, self.huber_delta)
        return LossOutput(value, {self.loss_kind: value.detach()})

    def predict_distribution(self, z: Tensor):
        """Not available: the M regressors are all trained on the same target, so their spread
        measures how the heads differ, not the uncertainty about y (they are no ensemble of
        independent fits and no distribution). Raises
        :class:`~beyondmse.distributions.NoDistributionError`."""
        from ..distributions import NoDistributionError

        raise NoDistributionError(
            "MultiTarget's M regressors all fit the same target: their spread is not a predictive distribution, "
            "so predict_distribution is not offered; use a codec or neighbor head, or split conformal "
            "(beyondmse.conformal) around the point prediction")


class _OwnInitLinear(nn.Module):
    """A linear layer that is not an ``nn.Linear``, so that model-wide re-initialisation
    (``beyondmse.models.init_weights_``) leaves its draw alone; same ``weight``/``bias`` names."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone())

    def forward(self, z: Tensor) -> Tensor:
        return F.linear(z, self.weight, self.bias)
