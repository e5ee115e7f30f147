"""Saving and loading trained models as safetensors: tensors plus a JSON recipe, no pickle.

The file holds the model's ``state_dict`` and, in the safetensors metadata, the method name,
its parameters, the input shape and target dimension (and anything JSON-serializable the
caller adds, e.g. target scaling). Loading rebuilds the model through the method registry
and loads the tensors, so no code object is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .recipes import build_model
from .models.regression_model import RegressionModel

_META_KEY = "beyondmse"


def save_model(model: RegressionModel, path: str | Path, *, method: str, input_shape, target_dim: int,
               params: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) with what is needed to rebuild it."""
    path = Path(path)
    meta = {"method": method, "params": params or {}, "input_shape": list(input_shape),
            "target_dim": int(target_dim), "extra": extra or {}}
    # clone: safetensors refuses tensors that share storage
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(meta)})
    return path


def _resize_buffers(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Buffers whose size depends on data (a neighbor head's memory bank) take the saved shape."""
    for name, buf in list(model.named_buffers()):
        if name in state and buf.shape != state[name].shape:
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner.register_buffer(attr, torch.empty_like(state[name], dtype=buf.dtype, device=buf.device))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[RegressionModel, dict[str, Any]]:
    """Rebuild and load a model saved by :func:`save_model`; returns ``(model, metadata)``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such model file: {path}")
    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get(_META_KEY)
    if raw is None:
        raise ValueError(f"{path} is not a beyondmse model file (no '{_META_KEY}' metadata)")
    meta = json.loads(raw)
    model, _ = build_model(meta["method"], tuple(meta["input_shape"]), meta["target_dim"], meta["params"])
    state = load_file(str(path), device=str(device))
    _resize_buffers(model, state)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, meta
