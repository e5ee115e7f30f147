"""Trunks: inputs -> embedding ``z`` of shape ``(N, d)``. Each exposes ``out_features`` (d)."""

from __future__ import annotations

from torch import Tensor, nn

from ..configurable import Configurable


def _with_embedding(layers: list[nn.Module], width: int, embedding_dim: int | None) -> tuple[nn.Sequential, int]:
    """``layers`` (ending at ``width`` features) plus an optional linear embedding layer of
    ``embedding_dim``; returns the Sequential and its output width."""
    if embedding_dim is not None:
        layers = [*layers, nn.Linear(width, embedding_dim)]
        width = embedding_dim
    return nn.Sequential(*layers), width


class MLP(Configurable, nn.Module):
    """Fully connected trunk: ``depth`` blocks of Linear -> ReLU -> Dropout.

    The regression-as-classification papers use hidden 128, dropout 0.3; the SoftStep paper
    uses hidden 200 followed by an embedding layer (``embedding_dim``), which is a final
    Linear without activation.

    Parameters
    ----------
    in_features : int
    hidden : int, default 128
    depth : int, default 2
        Number of hidden blocks (>= 1).
    dropout : float, default 0.3
    embedding_dim : int or None
        If given, a last linear layer maps to this dimension; otherwise ``out_features == hidden``.
    """

    def __init__(self, in_features: int, hidden: int = 128, depth: int = 2, dropout: float = 0.3,
                 embedding_dim: int | None = None):
        super().__init__()
        if in_features < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"MLP needs in_features, hidden, depth >= 1, got {in_features}, {hidden}, {depth}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.net, self.out_features = _with_embedding(layers, width, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallCNN(Configurable, nn.Module):
    """Three 3x3 stride-1 convolutions with 2x2 average pooling between them, then two
    fully connected layers of 256 with dropout 0.5. Input ``(N, C, H, W)``.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 28, channels: int = 32,
                 hidden: int = 256, dropout: float = 0.5, embedding_dim: int | None = None):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, 2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, 2),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1), nn.ReLU(),
        )
        side = image_size // 4
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(2 * channels * side * side, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        ]
        self.head, self.out_features = _with_embedding(layers, hidden, embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SmallCNN expects images (N, C, H, W), got {tuple(x.shape)}")
        return self.head(self.features(x))


class Identity(Configurable, nn.Module):
    """Pass precomputed features through unchanged (``out_features = in_features``)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.out_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def init_weights_(module: nn.Module, scheme: str | None) -> nn.Module:
    """Re-initialise every ``nn.Linear`` of ``module`` in place, in module order; returns it.

    Parameters
    ----------
    module : nn.Module
        Usually a whole :class:`~beyondmse.models.RegressionModel`: the coordinate-prediction
        protocol (PH-Reg's released script, used by the tightness paper's Table 3) initialises
        the head's Linear layer too, not only the trunk's.
    scheme : str or None
        ``"default"`` or None: keep PyTorch's initialisation. ``"normal-<std>"``, e.g.
        ``"normal-0.001"``: weights drawn from N(0, std^2), biases zero. Draws come from the
        global torch generator, so the same seed gives the same weights.
    """
    if scheme is None or scheme == "default":
        return module
    std = _normal_std(scheme)
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def _normal_std(scheme: str) -> float:
    kind, _, value = str(scheme).partition("-")
    try:
        std = float(value) if kind == "normal" else float("nan")
    except ValueError:
        std = float("nan")
    if not std > 0:  # also rejects NaN
        raise ValueError(f"unknown weight_init {scheme!r}; use 'default' or 'normal-<std>' with std > 0, "
                         "e.g. 'normal-0.001'")
    return std
