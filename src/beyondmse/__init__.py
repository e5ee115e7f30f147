"""beyondmse: deep regression beyond "linear head + MSE".

Neighbor heads with SoftStep, tightness regularizers, target codecs, and a benchmark harness
that compares them (and scikit-learn's peers) honestly on real data.
"""

__version__ = "0.1.0"

from .checkpoint import load_model, save_model
from .data import load_dataset
from .models import RegressionModel
from .sklearn import BeyondMSERegressor
from .train import Trainer

__all__ = ["BeyondMSERegressor", "RegressionModel", "Trainer", "load_dataset", "load_model", "save_model",
           "__version__"]
