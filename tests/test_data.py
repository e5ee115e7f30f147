import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from beyondmse.data import DATASETS, Dataset, load_dataset, make_splits
from beyondmse.data.sources import fetch_openml_frame, openml_cache_paths

MANIFEST_ROWS = {"diamonds": 53940, "wine_quality": 6497, "ailerons": 13750, "elevators": 16599,
                 "cpu_act": 8192, "bike_sharing": 17379, "circle": 3000, "torus": 3000, "swiss_roll": 3000,
                 "retinamnist": 1600, "tate_text": 4284}
PAPER_FEATURES = {"diamonds": 6, "ailerons": 33, "elevators": 16, "cpu_act": 21, "bike_sharing": 6}


def test_embedded_diamonds_needs_no_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("BEYONDMSE_DATA", raising=False)
    monkeypatch.setenv("BEYONDMSE_CACHE", str(tmp_path))
    ds = load_dataset("diamonds")
    assert "_embedded" in ds.source
    assert ds.X.shape == (53940, 9) and ds.y.shape == (53940, 1)
    assert ds.y.min() == 326 and ds.y.max() == 18823
    # ordered categories are ordinal codes: cut has 5 levels 0..4
    cut = ds.feature_names.index("cut")
    assert set(np.unique(ds.X[:, cut])) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("name", sorted(MANIFEST_ROWS))
def test_every_manifest_dataset_loads(shared_data, name):
    ds = load_dataset(name)
    assert ds.n_samples == MANIFEST_ROWS[name]
    assert np.isfinite(ds.X).all() and np.isfinite(ds.y).all()


@pytest.mark.parametrize("name,count", sorted(PAPER_FEATURES.items()))
def test_paper_numeric_variant_matches_table1(shared_data, name, count):
    assert load_dataset(name + "-num").X.shape[1] == count


def test_diamonds_num_columns(shared_data):
    assert load_dataset("diamonds-num").feature_names == ["carat", "depth", "table", "x", "y", "z"]


def test_paper_split_sizes_and_determinism():
    ds = load_dataset("diamonds-num")
    a, b, c = make_splits(ds, 3, "paper"), make_splits(ds, 3, "paper"), make_splits(ds, 4, "paper")
    assert a.sizes == (43152, 5394, 5394)
    np.testing.assert_array_equal(a.test_index, b.test_index)
    assert not np.array_equal(a.test_index, c.test_index)
    assert len(set(a.train_index) & set(a.test_index)) == 0


def test_default_protocol_80_20_then_85_15(shared_data):
    s = make_splits(load_dataset("wine_quality"), 0, "default")
    n_tr, n_va, n_te = s.sizes
    assert n_te == round(0.2 * 6497) and n_va == round(0.15 * (6497 - n_te)) and n_tr + n_va + n_te == 6497


def test_scaling_is_fitted_on_training_split_only(shared_data):
    ds = load_dataset("wine_quality-num")
    s = make_splits(ds, 0, "paper")
    assert s.X_train.min() == 0 and s.X_train.max() == 1
    assert s.y_train.min() == 0 and s.y_train.max() == 1
    raw_train = ds.y[s.train_index]
    np.testing.assert_allclose(s.y_offset, raw_train.min(0))
    np.testing.assert_allclose(s.inverse_y(s.y_test), ds.y[s.test_index], rtol=1e-5)


def test_predefined_split_keeps_raw_coordinates(shared_data):
    s = make_splits(load_dataset("circle"), 0)
    assert s.protocol == "predefined" and s.sizes == (100, 100, 2800)
    np.testing.assert_array_equal(s.y_scale, np.ones(3))


def test_user_csv_with_categoricals(tmp_path):
    path = tmp_path / "toy.csv"
    pd.DataFrame({"a": [1.0, 2, 3, 4, 5], "kind": list("xyxyz"), "t": [1.0, 2, 3, 4, 5]}).to_csv(path, index=False)
    ds = load_dataset(str(path), target="t")
    assert ds.feature_names == ["a", "kind_x", "kind_y", "kind_z"]
    multi = load_dataset(str(path), target=["t", "a"])
    assert multi.y.shape == (5, 2)


