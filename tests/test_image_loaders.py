"""Image datasets from an .npz or a folder of images + targets.csv; one-line errors for bad files."""

import numpy as np
import pytest

from beyondmse.data import load_dataset, make_splits
from beyondmse.data.images import load_image_folder, load_image_npz


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(10, 6, 8, 3), dtype=np.uint8)


def test_npz_round_trip(tmp_path, rgb):
    split = np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    np.savez(tmp_path / "imgs.npz", x=rgb, y=np.arange(10.0), split=split)
    ds = load_dataset(str(tmp_path / "imgs.npz"))
    assert ds.X.shape == (10, 3, 6, 8) and ds.X.dtype == np.float32
    np.testing.assert_allclose(ds.X[2, 1], rgb[2, :, :, 1] / 255.0, rtol=1e-6)  # channel-first, [0, 1]
    assert make_splits(ds).sizes == (6, 2, 2)  # the file's split is the default protocol
    grey = load_image_npz(_save(tmp_path, x=rgb[..., 0], y=np.ones((10, 2)) * np.arange(10)[:, None]))
    assert grey.X.shape == (10, 1, 6, 8) and grey.target_dim == 2


def _save(tmp_path, **arrays):
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    return path


def test_npz_resize_and_standardisation_on_training_rows(tmp_path, rgb):
    split = np.array(["train"] * 6 + ["test"] * 4)
    ds = load_image_npz(_save(tmp_path, x=rgb, y=np.arange(10.0), split=split), resize=(12, 16), standardize=True)
    assert ds.X.shape == (10, 3, 12, 16)
    train = ds.X[:6]
    np.testing.assert_allclose(train.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # per channel, on train rows
    np.testing.assert_allclose(train.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert len(ds.extras["channel_mean"]) == 3
    plain = load_image_npz(_save(tmp_path, x=rgb, y=np.arange(10.0), split=split), resize=(12, 16))
    mean = plain.X[:6].mean(axis=(0, 2, 3))
    std = plain.X[:6].std(axis=(0, 2, 3))
    np.testing.assert_allclose(ds.X, (plain.X - mean[:, None, None]) / std[:, None, None], atol=1e-4)


@pytest.mark.parametrize("arrays, message", [
    (lambda x: {"x": x[0, :, :, 0], "y": np.arange(6.0)}, "N x H x W"),  # one grey image, no batch axis
    (lambda x: {"x": x.astype(np.float32), "y": np.arange(10.0)}, "uint8"),
    (lambda x: {"x": x, "y": np.arange(9.0)}, "targets have shape"),
    (lambda x: {"x": x, "y": np.r_[np.arange(9.0), np.nan]}, "NaN"),
    (lambda x: {"x": x, "y": np.arange(10.0), "split": np.array(["train"] * 9 + ["dev"])}, "train/val/test"),
    (lambda x: {"images": x, "y": np.arange(10.0)}, "missing array"),
    (lambda x: {"x": np.concatenate([x, x[..., :1]], axis=-1), "y": np.arange(10.0)}, "C in"),
])
def test_npz_rejects_bad_files(tmp_path, rgb, arrays, message):
    with pytest.raises(ValueError) as excinfo:
        load_image_npz(_save(tmp_path, **arrays(rgb)))
    assert message in _one_line_error(excinfo)


def test_npz_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError) as excinfo:
        load_image_npz(path)
    assert "cannot read" in _one_line_error(excinfo)


def _folder(tmp_path, rgb, n=4, sizes=None):
    from PIL import Image

    rows = []
    for i in range(n):
        img = rgb[i] if sizes is None else np.zeros((*sizes[i], 3), np.uint8)
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{i * 1.5}")
    (tmp_path / "targets.csv").write_text("file,score\n" + "\n".join(rows) + "\n")
    return tmp_path


def test_folder_loads_pngs(tmp_path, rgb):
    ds = load_dataset(str(_folder(tmp_path, rgb)), target="score")
    assert ds.X.shape == (4, 3, 6, 8) and ds.y.ravel().tolist() == [0, 1.5, 3, 4.5]
    np.testing.assert_allclose(ds.X[3], rgb[3].transpose(2, 0, 1) / 255.0, rtol=1e-6)  # PNG is lossless
    small = load_image_folder(tmp_path, "score", resize=4)
    assert small.X.shape == (4, 3, 4, 4)


def test_folder_rejects_bad_files(tmp_path, rgb):
    folder = _folder(tmp_path, rgb)
    (folder / "im2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError) as excinfo:
        load_image_folder(folder, "score")
    assert "cannot read image" in _one_line_error(excinfo) and "im2.png" in str(excinfo.value)
    (folder / "im2.png").unlink()
    with pytest.raises(ValueError, match="cannot read image"):  # a listed file that is not there
        load_image_folder(folder, "score")
    with pytest.raises(ValueError) as excinfo:
        load_image_folder(folder, "price")
    assert "no column" in _one_line_error(excinfo)


def test_folder_sizes_and_targets(tmp_path, rgb):
    folder = _folder(tmp_path, rgb, n=2, sizes=[(6, 8), (5, 8)])
    with pytest.raises(ValueError, match="resize"):
        load_image_folder(folder, "score")
    assert load_image_folder(folder, "score", resize=(6, 8)).X.shape == (2, 3, 6, 8)
    (folder / "targets.csv").write_text("file,score\nim0.png,1\nim1.png,\n")
    with pytest.raises(ValueError) as excinfo:
        load_image_folder(folder, "score", resize=(6, 8))
    assert "NaN" in _one_line_error(excinfo)
