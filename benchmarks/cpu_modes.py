"""CPU training images/s of every precision / memory-format / compile mode side by side, plain loop and fit path.

    python benchmarks/cpu_modes.py --threads 2 [--images 2560] [--epochs 2] [--emulated-images 512]

Rows: `train_throughput.py`'s plain loop (way b) in fp32 eager, fp32 channels_last, bf16 autocast +
channels_last, torch.compile fp32 channels_last and torch.compile bf16 + channels_last; then its fit path
(way a) in fp32 eager (the CPU default before the preset) and in the CPU preset, as `TrainerConfig.resolved()`
resolves it on this machine. Each row: one warm-up epoch, then `--epochs` timed ones, on the same CIFAR-10
(JPEG) subset; reported are all timed epochs together, all epochs including the warm-up one, and the warm-up
epoch's seconds beyond a timed epoch's (torch.compile's compilation, for the compiled rows). Each row runs in
a fresh process, as a run of `attnplace fit` would (no row inherits another's warm kernels), and compilation
starts from an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR), as a fresh machine's first run would.

On a CPU without native bf16 (no AVX512-BF16 / AMX) the bf16 rows run emulated, about a tenth of fp32's
speed: they train `--emulated-images` images per epoch instead (`0` skips them), so their "incl. warm-up"
figure (a shorter epoch beside the same warm-up) is not comparable to the other rows'.

Ratios printed: fit in the preset / the best plain-loop row (target >= 0.9) and fit in the preset / fit in
fp32 eager (target >= 1.6 on a CPU with native bf16), after the warm-up epoch and including it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Before torch is imported: inductor reads its cache folder once. The rows' processes inherit it.
OWN_CACHE = "TORCHINDUCTOR_CACHE_DIR" not in os.environ
if OWN_CACHE:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cpu_modes_inductor_")

import time  # noqa: E402

import torch  # noqa: E402
from train_throughput import (SHARED, WARMUP_EPOCHS, measure, prepared, quiet_lightning,  # noqa: E402
                              throughput_config)

from attnplace.run.sections import TrainerConfig, cpu_has_bf16  # noqa: E402
from attnplace.run.environment import cpu_model  # noqa: E402


def modes(preset: TrainerConfig) -> list[tuple[str, str, str, bool, bool]]:
    """(label, way, precision, channels_last, compile) of each row; way a is the fit path, b the plain loop."""
    return [
        ("loop  fp32 eager", "b", "32-true", False, False),
        ("loop  fp32 channels_last", "b", "32-true", True, False),
        ("loop  bf16 autocast + channels_last", "b", "bf16-mixed", True, False),
        ("loop  compile fp32 channels_last", "b", "32-true", True, True),
        ("loop  compile bf16 + channels_last", "b", "bf16-mixed", True, True),
        ("fit   fp32 eager (old CPU default)", "a", "32-true", False, False),
        (f"fit   preset: {describe(preset.precision, preset.channels_last, preset.compile)}", "a",
         preset.precision, preset.channels_last, preset.compile),
    ]


def describe(precision: str, channels_last: bool, compile: bool) -> str:
    return " + ".join([*(["compile"] if compile else []), "bf16" if precision == "bf16-mixed" else "fp32",
                       "channels_last" if channels_last else "contiguous"])


def run_mode(args, way: str, precision: str, channels_last: bool, compile: bool, images: int) -> dict:
    """One row, in a fresh process: the figures of `summary` over `images` training images."""
    row = json.dumps([way, precision, channels_last, compile, images])
    child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--row", row], capture_output=True, text=True)
    if child.returncode:
        raise RuntimeError((child.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure_row(args, way: str, precision: str, channels_last: bool, compile: bool, images: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        config = throughput_config(
            run_dir, path=args.path, images=images, backbone=args.backbone, pattern=args.pattern,
            attention=args.attention, batch_size=args.batch_size, epochs=args.epochs, device="cpu",
            precision=precision, channels_last=channels_last, compile=compile)
        data = prepared(config)
        start = time.perf_counter()
        rates = measure(config, data, torch.device("cpu"), workers=0, ways=way)[way]["epoch_images_per_s"]
        return summary(rates, data.num_train, time.perf_counter() - start)


def summary(rates: list[float], images: int, wall: float) -> dict:
    """Equal-sized epochs: a run of epochs goes at the harmonic mean of their rates."""
    timed = rates[WARMUP_EPOCHS:]
    seconds = [images / r for r in rates]
    steady = sum(seconds[WARMUP_EPOCHS:]) / len(timed)
    return {"images": images, "timed": len(timed) / sum(1 / r for r in timed),
            "all": len(rates) / sum(1 / r for r in rates),
            "warmup_extra_s": sum(seconds[:WARMUP_EPOCHS]) - WARMUP_EPOCHS * steady, "wall_s": wall}


def cpu_ids() -> str:
    """The processor's family and model from /proc/cpuinfo (model names like "AMD EPYC" hide the generation)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "family ?"
    ids = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines[:12])}
    return f"family {ids.get('cpu family', '?')} model {ids.get('model', '?')}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(SHARED), help="an image-folder dataset (folder or archive)")
    parser.add_argument("--images", type=int, default=2560, help="training images (class-balanced subset)")
    parser.add_argument("--emulated-images", type=int, default=512,
                        help="images of the bf16 rows where bf16 is emulated (0: skip those rows)")
    parser.add_argument("--backbone", default="resnet20")
    parser.add_argument("--pattern", default="p4")
    parser.add_argument("--attention", default="se")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per row, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", default="", help="run only the rows whose label contains this, e.g. 'fit'")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure this one row, print it as JSON
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    quiet_lightning()
    if args.row:
        print(json.dumps(measure_row(args, *json.loads(args.row))))
        return
    native_bf16 = cpu_has_bf16()
    preset = TrainerConfig().resolved("cpu")
    print(f"CPU: {cpu_model()} ({cpu_ids()}); native bf16 (AVX512-BF16/AMX): {'yes' if native_bf16 else 'no'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{args.backbone} {args.pattern} {args.attention}, batch {args.batch_size}, "
          f"CIFAR-10 (JPEG) subset in memory, {WARMUP_EPOCHS} warm-up + {args.epochs} timed epochs per row; "
          f"CPU preset here: {describe(preset.precision, preset.channels_last, preset.compile)}")
    print(f"load average at the start (1/5/15 min): {load()}; other work on the cores slows every row down")
    print()
    print(f"| {'mode':<52} | images | img/s after warm-up | img/s incl. warm-up | warm-up extra s | wall s |")
    print(f"|{'-' * 54}|-------:|--------------------:|--------------------:|----------------:|-------:|")
    rows = {}
    try:
        for label, way, precision, channels_last, compile in modes(preset):
            if args.only not in label:
                continue
            emulated = precision == "bf16-mixed" and not native_bf16
            images = args.emulated_images if emulated else args.images
            if images <= 0:
                print(f"| {label:<52} | skipped: bf16 is emulated on this CPU |")
                continue
            try:
                r = rows[label] = run_mode(args, way, precision, channels_last, compile, images)
            except Exception as error:  # e.g. inductor failing on this CPU: report it, go on with the rest
                print(f"| {label:<52} | failed: {type(error).__name__}: {str(error).splitlines()[0][:80]} |")
                continue
            note = " (emulated bf16)" if emulated else ""
            print(f"| {label + note:<52} | {r['images']:>6} | {r['timed']:>19,.0f} | {r['all']:>19,.0f} "
                  f"| {r['warmup_extra_s']:>15,.1f} | {r['wall_s']:>6,.0f} |", flush=True)
    finally:
        if OWN_CACHE:
            shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

    print(f"\nload average at the end: {load()}")
    fit_preset = rows.get(modes(preset)[-1][0])
    fit_fp32 = rows.get(modes(preset)[-2][0])
    loops = {label: r for label, r in rows.items() if label.startswith("loop")}
    if not (fit_preset and fit_fp32 and loops):
        return
    print()
    for key, when in (("timed", "after warm-up"), ("all", "incl. warm-up")):
        best = max(loops, key=lambda label: loops[label][key])
        print(f"{when}: fit preset / best plain loop ({best.split(maxsplit=1)[1]}) = "
              f"{fit_preset[key] / loops[best][key]:.2f} (target >= 0.9); fit preset / fit fp32 eager = "
              f"{fit_preset[key] / fit_fp32[key]:.2f} (target >= 1.6 on a CPU with native bf16"
              f"{'' if native_bf16 else '; this one has none'})")


if __name__ == "__main__":
    main()
