"""RetinaMNIST under a fine-tuned pretrained backbone: ``retinamnist-lite0-ft`` and its preset.

The same images, split and targets as ``retinamnist``; the preset (:mod:`beyondmse.data.presets`)
swaps the paper's small CNN for ImageNet EfficientNet-Lite0 fine-tuned end to end
(:mod:`beyondmse.models.backbones`) under the shared MLP neck, the SoftStep paper's set-up
(pretrained backbone -> MLP(200) -> d -> head). Its frozen twin is ``retinamnist-lite0``
(:mod:`beyondmse.models.embedding_cache`), where the backbone's features are a table.

Settings chosen to fit two CPU cores, not taken from a paper: 64 x 64 inputs (the 28-pixel
images upsampled; EfficientNet's stride 32 would leave a 1 x 1 map of 28 pixels), learning
rate 1e-4 (a pretrained network under Adam at 1e-3 forgets its features), batch 64, flips and
2-pixel crops, 10 epochs with the best epoch by validation RMSE.
"""

from __future__ import annotations

from .dataset import Dataset
from .presets import Preset, register_preset
from .registry import DATASETS, register_dataset

FINETUNE = ("issue 16 set-up for 2 CPU cores: ImageNet EfficientNet-Lite0 fine-tuned end to end at 64 px under the "
            "shared MLP(200) -> 64 neck (the SoftStep paper's backbone -> MLP(200) -> d), Adam lr 1e-4, weight decay "
            "1e-4, batch 64, flip + crop augmentation, 10 epochs, best epoch by validation RMSE")


def _load_retinamnist_ft() -> Dataset:
    ds = DATASETS["retinamnist"].load()
    ds.name = "retinamnist-lite0-ft"
    return ds


register_dataset("retinamnist-lite0-ft", "RetinaMNIST images for a fine-tuned EfficientNet-Lite0 (preset; needs "
                 "beyondmse[vision])", _load_retinamnist_ft, lambda: DATASETS["retinamnist"].where(), "1600 images")
register_preset("retinamnist-lite0-ft", Preset(FINETUNE, epochs=10, params={
    "trunk": "efficientnet-lite0", "freeze": False, "resolution": 64, "lr": 1e-4, "weight_decay": 1e-4,
    "batch_size": 64, "augment": "flip+crop", "select": "rmse"}))
