"""State-of-the-art deep tabular peers: RealMLP and TabM, with their authors' defaults.

What a user would pick today instead of a head on our trunk. Both come from ``pytabkit``
(Apache-2.0), the package of the RealMLP authors, which also ships TabM; each is a scikit-learn
estimator with the published default settings, run by :mod:`beyondmse.experiment` on the same
splits and scaling as every other method:

* ``realmlp``: RealMLP-TD (Holzmüller et al., "Better by Default: Strong Pre-Tuned MLPs and
  Boosted Trees on Tabular Data", NeurIPS 2024): robust scaling and smooth clipping, PBLD
  numeric embeddings, a 3 x 256 MLP with parametric activations, a ``coslog4`` learning-rate
  schedule, 256 epochs, best epoch on its own 20% holdout of the training split.
* ``tabm``: TabM-D (Gorishniy et al., "TabM: Advancing Tabular Deep Learning with
  Parameter-Efficient Ensembling", ICLR 2025): k = 32 BatchEnsemble members of an MLP (blocks
  of 512) sharing weights, trained on the mean of the members' losses, quantile preprocessing, no
  numeric embeddings, lr 2e-3, patience 16 on its own 20% holdout (pytabkit's ``TabM_D_Regressor``,
  whose defaults are those of the authors' example notebook; pytabkit carries its own copy of the
  authors' ``tabm`` model code, so the ``tabm`` package itself is not needed).

Like ``sk-hgb`` they hold out part of the training split for early stopping and never see the
validation or test split. ``n_epochs`` is their only knob here (the cost on 2 cores); the rest
are the authors' defaults, since tuning them would be a different comparison.

The packages are an optional extra (``pip install 'beyondmse[tabular-peers]'``; pytabkit pulls in
PyTorch Lightning); without them building these peers raises ImportError saying so.
"""

from __future__ import annotations

from .base import PeerBaseline, register


def _pytabkit():
    try:
        import pytabkit
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the realmlp and tabm peers need pytabkit: pip install 'beyondmse[tabular-peers]'") from err
    return pytabkit


def _options(seed: int) -> dict:
    import torch

    # one thread per run unless the runner gave more; pytabkit otherwise takes every core
    return {"random_state": seed, "n_threads": torch.get_num_threads(), "verbosity": 0,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def _realmlp(knobs, seed):
    return _pytabkit().RealMLP_TD_Regressor(n_epochs=knobs["n_epochs"], **_options(seed))


def _tabm(knobs, seed):
    return _pytabkit().TabM_D_Regressor(n_epochs=knobs["n_epochs"], tabm_k=knobs["tabm_k"], **_options(seed))


register(PeerBaseline(
    "realmlp", "RealMLP-TD (pytabkit, the authors' defaults; early stopping on its own 20% holdout)",
    _realmlp, knobs={"n_epochs": 256},
))
register(PeerBaseline(
    "tabm", "TabM-D, k = 32 parameter-efficient ensemble (pytabkit, the authors' defaults; own 20% holdout)",
    _tabm, knobs={"n_epochs": 1_000_000_000, "tabm_k": 32},
))

__all__: list[str] = []
