"""Light image augmentation of training batches (flip, padded crop), a Trainer setting."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from beyondmse.data.augment import CROP_PAD, augment_batch, parse_augment
from beyondmse.recipes import build_model
from beyondmse.train import Trainer, seed_everything


def test_parse():
    assert parse_augment("flip+crop") == ("flip", "crop")
    assert parse_augment(None) == () and parse_augment("none") == ()
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_augment("rotate")


def test_flip_mirrors_about_half_of_the_images():
    x = torch.rand(200, 2, 5, 7)
    out = augment_batch(x, ("flip",), torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 60 < int(mirrored.sum()) < 140


def test_crop_is_a_window_of_the_reflection_padded_image():
    x = torch.rand(30, 3, 5, 7)  # not square: rows and columns cannot be confused
    out = augment_batch(x, ("crop",), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = F.pad(x, (CROP_PAD,) * 4, mode="reflect")
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * CROP_PAD + 1) for dx in range(2 * CROP_PAD + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + 5, dx:dx + 7])]
        assert hits, f"image {i} is not a window of its padded copy"
        offsets.add(hits[0])
    assert len(offsets) > 3 and any(dy != dx for dy, dx in offsets)  # offsets vary, rows and columns apart


def test_trainer_augments_images_only_and_stays_deterministic():
    rng = np.random.default_rng(0)
    X = rng.random((40, 1, 8, 8)).astype(np.float32)
    y = X.mean(axis=(1, 2, 3))

    def fit(augment, data=X):
        seed_everything(0)
        model, _ = build_model("ls", data.shape[1:], 1)
        hist = Trainer(max_epochs=2, batch_size=8, device="cpu", augment=augment).fit(model, data, y)
        return hist.train_loss

    assert fit("flip+crop") == fit("flip+crop")
    assert fit("flip+crop") != fit(None)  # the images were changed
    flat = X.reshape(40, -1)
    assert fit("flip+crop", flat) == fit(None, flat)  # feature vectors are left alone
    with pytest.raises(ValueError, match="unknown augmentation"):
        Trainer(augment="mixup")
