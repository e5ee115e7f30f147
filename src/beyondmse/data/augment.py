"""Light image augmentation for training batches: random horizontal flips and padded random crops.

The Trainer applies it to each training mini-batch of images ``(B, C, H, W)`` when its
``augment`` setting names it (``augment="flip"``, ``"crop"`` or ``"flip+crop"``); validation
and test images are never augmented. Draws come from the Trainer's seeded generator, so the
same seed gives the same batches. Written here rather than taken from torchvision because
torchvision is not a dependency (and its wheels on the package index pull a CUDA torch), and
the two operations are a few tensor lines on a whole batch at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENTATIONS", "parse_augment", "augment_batch"]

AUGMENTATIONS = ("flip", "crop")
#: pixels of reflection padding before a random crop back to the original size
CROP_PAD = 2


def parse_augment(augment: str | None) -> tuple[str, ...]:
    """``"flip+crop"`` -> ``("flip", "crop")``; None, ``""`` or ``"none"`` -> ``()``; ValueError if unknown."""
    if augment is None:
        return ()
    if not isinstance(augment, str):
        raise ValueError(f"augment must be a string such as 'flip+crop', got {augment!r}")
    parts = tuple(p.strip() for p in augment.replace(",", "+").split("+") if p.strip())
    if parts in ((), ("none",)):
        return ()
    unknown = [p for p in parts if p not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; use {' / '.join(AUGMENTATIONS)} joined by '+'")
    return parts


def augment_batch(x: Tensor, ops: tuple[str, ...], generator: torch.Generator) -> Tensor:
    """A randomly flipped / cropped copy of images ``x (B, C, H, W)``; other inputs are returned as they are.

    ``flip``: each image mirrored left-right with probability 1/2. ``crop``: each image padded by
    :data:`CROP_PAD` pixels (reflection) and cropped back to ``H x W`` at a uniformly drawn offset.
    """
    if not ops or x.dim() != 4:
        return x
    b, _, h, w = x.shape
    if "flip" in ops:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if "crop" in ops:
        p = CROP_PAD
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device))  # (B, W)
        idx_b = torch.arange(b, device=x.device)[:, None, None]
        # gather per image: padded[b, :, rows[b], cols[b]] -> (B, H, W, C) then back to (B, C, H, W)
        x = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return x.contiguous()
