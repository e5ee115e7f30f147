"""Embeddings of a frozen pretrained backbone, computed once per (backbone, data, transform), kept on disk.

A frozen backbone is a fixed function of the image, so a suite of twenty methods on its
features needs one forward pass over the images, not twenty. :func:`embed_images` keys each
result by a sha256 over the backbone's name, the sha256 of its weight file, its transform
(resolution, channels, standardisation: :meth:`PretrainedBackbone.transform_key`) and the
images' bytes and shape; a change to any of them is a different key, so a stale entry is never
read. Entries are safetensors files (no pickle) under :func:`embedding_cache_dir`.

:func:`embed_dataset` turns an image :class:`~beyondmse.data.Dataset` into the table of its
frozen features (same targets and split): the scikit-learn peers run on it too, and the
datasets ``<name>-lite0`` registered here are RetinaMNIST seen through EfficientNet-Lite0.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..data.dataset import Dataset
from ..data.sources import user_cache_dir
from .backbones import BACKBONES, PretrainedBackbone

__all__ = ["embedding_cache_dir", "embed_images", "embed_dataset", "cache_key", "register_frozen_dataset"]


def embedding_cache_dir() -> Path | None:
    """``$BEYONDMSE_EMBEDDING_CACHE`` (a folder, or ``off`` to disable the cache), else
    ``<user cache>/embeddings`` (``$BEYONDMSE_CACHE`` or ``~/.cache/beyondmse``)."""
    env = os.environ.get("BEYONDMSE_EMBEDDING_CACHE")
    if env and env.strip().lower() in ("off", "0", "none", "false"):
        return None
    return Path(env).expanduser() if env else user_cache_dir() / "embeddings"


def _fingerprint(X: np.ndarray) -> str:
    digest = hashlib.sha256(f"{X.shape}|{X.dtype}".encode())
    digest.update(np.ascontiguousarray(X).data)
    return digest.hexdigest()


def cache_key(backbone: PretrainedBackbone, X: np.ndarray) -> str:
    """sha256 of the backbone's transform key and the images' fingerprint."""
    parts = {**backbone.transform_key(), "images": _fingerprint(X)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def embed_images(backbone: PretrainedBackbone, X: np.ndarray, *, batch_size: int = 100,
                 cache_dir: str | Path | None | bool = True) -> tuple[np.ndarray, bool]:
    """Features ``(N, d)`` float32 of images ``X (N, C, H, W)`` in [0, 1]; returns ``(features, hit)``.

    ``cache_dir``: True for :func:`embedding_cache_dir`, a folder, or False/None for no cache.
    ``hit`` says the features were read from the cache. Only a frozen backbone can be cached
    (ValueError otherwise). Computed in eval mode, in chunks of ``batch_size`` images.
    """
    if backbone._frozen is not True:
        raise ValueError("only a frozen backbone (freeze=True) has fixed features to cache")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4 or len(X) == 0:
        raise ValueError(f"embed_images expects images (N, C, H, W) with N >= 1, got shape {X.shape}")
    folder = embedding_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
    path = folder / f"{cache_key(backbone, X)}.safetensors" if folder is not None else None
    if path is not None and path.is_file():
        return load_file(str(path))["z"].numpy(), True
    was_training = backbone.training
    backbone.eval()
    try:
        device = next(backbone.parameters()).device
        z = torch.cat([backbone(torch.from_numpy(X[i:i + batch_size]).to(device)).cpu()
                       for i in range(0, len(X), batch_size)])
    finally:
        backbone.train(was_training)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"z": z.contiguous()}, str(tmp), metadata={"key": json.dumps(backbone.transform_key())})
        tmp.replace(path)  # atomic: a parallel worker never reads half a file
    return z.numpy(), False


def embed_dataset(ds: Dataset, backbone: str = "efficientnet-lite0", resolution: int | None = None,
                  name: str | None = None, cache_dir: str | Path | None | bool = True) -> Dataset:
    """The frozen features of image dataset ``ds`` as a table (same targets, split and protocol)."""
    if ds.X.ndim != 4:
        raise ValueError(f"dataset {ds.name!r} holds no images (X shape {ds.X.shape}); embed_dataset needs (N, C, H, W)")
    with torch.random.fork_rng(devices=[]):
        net = PretrainedBackbone(backbone, freeze=True, resolution=resolution, in_channels=ds.X.shape[1])
    z, _ = embed_images(net, ds.X, cache_dir=cache_dir)
    return Dataset(name or f"{ds.name}-{backbone}", z, ds.y, [f"{backbone}:{i}" for i in range(z.shape[1])],
                   ds.target_names, f"{ds.source} -> {backbone} features at {resolution or 'native'} px (frozen)",
                   split=ds.split, paper_sizes=ds.paper_sizes, target_scaling=ds.target_scaling)


def register_frozen_dataset(name: str, base: str, backbone: str, resolution: int | None, summary: str) -> None:
    """Register ``name``: the frozen ``backbone`` features of registered image dataset ``base``."""
    from ..data.registry import DATASETS, register_dataset

    def load() -> Dataset:
        return embed_dataset(DATASETS[base].load(), backbone, resolution, name=name)

    def where() -> str:
        try:
            BACKBONES[backbone].weights_path()
        except ImportError as err:
            return f"needs {err}"
        return f"{DATASETS[base].where()} through {backbone} (cached in {embedding_cache_dir()})"

    register_dataset(name, summary, load, where, DATASETS[base].size)


#: RetinaMNIST's 28 x 28 images upsampled to 64 x 64 for EfficientNet-Lite0 (whose stride-32 stem
#: would leave a 1 x 1 map of a 28-pixel image); 64 keeps one pass over 1,600 images to seconds on a CPU
register_frozen_dataset("retinamnist-lite0", "retinamnist", "efficientnet-lite0", 64,
                        "RetinaMNIST through frozen ImageNet EfficientNet-Lite0 at 64 px: 1280 features, grade 0-4")
