#!/usr/bin/env bash
# The GPU benchmark in one command, under 10 minutes on an H100: benchmarks/gpu.py (see its docstring), its
# output kept in results/benchmarks/gpu.log beside gpu.json and gpu.md, and, when $OUT is set, everything it
# wrote packed into $OUT/gpu-benchmark.tar.gz. Needs torch, lightning, timm and pandas; not wandb or ray, and
# no install: the package is imported from src/.
#   benchmarks/gpu.sh [--data PATH] [--budget-s 480] [--sections sync,eager,workers,compiled]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
mkdir -p results/benchmarks
"$python" benchmarks/gpu.py --out results/benchmarks "$@" 2>&1 | tee results/benchmarks/gpu.log
status=${PIPESTATUS[0]}
if [ -n "${OUT:-}" ]; then
  "$python" benchmarks/pack.py "$OUT/gpu-benchmark.tar.gz" results/benchmarks
fi
exit "$status"
