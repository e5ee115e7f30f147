"""plots.neighbors: the SoftStep figures draw."""

import pytest


def test_plots_write_png(tmp_path):
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


def test_report_figures_from_run_records(tmp_path):
    from beyondmse.plots.neighbors import report_figures

    head = {"kept_frac_train": 0.3, "kept_frac_infer": 0.35, "softstep_l0": 0.6, "softstep_u0": 0.4, "softstep_t": 0.5}
    records = [{"dataset": "d", "method": "nca-softstep-g", "head": head},
               {"dataset": "d", "method": "dknn-softstep-g",
                "head": {"kept_frac_train": 0.2, "kept_frac_infer": 0.2, "k_frac": 0.15}},
               {"dataset": "d", "method": "ls", "head": None}]
    paths = report_figures(records, tmp_path)
    assert sorted(p.name for p in paths) == ["neighbors_kept_fraction.png", "softstep_curves.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert report_figures([{"dataset": "d", "method": "ls"}], tmp_path / "none") == []
