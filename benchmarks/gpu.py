"""On a CUDA GPU in one call: does the fit path train without host syncs, where does a step's time go, and how
many runs should share the GPU.

    python benchmarks/gpu.py [--data PATH] [--out results/benchmarks] [--budget-s 480]
                             [--sections sync,eager,workers,compiled]
    benchmarks/gpu.sh [same options]   # the same, then packs results/benchmarks/ into $OUT when set
    python benchmarks/gpu.py --device cpu --images 512 --epochs 1 --grid-images 300 --worker-counts 1,2 \
        --loader-workers 0 --out /tmp/gpu-dry-run   # the plumbing, on a CPU in a few minutes (no sync check)

Data: `--data`, else $ATTNPLACE_DATA, else the shared CIFAR-10 (JPEG) tarball beside the repository. Sections,
in this order (each is skipped, and says so, when the time budget is spent):

  sync      the fit path (GPU preset but eager, p4/cbam, batch 128) under torch.cuda.set_sync_debug_mode("error")
            over training steps 5-24, between NaN checks and log steps: a host-device sync there is reported
            with the line that made it.
  eager     training img/s of resnet20 p1/se and p4/cbam at batch 128 and 512, bf16 + channels_last, eager:
            (a) the fit path, (b) a plain PyTorch loop, (c) that loop fed by torchvision transforms in a
            DataLoader (train_throughput.py's three ways); peak GPU memory of each.
  workers   aggregate img/s of N runs (p4/cbam, GPU preset, compile included) sharing the GPU as a grid with N
            local workers, N = 1, 2, 4, 8: the sum of the runs' per-run img/s after their warm-up epoch (all
            N start together), and all training images over the grid's wall time. The best N is written as
            `best_workers`, which benchmarks/gpu_study.sh uses.
  compiled  the eager rows again with torch.compile, ways a and b (compile does not change c's input
            pipeline); the first compile of each shape takes a minute or so.

Writes gpu.json and gpu.md under --out, and prints the tables.
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import lightning as L
import torch
import yaml
from dataloader_vs_torchvision import SHARED
from train_throughput import WAYS, best_and_overall, measure, prepared, quiet_lightning, throughput_config

from attnplace.atomic import write_json, write_text
from attnplace.data.load import keep_last_dataset
from attnplace.grid.runner import run_grid
from attnplace.grid.spec import load_grid
from attnplace.train.fit import make_trainer
from attnplace.run.config import Config
from attnplace.run.sections import TrainerConfig
from attnplace.train.module import PlacementModule
from attnplace.train.recorder import RunRecorder

MODELS = (("p1", "se"), ("p4", "cbam"))
BATCHES = (128, 512)
WORKER_COUNTS = (1, 2, 4, 8)
SECTIONS = ("sync", "eager", "workers", "compiled")
SYNC_STEPS = (5, 25)  # training steps [first, last) checked; NaN checks and log steps are set outside them


class Budget:
    """Seconds left of the call; a section or row that would start after the budget is skipped."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> bool:
        return time.perf_counter() < self.end


def row_config(run_dir: str, path: str, images: int, pattern: str, attention: str, batch: int, epochs: int,
               device: str, compile: bool) -> Config:
    """A throughput run of resnet20 with the GPU preset's precision and memory format (on a CPU: the CPU's)."""
    preset = TrainerConfig().resolved(device)
    return throughput_config(run_dir, path=path, images=images, backbone="resnet20", pattern=pattern,
                             attention=attention, batch_size=batch, epochs=epochs, device=device,
                             precision=preset.precision, channels_last=preset.channels_last, compile=compile)


