"""Saving and loading any :class:`~beyondmse.RegressionModel`: safetensors + a JSON description, no pickle.

The file is one ``.safetensors`` file. Its tensors are the model's ``state_dict`` (weights,
and buffers such as a neighbor head's memory bank or a codec's fitted bins), plus a few
auxiliary tensors under ``__beyondmse__/``. Its metadata holds, as JSON:

* ``model``: how to rebuild the model -- for the trunk, the head and each regularizer, the
  class (``"module:QualName"``) and the constructor arguments the instance recorded
  (:class:`~beyondmse.configurable.Configurable`). Arguments may be numbers, strings,
  tuples, lists, dicts, tensors (stored as tensors) and other recorded modules (a head's
  ``similarity=``). A part that did not record its arguments (a user's own ``nn.Module``)
  is written as *opaque*: its weights are saved, and loading asks for the module;
* ``state``: plain attributes of every submodule that JSON can hold (e.g. a codec's stage-1
  objective), restored after the weights;
* optionally the recipe (``method``, ``params``, ``input_shape``, ``target_dim``) of a model
  built by :func:`beyondmse.recipes.build_model`, and anything JSON-serializable in ``extra``.

Loading imports classes only from ``beyondmse`` (and the modules the caller lists in
``trusted_modules``), checks that each is an ``nn.Module``, and never unpickles anything.

>>> import torch
>>> from beyondmse.heads import Linear
>>> from beyondmse.models import MLP, RegressionModel
>>> model = RegressionModel(MLP(3, hidden=8), Linear(8))
>>> path = save_model(model, getattr(__import__("tempfile"), "mkdtemp")() + "/m.safetensors")
>>> loaded, meta = load_model(path)
>>> torch.equal(loaded(torch.ones(2, 3)), model.eval()(torch.ones(2, 3)))
True
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .configurable import init_args
from .models.regression_model import RegressionModel

__all__ = ["load_model", "save_model"]

_META_KEY = "beyondmse"
_FORMAT = 2
_AUX = "__beyondmse__/"
_TRUSTED = ("beyondmse",)
#: attributes every nn.Module has: never part of a module's own state
_TORCH_INTERNALS = frozenset(nn.Module().__dict__) | {"_init_args"}


class _Undescribable(Exception):
    """A value the JSON description cannot hold (the reason is the message)."""


# --------------------------------------------------------------------------- encoding
class _Encoder:
    """JSON-able form of constructor arguments and attributes; tensors go to ``self.tensors``."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _tensor(self, t: torch.Tensor) -> str:
        key = f"{_AUX}{len(self.tensors)}"
        self.tensors[key] = t.detach().cpu().contiguous().clone()
        return key

    def __call__(self, v: Any, where: str, modules: bool = True) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, torch.Tensor):
            return {"__tensor__": self._tensor(v)}
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise _Undescribable(f"{where} is an object array")
            return {"__ndarray__": self._tensor(torch.from_numpy(np.ascontiguousarray(v)))}
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # a namedtuple would come back as a plain tuple
            raise _Undescribable(f"{where} is a namedtuple ({type(v).__qualname__})")
        if isinstance(v, tuple):
            return {"__tuple__": [self(x, f"{where}[{i}]", modules) for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self(x, f"{where}[{i}]", modules) for i, x in enumerate(v)]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise _Undescribable(f"{where} is a dict with non-string keys")
            return {"__dict__": {k: self(x, f"{where}[{k!r}]", modules) for k, x in v.items()}}
        if isinstance(v, torch.dtype):
            return {"__dtype__": str(v).removeprefix("torch.")}
        if isinstance(v, torch.device):
            return {"__device__": str(v)}
        if modules and isinstance(v, nn.Module):
            part = describe(v)
            if "opaque" in part:
                raise _Undescribable(f"{where}: {part['opaque']}")
            return {"__module__": part}
        raise _Undescribable(f"{where} is a {type(v).__module__}.{type(v).__qualname__}")


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], trusted: Sequence[str]):
        self.tensors, self.trusted = tensors, trusted

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) != 1:
            raise ValueError(f"malformed value in the model description: {v!r}")
        (tag, x), = v.items()
        if tag in ("__tensor__", "__ndarray__"):
            if x not in self.tensors:
                raise ValueError(f"the model description refers to a missing tensor {x!r}")
            t = self.tensors[x]
            return t.cpu().numpy() if tag == "__ndarray__" else t
        if tag == "__tuple__":
            return tuple(self(e) for e in x)
        if tag == "__dict__":
            return {k: self(e) for k, e in x.items()}
        if tag == "__dtype__":
            dtype = getattr(torch, str(x), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {x!r} in the model description")
            return dtype
        if tag == "__device__":
            return torch.device(x)
        if tag == "__module__":
            return build(x, self)
        raise ValueError(f"malformed value in the model description: {v!r}")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def describe(module: nn.Module) -> dict[str, Any]:
    """``{"class", "args", "kwargs"}`` (JSON, tensors as references) or ``{"class", "opaque": reason}``.

    Used through :func:`save_model`; the tensors of tensor arguments are collected by the
    encoder that :func:`save_model` passes down.
    """
    return _describe(module, _Encoder())


def _describe(module: nn.Module, enc: _Encoder) -> dict[str, Any]:
    cls = type(module)
    out: dict[str, Any] = {"class": _class_path(cls)}
    recorded = init_args(module)
    if recorded is None:
        out["opaque"] = (f"{cls.__qualname__} does not record its constructor arguments "
                         "(it does not inherit beyondmse.configurable.Configurable)")
        return out
    if "<locals>" in cls.__qualname__:
        out["opaque"] = f"{cls.__qualname__} is defined inside a function and cannot be imported"
        return out
    args, kwargs = recorded
    try:
        out["args"] = [enc(v, f"{cls.__qualname__} argument {i}") for i, v in enumerate(args)]
        out["kwargs"] = {k: enc(v, f"{cls.__qualname__} argument {k!r}") for k, v in kwargs.items()}
    except _Undescribable as err:
        return {"class": out["class"], "opaque": f"cannot store {err}"}
    return out


def _import_class(path: str, trusted: Sequence[str]) -> type:
    """The nn.Module class at ``"module:QualName"``, imported only from a trusted package."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"malformed class name {path!r} in the model description")
    mod_name, qualname = path.split(":")
    if not any(mod_name == t or mod_name.startswith(t + ".") for t in trusted):
        raise ValueError(f"the model description names class {path!r}, outside the trusted packages {list(trusted)}; "
                         "load_model will not import it. If you trust the file, pass trusted_modules="
                         f"({mod_name.split('.')[0]!r},), or build that part yourself and pass it "
                         "(trunk=..., head=..., regularizers=... or model=...)")
    parts = qualname.split(".")
    if not all(p.isidentifier() and not p.startswith("__") for p in parts):
        raise ValueError(f"malformed class name {path!r} in the model description")
    try:
        obj: Any = importlib.import_module(mod_name)
        for p in parts:
            obj = getattr(obj, p)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"the model description names class {path!r}, which does not exist here: {err}") from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{path!r} in the model description is not an nn.Module class")
    return obj


def build(part: dict[str, Any], dec: _Decoder) -> nn.Module:
    """Rebuild one described module (its weights are loaded afterwards)."""
    cls = _import_class(part.get("class"), dec.trusted)
    args = [dec(a) for a in part.get("args", [])]
    kwargs = {k: dec(v) for k, v in part.get("kwargs", {}).items()}
    return cls(*args, **kwargs)


# --------------------------------------------------------------------------- state
def _plain_state(model: nn.Module, enc: _Encoder) -> dict[str, dict[str, Any]]:
    """Per submodule, the plain attributes (not parameters, buffers or submodules) JSON can hold.

    Attributes it cannot hold (callables, arbitrary objects) are left to the constructor.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, mod in model.named_modules():
        attrs = {}
        for key, value in mod.__dict__.items():
            if key in _TORCH_INTERNALS or key.startswith("__") or isinstance(value, nn.Module):
                continue
            try:
                attrs[key] = enc(value, f"{name}.{key}", modules=False)
            except _Undescribable:
                continue
        if attrs:
            out[name] = attrs
    return out


def _restore_state(model: nn.Module, state: dict[str, dict[str, Any]], dec: _Decoder) -> None:
    for name, attrs in state.items():
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the saved state names submodule {name!r}, which the model does not have") from None
        for key, value in attrs.items():
            cls_attr = getattr(type(mod), key, None)
            if key.startswith("__") or callable(cls_attr) or isinstance(cls_attr, property):
                raise ValueError(f"the saved state would overwrite {type(mod).__name__}.{key}, a method or property")
            setattr(mod, key, dec(value))


def _non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, mod in model.named_modules():
        for b in mod._non_persistent_buffers_set:
            if mod._buffers.get(b) is not None:
                out[f"{name}.{b}" if name else b] = mod._buffers[b]
    return out


def _resize_buffers(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Buffers whose size depends on data (a neighbor head's memory bank) take the saved shape."""
    for name, buf in list(model.named_buffers()):
        if name in state and buf.shape != state[name].shape:
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            setattr(owner, attr, torch.empty_like(state[name], dtype=buf.dtype, device=buf.device))


# --------------------------------------------------------------------------- public API
def save_model(model: RegressionModel, path: str | Path, *, method: str | None = None,
               input_shape: Sequence[int] | None = None, target_dim: int | None = None,
               params: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``): its tensors and a JSON description.

    Parameters
    ----------
    model : RegressionModel
        Any trunk, head and regularizers. Parts that do not record their constructor
        arguments are saved as weights only; :func:`load_model` then needs them passed in.
    path : str or Path
    method, input_shape, target_dim, params : optional
        The recipe that built the model (:func:`beyondmse.recipes.build_model`); lets a file
        whose parts are not all describable be rebuilt through the registry.
        ``input_shape`` is required with ``method``.
    extra : dict, optional
        Anything JSON-serializable to keep with the model (e.g. the target scaling).
    """
    if not isinstance(model, RegressionModel):
        raise ValueError(f"save_model expects a RegressionModel, got {type(model).__name__}")
    if method is not None and input_shape is None:
        raise ValueError("save_model(method=...) also needs input_shape (one sample's shape) to rebuild the recipe")
    path = Path(path)
    enc = _Encoder()
    if type(model) is RegressionModel:
        desc: dict[str, Any] = {"class": _class_path(RegressionModel), "trunk": _describe(model.trunk, enc),
                                "head": _describe(model.head, enc),
                                "regularizers": [_describe(r, enc) for r in model.regularizers]}
    else:
        desc = {"class": _class_path(type(model)),
                "opaque": f"{type(model).__qualname__} is a subclass of RegressionModel"}
    state = model.state_dict()
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        # get_extra_state() values that are not tensors travel as JSON
        extra_state = {k: enc(v, k) for k, v in state.items() if not isinstance(v, torch.Tensor)}
        meta: dict[str, Any] = {"format": _FORMAT, "model": desc, "state": _plain_state(model, enc),
                                "extra_state": extra_state, "extra": dict(extra or {})}
    except _Undescribable as err:
        raise ValueError(f"cannot save: {err} (only numbers, strings, tuples, lists, dicts and tensors)") from None
    meta["buffers"] = {name: enc(buf, name)["__tensor__"] for name, buf in _non_persistent_buffers(model).items()}
    if method is not None:
        meta.update(method=method, params=params or {}, input_shape=[int(s) for s in input_shape],
                    target_dim=int(target_dim if target_dim is not None else model.target_dim))
    tensors.update(enc.tensors)
    try:
        text = json.dumps(meta)
    except TypeError as err:
        raise ValueError(f"save_model: extra must be JSON-serializable: {err}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={_META_KEY: text})
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"no such model file: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
    except Exception as err:  # safetensors raises its own error types for non-safetensors files
        raise ValueError(f"{path} is not a safetensors file: {err}") from None
    if raw is None:
        raise ValueError(f"{path} is not a beyondmse model file (no '{_META_KEY}' metadata)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed model description: {err}") from None


class _OpaquePart(ValueError):
    """A part the file cannot rebuild and the caller did not pass."""


def _part(name: str, desc: dict[str, Any], given: Any, dec: _Decoder) -> nn.Module:
    if given is not None:
        return given
    if "opaque" in desc:
        raise _OpaquePart(f"the saved {name} is a {desc['class']} that cannot be rebuilt from the file: "
                          f"{desc['opaque']}. Build one like it and pass load_model(path, {name}=...); "
                          "its weights are loaded into it")
    return build(desc, dec)


def _from_description(desc: dict[str, Any], trunk, head, regularizers, dec: _Decoder) -> RegressionModel:
    if "opaque" in desc:
        raise _OpaquePart(f"the saved model is a {desc['class']} ({desc['opaque']}); "
                          "build one like it and pass load_model(path, model=...)")
    if desc.get("class") != _class_path(RegressionModel):
        raise ValueError(f"malformed model description: class {desc.get('class')!r}")
    if regularizers is None:
        regularizers = [_part("regularizers", r, None, dec) for r in desc["regularizers"]]
    return RegressionModel(_part("trunk", desc["trunk"], trunk, dec), _part("head", desc["head"], head, dec),
                           regularizers)


def _from_recipe(meta: dict[str, Any], trunk, head, regularizers) -> RegressionModel:
    from .recipes import build_model  # the registry is needed only for recipe files

    model, _ = build_model(meta["method"], tuple(meta["input_shape"]), meta["target_dim"], meta["params"])
    if trunk is not None:
        model.trunk = trunk
    if head is not None:
        model.head = head
    if regularizers is not None:
        model.regularizers = nn.ModuleList(regularizers)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu", *, model: RegressionModel | None = None,
               trunk: nn.Module | None = None, head: nn.Module | None = None,
               regularizers: Iterable[nn.Module] | None = None,
               trusted_modules: Sequence[str] = ()) -> tuple[RegressionModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model` and load its tensors; returns ``(model, metadata)``.

    Parameters
    ----------
    path : str or Path
    device : str or torch.device, default "cpu"
    model : RegressionModel, optional
        A skeleton to load the weights into, instead of rebuilding anything.
    trunk, head, regularizers : optional
        Parts to use instead of rebuilding them: required for a part the file stores as
        opaque (a user's module that did not record its constructor arguments).
    trusted_modules : sequence of str
        Packages besides ``beyondmse`` whose classes the description may import (e.g. your
        own heads that subclass :class:`~beyondmse.heads.Head`). Nothing else is imported.

    Returns
    -------
    model : RegressionModel
        On ``device``, in eval mode. Rebuilding from the description does not touch the
        caller's random number generators.
    metadata : dict
        ``extra``, plus ``method``/``params``/``input_shape``/``target_dim`` when the file was
        saved from a recipe.

    A file holding a recipe whose parts cannot all be rebuilt from the description (and every
    file written before the description existed) is rebuilt through the recipe registry.
    """
    path = Path(path)
    meta = _read(path)
    tensors = load_file(str(path), device=str(device))
    aux = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(_AUX)]}
    dec = _Decoder(aux, (*_TRUSTED, *trusted_modules))
    regularizers = None if regularizers is None else list(regularizers)
    if model is None:
        desc = meta.get("model")
        if desc is None and "method" not in meta:
            raise ValueError(f"{path} has neither a model description nor a recipe")
        with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten: keep the caller's RNG
            if desc is None:
                model = _from_recipe(meta, trunk, head, regularizers)
            else:
                try:
                    model = _from_description(desc, trunk, head, regularizers, dec)
                except _OpaquePart:
                    if "method" not in meta:
                        raise
                    model = _from_recipe(meta, trunk, head, regularizers)
    if not isinstance(model, RegressionModel):
        raise ValueError(f"model must be a RegressionModel, got {type(model).__name__}")
    for key, value in meta.get("extra_state", {}).items():
        tensors[key] = dec(value)
    model.to(device)
    _resize_buffers(model, tensors)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model: {err}") from None
    for name, key in meta.get("buffers", {}).items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        owner.register_buffer(attr, aux[key].to(device), persistent=False)
    _restore_state(model, meta.get("state", {}), dec)
    out_meta = {k: v for k, v in meta.items() if k not in ("model", "state", "extra_state", "buffers", "format")}
    out_meta.setdefault("extra", {})
    return model.eval(), out_meta
