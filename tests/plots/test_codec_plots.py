"""plots.codec: the codec figures draw."""

from __future__ import annotations

import torch

from beyondmse.heads import Codec

torch.set_num_threads(1)


# --------------------------------------------------------------------------- head
def _y1(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g) ** 2  # skewed targets in [0, 1]


# --------------------------------------------------------------------------- plots
def test_plots_return_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from beyondmse.plots.codec import plot_codec

    head = Codec.for_mode("soft-bin", 4, 1, k=5)
    head.fit_targets(_y1())
    fig = plot_codec(head, n_points=100)
    assert len(fig.axes[0].lines) >= 5
    head2 = Codec.for_mode("e2e-codec", 4, 2, k=9)
    head2.fit_targets(torch.rand(200, 2))
    path = tmp_path / "codec2d.png"
    fig2 = plot_codec(head2, path=path, n_points=60)
    assert path.exists() and path.stat().st_size > 1000 and len(fig2.axes) >= 2
