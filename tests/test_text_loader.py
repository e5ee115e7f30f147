"""Text datasets: TF-IDF -> SVD fitted on the training rows only, the encoder hook, clear errors."""

import numpy as np
import pytest

from beyondmse.data import load_dataset, make_splits
from beyondmse.data.text import TEXT_ENCODERS, load_text_csv, register_text_encoder

WORDS = ["oil", "canvas", "paper", "bronze", "print", "screen", "gold", "lithograph", "ink", "photograph"]


def _csv(tmp_path, n=60, split=True, title=None):
    rng = np.random.default_rng(0)
    titles = title or [" ".join(rng.choice(WORDS, 3)) for _ in range(n)]
    rows = ["title,medium,year" + (",split" if split else "")]
    for i, t in enumerate(titles):
        s = "train" if i < 40 else ("val" if i < 50 else "test")
        rows.append(f"{t},{WORDS[i % 4]} on {WORDS[(i + 1) % 5]},{1990 + i % 20}" + (f",{s}" if split else ""))
    path = tmp_path / "art.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_loads_with_the_file_split_and_fits_on_training_rows(tmp_path):
    path = _csv(tmp_path)
    ds = load_dataset(str(path), target="year", text=["title", "medium"], n_components=8)
    assert ds.X.shape == (60, 8) and ds.target_names == ["year"]
    assert make_splits(ds).sizes == (40, 10, 10)
    # unit-norm TF-IDF rows project into [-1, 1]: kept as they are, not min-max scaled on the
    # training rows (which would blow up the components that barely vary there)
    assert ds.feature_scaling == "none" and np.abs(ds.X).max() <= 1 + 1e-5
    np.testing.assert_array_equal(make_splits(ds).X_test, ds.X[50:])
    # other test texts leave the training rows' features unchanged: nothing is fitted on them
    frame = path.read_text().splitlines()
    changed = frame[:51] + [line.replace(line.split(",")[0], "zebra zebra unicorn", 1) for line in frame[51:]]
    path.write_text("\n".join(changed) + "\n")
    again = load_text_csv(path, text=["title", "medium"], target="year", n_components=8)
    np.testing.assert_allclose(again.X[:40], ds.X[:40], atol=1e-5)
    assert not np.allclose(again.X[50:], ds.X[50:], atol=1e-3)


def test_changing_training_text_changes_the_encoder(tmp_path):
    path = _csv(tmp_path)
    ds = load_text_csv(path, text="title", target="year", n_components=8)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[0], "ink ink gold", 1)
    path.write_text("\n".join(lines) + "\n")
    other = load_text_csv(path, text="title", target="year", n_components=8)
    assert not np.allclose(other.X[1:40], ds.X[1:40], atol=1e-6)


def test_split_is_drawn_once_when_the_file_has_none(tmp_path):
    path = _csv(tmp_path, split=False)
    a = load_text_csv(path, text="title", target="year", n_components=4)
    b = load_text_csv(path, text="title", target="year", n_components=4)
    assert a.split.tolist() == b.split.tolist()
    assert sorted(set(a.split)) == ["test", "train", "val"]


def test_errors(tmp_path):
    path = _csv(tmp_path, title=[""] * 60)
    with pytest.raises(ValueError) as excinfo:
        load_text_csv(path, text="title", target="year")
    assert "text column is empty" in str(excinfo.value) and "\n" not in str(excinfo.value)
    path = _csv(tmp_path)
    with pytest.raises(ValueError, match="no column"):
        load_text_csv(path, text="description", target="year")
    with pytest.raises(ValueError, match="unknown text encoder"):
        load_text_csv(path, text="title", target="year", encoder="bert")
    lines = path.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:2] + ["", "train"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="NaN"):
        load_text_csv(path, text="title", target="year")


def test_a_pretrained_encoder_plugs_in(tmp_path):
    seen = {}

    def lengths(texts, train):
        seen["train"] = train.sum()
        return np.array([[len(t), t.count(" ")] for t in texts], dtype=float)

    name = "test-lengths"
    if name not in TEXT_ENCODERS:
        register_text_encoder(name, lengths)
    ds = load_text_csv(_csv(tmp_path), text="title", target="year", encoder=name)
    assert ds.X.shape == (60, 2) and seen["train"] == 40
    with pytest.raises(ValueError, match="twice"):
        register_text_encoder(name, lengths)


def test_tate_text_tfidf_registered():
    ds = load_dataset("tate_text-tfidf")
    assert ds.X.shape == (4284, 256) and ds.target_names == ["year"]
    assert make_splits(ds).sizes == (2913, 514, 857)
