import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
# CI sets BEYONDMSE_DATA=../shared/datasets; default to it for a plain `pytest` in a checkout.
if not os.environ.get("BEYONDMSE_DATA") and SHARED.is_dir():
    os.environ["BEYONDMSE_DATA"] = str(SHARED)

torch.set_num_threads(min(2, torch.get_num_threads()))


def _has_shared() -> bool:
    d = os.environ.get("BEYONDMSE_DATA")
    return bool(d) and (Path(d) / "MANIFEST.md").is_file()


@pytest.fixture
def shared_data():
    """The shared datasets folder; the tests that need it fail loudly when it is missing."""
    if not _has_shared():
        pytest.fail("BEYONDMSE_DATA must point at the shared datasets folder (see README)")
    return Path(os.environ["BEYONDMSE_DATA"])