@pytest.mark.parametrize("frame,target,match", [
    (pd.DataFrame({"a": [1.0, 2.0], "t": [1.0, np.nan]}), "t", "missing values in target"),
    (pd.DataFrame({"a": [1.0, 2.0], "t": [1.0, 2.0]}), "nope", "not in"),
    (pd.DataFrame({"a": [1.0, 2.0], "t": ["p", "q"]}), "t", "not numeric"),
    (pd.DataFrame({"a": [], "t": []}), "t", "empty"),
    (pd.DataFrame({"a": [1.0, np.inf], "t": [1.0, 2.0]}), "t", "NaN or inf"),
])
def test_bad_files_raise_clear_errors(tmp_path, frame, target, match):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=match):
        load_dataset(str(path), target=target)


def test_file_without_target_and_unknown_names():
    with pytest.raises(ValueError, match="needs a target"):
        load_dataset("somewhere/file.csv")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="no such data file"):
        load_dataset("missing.csv", target="y")


def test_dataset_validation_errors():
    with pytest.raises(ValueError, match="features have 3 rows but targets have 2"):
        Dataset("x", np.zeros((3, 2)), np.zeros(2), ["a", "b"], ["t"], "test")
    with pytest.raises(ValueError, match="targets contain NaN"):
        Dataset("x", np.zeros((2, 2)), np.array([1.0, np.nan]), ["a", "b"], ["t"], "test")


def test_constant_target_is_a_clear_error():
    ds = Dataset("const", np.random.default_rng(0).random((50, 2)), np.ones(50), ["a", "b"], ["t"], "test")
    with pytest.raises(ValueError, match="constant on the training split"):
        make_splits(ds, 0)


def _write_openml_cache(cache, data_id, frame):
    data_path, meta_path = openml_cache_paths(data_id, cache)
    data_path.parent.mkdir(parents=True)
    with gzip.GzipFile(data_path, "wb", mtime=0) as fh:
        fh.write(frame.to_csv(index=False).encode())
    sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps({"id": data_id, "name": "toy", "target": "t", "sha256": sha}))
    return data_path


def test_openml_cache_path_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("BEYONDMSE_CACHE", str(tmp_path))
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) ** 2, "t": np.arange(30.0) * 3})
    _write_openml_cache(tmp_path, 99999, frame)
    ds = load_dataset("openml:99999", download=False)
    assert ds.name == "openml:99999" and ds.target_names == ["t"] and ds.X.shape == (30, 2)


def test_openml_cache_checksum_is_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("BEYONDMSE_CACHE", str(tmp_path))
    path = _write_openml_cache(tmp_path, 5, pd.DataFrame({"a": [1.0, 2.0], "t": [0.0, 1.0]}))
    path.write_bytes(path.read_bytes()[:-4] + b"oops")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("openml:5", download=False)


def test_openml_not_cached_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("BEYONDMSE_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="not in the cache"):
        fetch_openml_frame(123, download=False)
    with pytest.raises(ValueError, match="openml:<integer id>"):
        load_dataset("openml:abc")


def test_registry_lists_where_each_loads_from():
    for entry in DATASETS.values():
        assert isinstance(entry.where(), str) and entry.where()


def test_user_parquet_file_with_two_targets(tmp_path):
    frame = pd.DataFrame({"a": np.arange(10.0), "u": np.arange(10.0) * 2, "v": np.arange(10.0) ** 2})
    frame.to_parquet(tmp_path / "t.parquet")
    ds = load_dataset(str(tmp_path / "t.parquet"), target=["u", "v"])
    assert ds.y.shape == (10, 2) and ds.feature_names == ["a"]


def test_diamonds_xy_is_a_real_two_dimensional_target(monkeypatch):
    """The registered 2-D task (issue 13): length and width in mm, embedded, cleaned of zero rows."""
    monkeypatch.delenv("BEYONDMSE_DATA", raising=False)
    ds = load_dataset("diamonds-xy")
    assert ds.target_names == ["x", "y"] and ds.y.shape == (53918, 2)
    assert "z" not in ds.feature_names and {"carat", "price", "cut"} <= set(ds.feature_names)
    assert ds.y.min() > 3.0 and ds.y.max() < 11.0  # no unmeasured (0) or mis-recorded (58.9 mm) rows
    # a real task, not an identity: x and y agree closely but not exactly
    assert 0.99 < np.corrcoef(ds.y.T)[0, 1] < 1.0
