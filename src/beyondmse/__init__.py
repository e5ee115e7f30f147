"""beyondmse: deep regression beyond "linear head + MSE".

Neighbor heads with SoftStep, tightness regularizers, target codecs, and a benchmark harness
that compares them (and scikit-learn's peers) honestly on real data.

``import beyondmse`` loads torch and NumPy only; scikit-learn, pandas, SciPy and matplotlib are
imported where they are used (``BeyondMSERegressor`` is loaded on first access).
"""

__version__ = "0.1.0"

from .checkpoint import load_model, save_model
from .data import load_dataset
from .models import RegressionModel
from .train import Trainer


def __getattr__(name: str):
    # the estimator subclasses scikit-learn's BaseEstimator: load it (and scikit-learn) on first use
    if name == "BeyondMSERegressor":
        from .sklearn import BeyondMSERegressor

        return BeyondMSERegressor
    raise AttributeError(f"module 'beyondmse' has no attribute {name!r}")


__all__ = ["BeyondMSERegressor", "RegressionModel", "Trainer", "load_dataset", "load_model", "save_model",
           "__version__"]
