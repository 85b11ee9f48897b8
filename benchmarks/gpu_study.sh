#!/usr/bin/env bash
# The CIFAR-10 placement study, experiments/cifar10_placement.yaml, on one GPU: ResNet-20, 30 epochs, full
# CIFAR-10 (JPEG) with 5,000 images held out for validation, every pattern x {se, cbam} x 3 seeds (33 runs).
# Resumable: the same command again goes on where the last one stopped.
#   benchmarks/gpu_study.sh [--smoke] [key=value ...]     (overrides go to every run, as with attnplace grid)
#
# Data: $ATTNPLACE_DATA, else ../shared/data/cifar10-jpeg.tar.gz beside the repository. Run ids include
#   data.path, so resume with the same path.
# Workers: best_workers from results/benchmarks/gpu.json (benchmarks/gpu.sh) when there is one, else auto.
# Time: after $STUDY_TIME_LIMIT seconds (default 540 when $OUT is set, i.e. inside a 10-minute device call;
#   else none) the grid is interrupted; finished epochs are kept in last.ckpt and resume next time.
# Writes: results/cifar10_placement/ (runs; the tables once the grid is complete) and its calls.jsonl, one
#   line per call (the grid writes it): command, device, workers, start, wall time, how it ended
#   ("interrupted" when the time limit stopped it).
#   With $OUT set, $OUT/cifar10_placement.tar.gz (benchmarks/pack.py): unpacked at the repository root of a
#   fresh machine, it lets the study resume there.
# --smoke: 1 epoch of a tiny synthetic dataset per run, into /tmp/attnplace-study-smoke: checks this script,
#   on a CPU too, in a few minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
out_dir=results
data=(data.name=imagefolder "data.path=${ATTNPLACE_DATA:-../shared/data/cifar10-jpeg.tar.gz}")
if [ "${1:-}" = "--smoke" ]; then
  shift
  out_dir=/tmp/attnplace-study-smoke
  data=(data.name=synthetic data.path=null "data.synthetic={num_train: 300, num_test: 100, image_size: 16}"
        data.val_size=50 data.batch_size=50 data.augment=none trainer.max_epochs=1)
fi
workers=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("best_workers") or "auto")' \
          results/benchmarks/gpu.json 2>/dev/null || echo auto)
limit=${STUDY_TIME_LIMIT:-$([ -n "${OUT:-}" ] && echo 540 || echo 0)}
# SIGINT to the grid and its workers: each stops at once, keeping the epochs its last.ckpt holds.
timeout --signal=INT --kill-after=60 "$limit" "$python" -m attnplace.cli grid experiments/cifar10_placement.yaml \
  --workers "$workers" "${data[@]}" "output_dir=$out_dir" "$@"
status=$?
results="$out_dir/cifar10_placement"
mkdir -p "$results"
[ "$status" = 124 ] && echo "stopped after ${limit} s: run the same command again to go on"
if [ -n "${OUT:-}" ]; then
  "$python" benchmarks/pack.py "$OUT/cifar10_placement.tar.gz" "$results"
fi
exit "$status"
