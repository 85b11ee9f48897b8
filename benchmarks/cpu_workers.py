"""Aggregate training images/s of a grid on a CPU: N runs at once with T torch threads each, N x T = the cores.

    python benchmarks/cpu_workers.py [--layouts 1x2,2x1] [--images 2560] [--epochs 2]

What `attnplace grid --workers N` does on a CPU: N runs of `attnplace fit` at once, each with
cpu_count // N threads. Each run here is one fit-path row of `cpu_modes.py` (its own process, the CPU preset
of `TrainerConfig.resolved()`, one warm-up + `--epochs` timed epochs on the same CIFAR-10 (JPEG) subset); the N
of a layout start together. Reported per layout: the sum of the runs' images/s after their warm-up epoch,
the same including it, and all the layout's training images over its wall time (process start-up included).
`grid/runner.py`'s `auto_workers` follows the faster layout.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from attnplace.run.sections import TrainerConfig
from attnplace.run.environment import cpu_model

CPU_MODES = Path(__file__).with_name("cpu_modes.py")


def run_layout(workers: int, threads: int, args) -> dict:
    preset = TrainerConfig().resolved("cpu")
    row = json.dumps(["a", preset.precision, preset.channels_last, preset.compile, args.images])
    command = [sys.executable, str(CPU_MODES), "--threads", str(threads), "--row", row, "--epochs", str(args.epochs),
               "--backbone", args.backbone, "--pattern", args.pattern, "--attention", args.attention,
               "--batch-size", str(args.batch_size), *(["--path", args.path] if args.path else [])]
    start = time.perf_counter()
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(workers)]
    outputs = [child.communicate() for child in children]
    wall = time.perf_counter() - start
    for child, (_, err) in zip(children, outputs):
        if child.returncode:
            raise RuntimeError((err.strip().splitlines() or ["no output"])[-1])
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    return {"runs": runs, "timed": sum(r["timed"] for r in runs), "all": sum(r["all"] for r in runs),
            "overall": sum(r["images"] * (1 + args.epochs) for r in runs) / wall, "wall_s": wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    parser.add_argument("--layouts", default=f"1x{cores},{cores}x1", help="WORKERSxTHREADS, comma-separated")
    parser.add_argument("--path", help="an image-folder dataset (default: cpu_modes.py's)")
    parser.add_argument("--images", type=int, default=2560, help="training images per run")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after one warm-up epoch")
    parser.add_argument("--backbone", default="resnet20")
    parser.add_argument("--pattern", default="p4")
    parser.add_argument("--attention", default="se")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    preset = TrainerConfig().resolved("cpu")
    print(f"CPU: {cpu_model()}, {cores} cores; fit path, {args.backbone} {args.pattern} {args.attention}, batch "
          f"{args.batch_size}, {args.images} images, 1 warm-up + {args.epochs} timed epochs per run; preset "
          f"{preset.precision}, channels_last={preset.channels_last}, compile={preset.compile}")
    print()
    print("| workers x threads | sum img/s after warm-up | sum img/s incl. warm-up | images / wall | wall s "
          "| per run img/s |")
    print("|---|---:|---:|---:|---:|---|")
    for layout in args.layouts.split(","):
        workers, threads = map(int, layout.split("x"))
        r = run_layout(workers, threads, args)
        per_run = ", ".join(f"{run['timed']:,.0f}" for run in r["runs"])
        print(f"| {workers} x {threads} | {r['timed']:,.0f} | {r['all']:,.0f} | {r['overall']:,.0f} "
              f"| {r['wall_s']:,.0f} | {per_run} |", flush=True)


if __name__ == "__main__":
    main()
