"""Does torch.compile pay on this CPU, once the compile cache is warm? Plain loop against `attnplace fit`, then a grid.

    python benchmarks/compile_pays.py --threads 2 [--backbones resnet20,resnet56] [--images 2560] [--repeats 2]
                                      [--grid-images 5000] [--grid-epochs 2] [--skip-grid]

1. Per backbone and precision (bf16 where this CPU has it natively, and fp32), all channels_last: the plain loop
   and the fit path (`cpu_modes.py`'s rows, each in a fresh process, as a run of a grid is), eager and compiled.
   Every row shares one inductor cache, empty at the start: the first compiled row of a network compiles cold,
   every later one reads the cache, as a grid's runs do after its first run of that network. The rows are
   interleaved and repeated (`--repeats`): on 2 shared cores one figure varies by ±15 %. Reported: the median
   img/s after the warm-up epoch, and the warm-up epoch's extra seconds (compiling, for compiled rows: the
   first repeat cold, the median of the rest warm). Ratio: fit compiled / loop compiled (target >= 0.9).
2. A 10-run grid (none and p1..p4 with SE × 2 seeds, ResNet-20, `--grid-images` × `--grid-epochs` each, 2 workers
   of 1 thread), a stand-in for the committed CPU regime (10,000 × 10): the eager bf16 preset of before, then
   compiled in a cold cache, then compiled again in the cache the cold grid filled. Wall time of each
   `attnplace grid` call, and the compile seconds its records say.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def row(args, backbone: str, way: str, precision: str, compile: bool, env: dict) -> dict:
    """One `cpu_modes.py` row in a fresh process (plain loop: way b; fit path: way a), channels_last."""
    command = [sys.executable, str(HERE / "cpu_modes.py"), "--threads", str(args.threads), "--backbone", backbone,
               "--pattern", "p4", "--attention", "se", "--images", str(args.images), "--epochs", str(args.epochs),
               "--path", args.path, "--row", json.dumps([way, precision, True, compile, args.images])]
    child = subprocess.run(command, capture_output=True, text=True, env=env)
    if child.returncode:
        raise RuntimeError((child.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(child.stdout.strip().splitlines()[-1])


def modes(bf16: bool) -> list[tuple[str, str, str, bool]]:
    precisions = ["bf16-mixed", "32-true"] if bf16 else ["32-true"]
    return [(f"{way_name} {'bf16' if p == 'bf16-mixed' else 'fp32'} {'compiled' if c else 'eager'}", way, p, c)
            for p in precisions for c in (False, True) for way, way_name in (("b", "loop"), ("a", "fit "))]


def part_one(args, bf16: bool) -> None:
    cache = tempfile.mkdtemp(prefix="compile_pays_inductor_")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    for backbone in args.backbones.split(","):
        print(f"\n### {backbone} p4/se, batch 128, {args.images} images, 1 warm-up + {args.epochs} timed epochs, "
              f"{args.threads} threads, {args.repeats} repeats interleaved\n")
        print("| mode | img/s after warm-up (median) | repeats | warm-up extra s: first / median of the rest |")
        print("|---|---:|---|---:|")
        results: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for label, way, precision, compile in modes(bf16):
                results.setdefault(label, []).append(row(args, backbone, way, precision, compile, env))
        for label, rows in results.items():
            rates = [r["timed"] for r in rows]
            extra = [r["warmup_extra_s"] for r in rows]
            rest = f"{statistics.median(extra[1:]):.1f}" if len(extra) > 1 else "-"
            print(f"| {label} | {statistics.median(rates):,.0f} | {', '.join(f'{x:,.0f}' for x in rates)} "
                  f"| {extra[0]:.1f} / {rest} |", flush=True)
        for precision in (["bf16", "fp32"] if bf16 else ["fp32"]):
            median = {label: statistics.median(r["timed"] for r in rows) for label, rows in results.items()}
            fit = median[f"fit  {precision} compiled"]
            print(f"\n{precision}: fit compiled / loop compiled = "
                  f"{fit / median[f'loop {precision} compiled']:.2f} (target >= 0.9); "
                  f"fit compiled / fit eager = {fit / median[f'fit  {precision} eager']:.2f}")


def grid_file(folder: Path, name: str, args, compile: bool) -> Path:
    spec = {"name": name,
            "base": {"model": {"backbone": "resnet20", "attention": "se"},
                     "data": {"name": "imagefolder", "path": args.path, "train_subset": args.grid_images,
                              "val_size": 1000, "batch_size": 128},
                     "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5.0e-4,
                               "schedule": "cosine", "warmup_epochs": 1},
                     "trainer": {"max_epochs": args.grid_epochs, "progress_bar": False, "precision": "bf16-mixed",
                                 "channels_last": True, "compile": compile, "mask_telemetry": False}},
            "axes": {"seed": [0, 1], "model.pattern": ["none", "p1", "p2", "p3", "p4"]}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def part_two(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="compile_pays_grid_"))
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}  # the grid's own cache folder
    print(f"\n### A 10-run grid: none, p1..p4 (SE) × 2 seeds, ResNet-20, {args.grid_images} images × "
          f"{args.grid_epochs} epochs, bf16 + channels_last, 2 workers × 1 thread\n")
    print("| call | wall s | compile s per run (median; max) | cache of its runs |")
    print("|---|---:|---:|---|")
    walls = {}
    for name, compile in (("eager", False), ("compiled_cold", True), ("compiled_warm", True)):
        path = grid_file(folder, name, args, compile)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "attnplace.cli", "grid", str(path), "--workers", "2",
                        f"output_dir={folder / 'results'}"], check=True, capture_output=True, env=env, cwd=folder)
        walls[name] = time.perf_counter() - start
        sessions = [json.loads(p.read_text())["sessions"][-1]
                    for p in (folder / "results" / name / "runs").glob("*/record.json")]
        seconds = [s["compile"]["seconds"] for s in sessions if s.get("compile")]
        caches = sorted({s["compile"]["cache"] for s in sessions if s.get("compile")})
        spent = f"{statistics.median(seconds):.1f}; {max(seconds):.1f}" if seconds else "-"
        print(f"| {name.replace('_', ', ')} | {walls[name]:,.0f} | {spent} | {', '.join(caches) or '-'} |", flush=True)
    print(f"\neager / compiled (cold cache) = {walls['eager'] / walls['compiled_cold']:.2f}; "
          f"eager / compiled (warm cache) = {walls['eager'] / walls['compiled_warm']:.2f} (target >= 1.3)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(SHARED))
    parser.add_argument("--backbones", default="resnet20,resnet56")
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--grid-images", type=int, default=5000)
    parser.add_argument("--grid-epochs", type=int, default=2)
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()
    import torch

    from attnplace.run.environment import cpu_model
    from attnplace.run.environment import cpu_has_bf16

    bf16 = cpu_has_bf16()
    print(f"CPU: {cpu_model()}; native bf16: {'yes' if bf16 else 'no'}; torch {torch.__version__}; "
          f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    part_one(args, bf16)
    if not args.skip_grid:
        part_two(args)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
