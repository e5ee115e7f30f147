"""Modules that remember the arguments they were built with, so a checkpoint can rebuild them.

A checkpoint (:mod:`beyondmse.checkpoint`) stores tensors with safetensors and the model's
*description* as JSON: for each part, its class and the constructor arguments. PyTorch does
not keep constructor arguments, so the library's base classes (heads, regularizers,
similarities, trunks) inherit :class:`Configurable`, which records them when an instance is
created. Subclasses, including a user's own, record theirs too; nothing else is needed.

Only the outermost constructor records: ``NCA(8, similarity=RBF())`` remembers
``(8,), {"similarity": RBF(...), ...}``, not what ``NCA.__init__`` passed on to ``super()``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["Configurable", "init_args"]

_ATTR = "_init_args"


class Configurable:
    """Mixin for ``nn.Module`` classes: each instance remembers its constructor arguments.

    Put it before ``nn.Module`` in the bases (``class Head(Configurable, nn.Module)``). Every
    subclass that defines ``__init__`` has it wrapped to record the bound arguments, with
    defaults filled in, after the constructor returns; read them with :func:`init_args`.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_records_init_args", False):
            cls.__init__ = _recording(init)


def _recording(init):
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # a subclass's constructor calls this one through super(): only the outermost records
        if type(self).__init__ is __init__:
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            positional: list[Any] = []
            keywords: dict[str, Any] = {}
            for name, param in list(sig.parameters.items())[1:]:
                value = bound.arguments.get(name)
                if param.kind is param.POSITIONAL_ONLY:
                    positional.append(value)
                elif param.kind is param.VAR_POSITIONAL:
                    positional.extend(value or ())
                elif param.kind is param.VAR_KEYWORD:
                    keywords.update(value or {})
                else:
                    keywords[name] = value
            # object.__setattr__: a plain record, never registered as a submodule or parameter
            object.__setattr__(self, _ATTR, (tuple(positional), keywords))

    __init__._records_init_args = True
    return __init__


def init_args(module) -> tuple[tuple, dict[str, Any]] | None:
    """``(args, kwargs)`` that rebuild ``module`` with ``type(module)(*args, **kwargs)``.

    ``None`` when the module does not inherit :class:`Configurable`. A subclass whose
    constructor takes no arguments needs no record and gets ``((), {})``.
    """
    if not isinstance(module, Configurable):
        return None
    record = module.__dict__.get(_ATTR)
    if record is not None:
        return record[0], dict(record[1])
    # a subclass without a constructor of its own: rebuildable when it takes nothing (``nn.Module.__init__``'s
    # ``*args, **kwargs`` take nothing that shapes the module either)
    params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return (), {}
    return None
