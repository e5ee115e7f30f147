"""The DDP script of docs/distributed.md runs under the real ``torchrun`` (slow)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_documented_ddp_script_runs_under_torchrun(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    script = next(b for b in blocks if "TrainingStep" in b)
    (tmp_path / "my_ddp.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "my_ddp.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    bank = re.search(r"memory bank \((\d+), (\d+)\) loss ([-0-9.e]+)", out.stdout)
    assert bank, out.stdout
    assert int(bank.group(1)) == 2048  # all ranks' rows, once
    assert float(bank.group(3)) == float(bank.group(3))  # a number, not NaN
