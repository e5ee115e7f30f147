"""plots.tightness: the feature-manifold and similarity-matrix diagnostics draw."""

import numpy as np
import pytest
import torch


torch.set_num_threads(1)  # tiny problems: extra threads only contend on a shared machine


# --------------------------------------------------------------------------- diagnostics plots
def test_diagnostic_plots_draw(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from beyondmse.plots.tightness import plot_feature_manifold, plot_similarity_matrix, project_features

    t = np.linspace(0, 1, 60)
    z = np.stack([np.cos(3 * t), np.sin(3 * t), t, np.zeros_like(t)], 1)
    p = project_features(z, 2)
    assert p.shape == (60, 2) and np.all(np.isfinite(p))
    ax = plot_feature_manifold(z, t, title="m")
    ax2 = plot_similarity_matrix(z, np.stack([t, 2 * t], 1))
    img = ax2.get_images()[0].get_array()
    assert img.shape == (60, 60) and np.allclose(np.diag(img), 1.0)
    ax.figure.savefig(tmp_path / "m.png")
    plt.close("all")
    with pytest.raises(ValueError, match="rows"):
        plot_similarity_matrix(z, t[:10])
