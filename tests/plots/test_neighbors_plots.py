"""plots.neighbors: the SoftStep figures draw."""

import pytest


def test_plots_write_png(tmp_path):
    import numpy as np

    from beyondmse.plots.neighbors import grid_points, plot_softstep_curves, plot_surfaces

    pts, axis = grid_points(10)
    surf = pts[:, 0].reshape(10, 10)
    p1 = plot_surfaces(tmp_path / "s.png", [("task", {"truth": surf, "model": surf + 0.1})], axis,
                       {("task", "model"): "MSE 0.01"})
    p2 = plot_softstep_curves(tmp_path / "c.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="columns"):
        plot_surfaces(tmp_path / "bad.png", [("a", {"truth": surf}), ("b", {"other": surf})], axis)
    assert np.isfinite(surf).all()
