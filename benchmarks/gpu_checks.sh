#!/bin/bash
# Issue 17's GPU checks in one call, for a machine with a CUDA GPU and its own torch:
#   the heads' CUDA tests (tests/test_cuda.py), then the speed table on the GPU.
#   bash benchmarks/gpu_checks.sh [OUTDIR]
# Runs from the repository root without installing (PYTHONPATH=src), with the machine's own torch;
# on a machine without a package index, put wheels of the missing dependencies (e.g. entmax) in .whl/.
set -u
out=${1:-/tmp/gpu-checks}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py --durations=8 2>&1 | tee "$out/test_cuda.log"
echo "tests exit: ${PIPESTATUS[0]}"
cd benchmarks
timeout 300 python3 bench_speed_targets.py --device cuda --repeats 9 2>&1 | tee "$out/speed_gpu.log"
echo "speed exit: ${PIPESTATUS[0]}"
