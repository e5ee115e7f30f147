"""data.synthetic: the SoftStep synthetic tasks are registered and deterministic."""

import pytest


# ----------------------------------------------------------------------------- synthetic tasks, plots
def test_synthetic_tasks_registered_and_deterministic():
    import numpy as np

    from beyondmse.data import DATASETS, load_dataset
    from beyondmse.data.synthetic import KINDS, make_synthetic, truth

    for kind in KINDS:
        assert f"softstep-{kind}" in DATASETS
    a, b = make_synthetic("spiral", n=300, seed=3), make_synthetic("spiral", n=300, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, make_synthetic("spiral", n=300, seed=4).X)
    assert (np.abs(a.X) <= 1).all() and a.X.shape == (300, 2)
    assert [int((a.split == s).sum()) for s in ("train", "val", "test")] == [200, 50, 50]
    np.testing.assert_allclose(a.extras["truth"], truth("spiral", a.X.astype(np.float64)), atol=1e-6)
    ds = load_dataset("softstep-product")
    assert ds.n_samples == 3000 and ds.split is not None
    with pytest.raises(ValueError, match="unknown synthetic task"):
        make_synthetic("saddle")
