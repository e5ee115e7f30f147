"""``import beyondmse`` stays light: scikit-learn, pandas, SciPy and matplotlib load only when used.

(The timing itself is measured by ``benchmarks/bench_import.py``; this guard does not depend on
machine load.)
"""

import subprocess
import sys

import pytest

import beyondmse

HEAVY = ("sklearn", "pandas", "scipy", "matplotlib")


def test_import_does_not_load_heavy_packages():
    # one fresh interpreter (they are slow to start); beyondmse.recipes imports beyondmse first
    probe = f"import beyondmse.recipes, sys\nprint(*[m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.split() == []


def test_estimator_is_loaded_on_first_access():
    from beyondmse import BeyondMSERegressor
    from beyondmse.sklearn import BeyondMSERegressor as direct

    assert BeyondMSERegressor is direct
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        beyondmse.Nope
