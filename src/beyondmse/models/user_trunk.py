"""A user's own ``nn.Module`` as a trunk: its embedding width, found by one dry forward pass.

Every part of the library that builds a model (:func:`beyondmse.recipes.build_model`, the
:class:`~beyondmse.BeyondMSERegressor`) takes ``trunk=module``: any module mapping one batch of
inputs ``(N, *input_shape)`` to embeddings ``(N, d)``, e.g. a torchvision-style backbone whose
classifier was replaced by ``nn.Identity()``. The head is then built for that ``d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["embedding_width"]


def embedding_width(module: nn.Module, input_shape: Sequence[int]) -> int:
    """The ``d`` of ``module``'s output ``(N, d)`` on inputs of one-sample shape ``input_shape``.

    An integer attribute ``out_features`` (the library's trunks have one) is trusted; otherwise
    the module runs once, in eval mode and without gradients, on two zero samples on the
    device of its first parameter. Its mode, weights and the global random state are left as
    they were. ValueError if it fails or does not return a 2-D tensor.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"a trunk must be a torch.nn.Module, got {type(module).__name__}")
    width = getattr(module, "out_features", None)
    if isinstance(width, int) and width >= 1:
        return width
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = module(torch.zeros(2, *input_shape, device=device, dtype=dtype))
    except Exception as err:  # a user's module fails in its own ways; say where it happened
        raise ValueError(f"the trunk {type(module).__name__} failed on a batch of shape (2, "
                         f"{', '.join(map(str, input_shape))}): {err}") from err
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the trunk {type(module).__name__} must return embeddings (N, d), got {shape} for "
                         "a batch of 2; end it with nn.Flatten() or pool its feature map")
    return int(out.shape[1])
