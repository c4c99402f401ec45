#!/usr/bin/env bash
# The whole GPU benchmark in one go, on a fresh GPU machine with the repository and the lock
# installed (.venv with the test/train extras: torch exports the model on the CPU). Prints JSON;
# the budget keeps it under 5 minutes (TensorRT is skipped when the budget runs short).
#
#   benchmarks/gpu.sh [--device cuda:0] [--batch 256] ...   (options of benchmarks/bench_gpu.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    PYTHON="$(command -v python3)"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# No downloads, ever: the model is exported here from random weights, the data are synthetic.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
exec timeout --signal=INT 295 "$PYTHON" benchmarks/bench_gpu.py --budget-s 270 "$@"
