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


def _record(method, seed, head, y_val, dataset="toy"):
    return {"dataset": dataset, "method": method, "seed": seed, "params": {"k": head.k},
            "head": head.fit_summary(y_val)}


def test_report_hook_draws_the_learned_encoder_and_health(tmp_path):
    import json

    import matplotlib

    matplotlib.use("Agg")
    from beyondmse.plots.codec import collapse_warnings, report_figures, report_notes

    y = _y1()
    head = Codec.for_mode("e2e-codec", 4, 1, k=6)
    head.fit_targets(y)
    healthy = json.loads(json.dumps(_record("e2e-codec", 0, head, y)))  # as stored
    with torch.no_grad():  # a collapsed codec: one class takes every target
        head.log_prior.copy_(torch.tensor([0.0, 0.0, 60.0, 0.0, 0.0, 0.0]))
    collapsed = json.loads(json.dumps(_record("e2e-codec", 1, head, y)))
    assert collapsed["head"]["encoder_health"]["end"]["classes_used"] == 1
    warnings = collapse_warnings([healthy, collapsed])
    assert len(warnings) == 1 and "seed 1" in warnings[0] and "classes used 6 -> 1" in warnings[0]
    notes = report_notes([healthy, collapsed])
    assert any(line.startswith("| toy | `e2e-codec k=6` | 2 |") for line in notes)
    assert notes[-1].startswith("**Warning**")
    paths = report_figures([healthy, collapsed], tmp_path)
    names = {p.name for p in paths}
    assert names == {"codec_toy_e2e-codec.png", "codec_encoder_health.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