def sync_check(path: str, images: int, run_dir: str) -> dict:
    """Train the fit path with host-device syncs made errors over `SYNC_STEPS`; say where one happened."""
    config = row_config(run_dir, path, images, "p4", "cbam", 128, epochs=0, device="cuda", compile=False)
    data = prepared(config)
    first, last = SYNC_STEPS

    class Window(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            torch.cuda.set_sync_debug_mode("error" if first <= batch_idx < last else "default")

    module = PlacementModule(config.to_dict(), data.num_classes, data.in_channels)
    trainer = make_trainer(config, config.resolved_run_dir(), RunRecorder(Path(run_dir) / "sync.json", {}))
    trainer.callbacks.append(Window())
    try:
        trainer.fit(module, datamodule=data)
        return {"steps": f"{first}-{last - 1}", "ok": True, "where": None}
    except RuntimeError:
        return {"steps": f"{first}-{last - 1}", "ok": False, "where": traceback.format_exc(limit=-6)}
    finally:
        torch.cuda.set_sync_debug_mode("default")


def throughput_rows(path: str, images: int, epochs: int, device: str, compiled: bool, workers: int, run_dir: str,
                    budget: Budget) -> list[dict]:
    rows = []
    for batch in BATCHES:
        for pattern, attention in MODELS:
            row = {"model": f"resnet20 {pattern}/{attention}", "batch": batch, "compile": compiled}
            rows.append(row)
            if not budget.left():
                row["skipped"] = "time budget spent"
                continue
            config = row_config(run_dir, path, images, pattern, attention, batch, epochs, device, compiled)
            results = measure(config, prepared(config), torch.device(device), workers, "ab" if compiled else "abc")
            for way, result in results.items():
                row[way] = round(best_and_overall(result["epoch_images_per_s"])[0])
                row[f"{way}_peak_gb"] = result["peak_gb"] and round(result["peak_gb"], 2)
            print(f"  {row}", flush=True)
    return rows


def worker_scaling(path: str, images: int, epochs: int, counts: list[int], out: Path, budget: Budget) -> list[dict]:
    """N runs on N local workers, all on this GPU, for each N in `counts`: aggregate img/s."""
    rows = []
    for n in counts:
        if not budget.left():
            rows.append({"workers": n, "skipped": "time budget spent"})
            continue
        spec = {"name": f"workers{n}", "base": {
            "model": {"backbone": "resnet20", "pattern": "p4", "attention": "cbam"},
            "data": {"name": "imagefolder", "path": path, "train_subset": images, "val_size": 0, "batch_size": 128},
            "trainer": {"max_epochs": epochs, "progress_bar": False}, "output_dir": str(out / "worker_grids")},
            "axes": {"seed": list(range(n))}}
        grid_file = out / "worker_grids" / f"workers{n}.yaml"
        write_text(grid_file, yaml.safe_dump(spec))
        grid = load_grid(grid_file)
        shutil.rmtree(grid.results_dir, ignore_errors=True)  # a grid resumes: a second call must start afresh
        start = time.perf_counter()
        run_grid(grid, workers=n, echo=lambda line: print(f"  {line}", flush=True))
        wall = time.perf_counter() - start
        records = [json.loads((Path(r.config.run_dir) / "record.json").read_text()) for r in grid.runs]
        done = [r for r in records if r["status"] == "completed"]
        per_run = [r["metrics"]["train_images_per_s"] for r in done]
        images_trained = sum(h["train_images"] for r in done for h in r["history"])
        rows.append({"workers": n, "runs": len(records), "completed": len(done), "wall_s": round(wall, 1),
                     "steady_images_per_s": round(sum(per_run)),
                     "per_run_images_per_s": round(sum(per_run) / len(per_run)) if per_run else None,
                     "wall_images_per_s": round(images_trained / wall)})
        print(f"  {rows[-1]}", flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [f"# GPU benchmark: {result['device']}", "",
             (f"torch {result['torch']}, lightning {result['lightning']}, {result['cpu_count']} CPU cores; "
              f"{result['images']} CIFAR-10 (JPEG) training images per run; {result['preset']}."), ""]
    if "sync" in result:
        sync = result["sync"]
        found = "none" if sync["ok"] else f"found:\n\n```\n{sync['where']}\n```"
        lines += [f"**Host syncs in the fit path** (steps {sync['steps']}): {found}", ""]
    rows = result.get("throughput", [])
    if rows:
        lines += ["## Training images/s (best timed epoch after one warm-up epoch)", "",
                  f"a: {WAYS['a']}; b: {WAYS['b']}; c: {WAYS['c']} (num_workers={result['loader_workers']}).", "",
                  "| model | batch | compile | a img/s | b img/s | c img/s | a/b | peak GB (a) |",
                  "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            measured = [f"{r[w]:,}" if w in r else "–" for w in "abc"]
            ratio = f"{r['a'] / r['b']:.2f}" if "b" in r else ""
            peak = "–" if r.get("a_peak_gb") is None else str(r["a_peak_gb"])
            cells = [r["skipped"], "", "", "", ""] if "skipped" in r else [*measured, ratio, peak]
            lines.append("| " + " | ".join([r["model"], str(r["batch"]), str(r["compile"]), *cells]) + " |")
        lines.append("")
    if result.get("workers"):
        lines += ["## Runs sharing the device (p4/cbam, batch 128, the device's preset: on a GPU with compile)", "",
                  "| workers | runs | wall s | sum of per-run img/s | per run img/s | all images / wall s |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["workers"]:
            lines.append(f"| {r['workers']} | {r['skipped']} | | | | |" if "skipped" in r else
                         f"| {r['workers']} | {r['completed']}/{r['runs']} | {r['wall_s']} | "
                         f"{r['steady_images_per_s']:,} | {r['per_run_images_per_s']:,} | {r['wall_images_per_s']:,} |")
        lines += ["", f"best_workers: {result.get('best_workers')}", ""]
    lines.append(f"Wall time of this benchmark: {result['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("ATTNPLACE_DATA", str(SHARED)),
                        help="CIFAR-10 (JPEG) tarball or another image-folder dataset")
    parser.add_argument("--out", default="results/benchmarks", help="folder for gpu.json, gpu.md and the grids")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=480, help="no new row starts after this many seconds")
    parser.add_argument("--images", type=int, default=20480, help="training images per throughput run")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per throughput way, after a warm-up one")
    parser.add_argument("--grid-images", type=int, default=10240, help="training images per run of the worker grids")
    parser.add_argument("--grid-epochs", type=int, default=3, help="epochs per run of the worker grids")
    parser.add_argument("--worker-counts", default=",".join(map(str, WORKER_COUNTS)), help="runs sharing the GPU")
    parser.add_argument("--loader-workers", type=int, default=8, help="DataLoader workers of the torchvision way")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run of the plumbing")
    args = parser.parse_args()
    sections = args.sections.split(",")
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; valid: {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here (--device cpu runs the plumbing; CPU figures: train_throughput.py)")

    start = time.perf_counter()
    budget = Budget(args.budget_s)
    quiet_lightning()
    keep_last_dataset()  # every row trains on the same decoded data
    out = Path(args.out)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    result = {"device": device, "torch": torch.__version__, "lightning": L.__version__,
              "python": platform.python_version(), "cpu_count": os.cpu_count(), "data": args.data,
              "images": args.images, "loader_workers": args.loader_workers,
              "preset": "{0.precision}, channels_last={0.channels_last}".format(TrainerConfig().resolved(args.device))}
    print(f"{result['device']}: torch {result['torch']}, data {args.data}", flush=True)
    with tempfile.TemporaryDirectory() as run_dir:
        if "sync" in sections and args.device == "cuda":
            result["sync"] = sync_check(args.data, args.images, run_dir)
            print(f"sync check: {'no host sync' if result['sync']['ok'] else result['sync']['where']}", flush=True)
        if "eager" in sections:
            print("eager throughput:", flush=True)
            result["throughput"] = throughput_rows(args.data, args.images, args.epochs, args.device, False,
                                                   args.loader_workers, run_dir, budget)
        if "workers" in sections:
            print("runs sharing the GPU:", flush=True)
            torch.cuda.empty_cache()  # the worker processes need the memory, not this one
            counts = [int(n) for n in args.worker_counts.split(",")]
            result["workers"] = worker_scaling(args.data, args.grid_images, args.grid_epochs, counts, out, budget)
            measured = [r for r in result["workers"] if r.get("steady_images_per_s")]
            if measured:
                result["best_workers"] = max(measured, key=lambda r: r["steady_images_per_s"])["workers"]
        if "compiled" in sections:
            print("compiled throughput:", flush=True)
            result.setdefault("throughput", []).extend(
                throughput_rows(args.data, args.images, args.epochs, args.device, True, args.loader_workers, run_dir,
                                budget))
    result["wall_s"] = time.perf_counter() - start
    write_json(out / "gpu.json", result)
    write_text(out / "gpu.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
