"""data.coordinates: the coordinate-prediction tasks of the tightness paper."""

import os

import numpy as np
import pytest
import torch


torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine


# --------------------------------------------------------------------------- coordinate task
@pytest.fixture()
def shared_data(monkeypatch):
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")
    if not os.environ.get("BEYONDMSE_DATA") and os.path.isdir(folder):
        monkeypatch.setenv("BEYONDMSE_DATA", folder)


@pytest.mark.parametrize("shape", ["circle", "torus", "mammoth"])
def test_coordinate_task_is_deterministic_by_seed(shape, shared_data):
    from beyondmse.data.coordinates import _find_file, make_coordinates

    if shape == "mammoth" and _find_file("mammoth_points.csv.gz") is None:
        pytest.skip("mammoth_points.csv.gz not available")
    a, b, c = make_coordinates(shape, seed=3), make_coordinates(shape, seed=3), make_coordinates(shape, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y)
    assert a.X.shape == (3000, 100) and a.y.shape == (3000, 3) and a.target_scaling == "none"
    assert [(a.split == s).sum() for s in ("train", "val", "test")] == [100, 100, 2800]
    y = a.y.astype(np.float32)
    np.testing.assert_allclose(a.X[:, :4], np.stack([y[:, 0] + y[:, 1] + y[:, 2], y[:, 0] + y[:, 1] - y[:, 2],
                                                     y[:, 0] - y[:, 1] + y[:, 2], -y[:, 0] + y[:, 1] + y[:, 2]], 1),
                               rtol=1e-5, atol=1e-4)
    if shape == "circle":
        np.testing.assert_allclose(np.linalg.norm(a.y, axis=1), 1.0, atol=1e-9)
    if shape == "torus":
        ring = np.sqrt(a.y[:, 0] ** 2 + a.y[:, 1] ** 2)
        np.testing.assert_allclose((ring - 4.0) ** 2 + a.y[:, 2] ** 2, 1.0, atol=1e-9)


def test_coordinate_tasks_are_registered(shared_data):
    from beyondmse.data import DATASETS, load_dataset

    assert {"coords-circle", "coords-torus", "coords-mammoth"} <= set(DATASETS)
    ds = load_dataset("coords-torus")
    assert ds.name == "coords-torus" and ds.split is not None


def test_coordinate_task_bad_shape():
    from beyondmse.data.coordinates import make_coordinates

    with pytest.raises(ValueError, match="unknown manifold"):
        make_coordinates("sphere")
