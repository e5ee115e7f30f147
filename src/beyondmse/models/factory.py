"""``make_trunk``: a trunk for an input shape from a flat settings dict (the recipes' trunk keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .trunks import MLP, Identity, SmallCNN

#: The one MLP every recipe shares unless a suite, a dataset preset or the user says otherwise:
#: two hidden layers of 200 with dropout 0.1 and a linear embedding of 64 (the SoftStep paper's
#: MLP(200) -> d). On cpu_act-num a linear head gets validation MSE 0.000589 on it against
#: 0.000738 on the earlier 128-wide, dropout-0.3 trunk without embedding (issue 12).
DEFAULT_MLP = {"hidden": 200, "depth": 2, "dropout": 0.1, "embedding_dim": 64}


def make_trunk(input_shape: tuple[int, ...], trunk: Mapping[str, Any]) -> nn.Module:
    """Pick the trunk for the input: MLP for vectors, SmallCNN for images, or ``trunk="identity"``.

    Parameters
    ----------
    input_shape : tuple of int
        One sample's shape: ``(D,)`` for feature vectors, ``(C, H, W)`` for images.
    trunk : mapping
        ``trunk`` (``"auto"``, ``"mlp"``, ``"tabular"`` (:mod:`beyondmse.models.tabular`), ``"cnn"``, ``"identity"`` or a pretrained backbone of
        :data:`~beyondmse.models.backbones.BACKBONES`, e.g. ``"efficientnet-lite0"``) plus the chosen trunk's
        constructor arguments (``hidden``, ``depth``, ``dropout``, ``embedding_dim``, ...).
    """
    trunk = dict(trunk)
    kind = trunk.pop("trunk", "auto")
    from .backbones import BACKBONES, make_backbone_trunk  # pretrained image backbones (issue 16)

    if kind in BACKBONES:
        return make_backbone_trunk(kind, tuple(input_shape), trunk)
    if kind == "tabular":  # robust scaling + numeric/level embeddings + MLP (issue 20)
        from .tabular import make_tabular_trunk

        return make_tabular_trunk(tuple(input_shape), trunk)
    if kind == "identity":
        if len(input_shape) != 1:
            raise ValueError(f"the identity trunk needs feature vectors, got input shape {input_shape}")
        return Identity(input_shape[0])
    if kind == "mlp" or (kind == "auto" and len(input_shape) == 1):
        if len(input_shape) != 1:
            raise ValueError(f"the MLP trunk needs feature vectors, got input shape {input_shape}")
        settings = {**DEFAULT_MLP, **trunk}
        if not settings.get("embedding_dim"):  # 0 says "no embedding layer" where None cannot be written (TOML)
            settings["embedding_dim"] = None
        return MLP(input_shape[0], **settings)
    if kind == "cnn" or (kind == "auto" and len(input_shape) == 3):
        if len(input_shape) != 3:
            raise ValueError(f"the CNN trunk needs images (C, H, W), got input shape {input_shape}")
        trunk.pop("depth", None)
        return SmallCNN(in_channels=input_shape[0], image_size=input_shape[1], **trunk)
    raise ValueError(f"no trunk {kind!r} for input shape {input_shape}; use 'mlp', 'tabular', 'cnn', 'identity' "
                     f"or a pretrained backbone ({', '.join(sorted(BACKBONES))})")


__all__ = ["DEFAULT_MLP", "make_trunk"]
