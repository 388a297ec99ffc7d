#!/usr/bin/env bash
# The GPU checks of the devices issue, in one command, on a CUDA machine without network.
#
#   make gpu-wheels                 # here (network to the package index): pure-Python wheels into .whl/
#   bash scripts/gpu_check.sh       # there, from the repository root (.whl/ carried along)
#
# Installs the wheels with --no-deps into $SITE (default /tmp/site) over the machine's own torch and
# transformers, runs the `gpu` tests, then the GPU part of benchmarks/bench_devices.py (which replaces only
# the "gpu" key of benchmarks/results/devices.json). When $OUT is set (the device tool's output folder),
# the test log and the results file are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${SITE:-/tmp/site}
PYTHON=${PYTHON:-python3}
shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "error: no wheels in .whl/ (run 'make gpu-wheels' on a machine with the package index)" >&2
    exit 2
fi
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo "error: no CUDA device here (torch.cuda.is_available() is False)" >&2; exit 2; }
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
status=0
"$PYTHON" -m pytest -q -ra -m gpu tests/gpu tests/core/test_fastpath.py 2>&1 | tee /tmp/gpu_tests.log || status=$?
"$PYTHON" benchmarks/bench_devices.py --part gpu || status=$?
if [ -n "${OUT:-}" ]; then
    cp /tmp/gpu_tests.log benchmarks/results/devices.json "$OUT/"
fi
exit $status
