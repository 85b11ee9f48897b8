"""The config's sections but the model's (models/options.py): data, optimisation, trainer and logging, each a
typed dataclass that checks its own values, so that a mistake fails before training with one line naming the
dotted key (`from_dict` names the section) and what would be valid. The trainer's device presets live here.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, choose, require
from .environment import cpu_has_bf16
from .later import later

DATASETS_WITH_FILES = ("imagefolder", "fashion-mnist")  # must exist; cifar10/100 may be downloaded into `path`


@dataclass(frozen=True)
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | imagefolder | fashion-mnist | synthetic
    path: str | None = "data"
    val_size: int = 5000
    train_subset: int | None = None  # class-balanced subset of train, for quick runs
    augment: str = "crop_flip"  # crop_flip | none
    batch_size: int = 128
    eval_batch_size: int = 1000
    synthetic: dict | None = None  # options of the `synthetic` dataset (smoke tests only)

    def train_images(self) -> int | None:
        """Training images per epoch as the config alone tells: the subset, or a shipped dataset's size less the
        validation carve; None for an image folder of unknown size. (The CPU preset's compile rule reads it,
        and may read nothing but the config.)"""
        if self.train_subset is not None:
            return self.train_subset
        shipped = SHIPPED_TRAIN_IMAGES.get(self.name) or (self.synthetic or {}).get("num_train")
        return None if shipped is None else max(0, shipped - self.val_size)

    def __post_init__(self):
        from ..data import AUGMENTS, DATASETS

        choose("name", self.name, DATASETS.names())
        choose("augment", self.augment, AUGMENTS.names())
        require(self.val_size >= 0, "val_size", self.val_size, ">= 0")
        require(self.train_subset is None or self.train_subset > 0, "train_subset", self.train_subset, "> 0 or null")
        require(self.batch_size > 0, "batch_size", self.batch_size, "> 0")
        require(self.eval_batch_size > 0, "eval_batch_size", self.eval_batch_size, "> 0")

    def check_files_here(self) -> None:
        """A dataset that must be on disk (an image folder, Fashion-MNIST) is at `path` on this machine. Checked
        where a run is about to train here (`load_config`, `load_grid`), not wherever a config is read: a
        checkpoint's config is read to evaluate on machines without the data."""
        if self.name in DATASETS_WITH_FILES and not (self.path and Path(self.path).exists()):
            raise UserError(f"data.path={self.path!r} is invalid; valid: an existing {self.name} folder or archive")


SCHEDULES = ("cosine", "onecycle", "constant", "step")


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd (Nesterov) | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # never applied to norms, biases or gate scalars
    schedule: str = "cosine"  # cosine | onecycle | constant | step
    warmup_epochs: float = 1.0
    milestones: tuple[float, ...] | None = later(None)  # step: the epochs (fractions allowed) where lr is multiplied...
    step_factor: float = later(0.1)  # ... by this (He et al.: ÷10 at 32k and 48k of 64k iterations)
    label_smoothing: float = 0.0
    gate_lr_scale: float = 1.0  # lr multiplier for the gate scalars γ_s, γ_r and λ's logit

    def __post_init__(self):
        choose("name", self.name, ["sgd", "adamw"])
        choose("schedule", self.schedule, SCHEDULES)
        require(self.lr > 0, "lr", self.lr, "> 0")
        require(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        require(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, ">= 0")
        require(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)")
        require(self.gate_lr_scale > 0, "gate_lr_scale", self.gate_lr_scale, "> 0")
        require(0 < self.step_factor <= 1, "step_factor", self.step_factor, "in (0, 1]")
        if self.schedule == "step":
            m = self.milestones or ()
            require(len(m) > 0 and m[0] > 0 and all(a < b for a, b in zip(m, m[1:])), "milestones", self.milestones,
                    "increasing epochs > 0 with schedule=step, e.g. [91, 136]")
        require(not (self.name == "sgd" and self.nesterov and self.momentum == 0), "momentum", self.momentum,
                "in (0, 1) with nesterov=true (Nesterov needs momentum), or set optim.nesterov=false")


    def canonical(self) -> "OptimConfig":
        """These settings with the options the schedule does not read reset, so they never split a run id."""
        if self.schedule == "step":
            return self
        return dataclasses.replace(self, milestones=None, step_factor=OptimConfig.step_factor)


# Training images the datasets of fixed size ship (synthetic: its `num_train`, default 1000).
SHIPPED_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "fashion-mnist": 60_000, "synthetic": 1000}
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "auto")
# The CPU preset compiles a run that trains at least this many images (epochs × images per epoch): see `resolved`.
CPU_COMPILE_MIN_IMAGES = 50_000
TEST_ON = ("final", "best_val")  # which weights the test split sees: the last epoch's, or the best validation's


@dataclass(frozen=True)
class TrainerConfig:
    max_epochs: int = 30
    accelerator: str = "auto"  # auto | cpu | gpu
    # auto / null: the device's preset (`resolved`), which `canonical` writes into the config and so the run id
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool | None = None
    deterministic: bool = False
    gate_log_every_n_steps: int = 50  # also the interval of every per-step log (train_loss_step)
    nan_check_every_n_steps: int = 50  # a NaN/inf loss is looked for on the host this often, and at epoch end
    progress_bar: bool = True
    threads: int | None = None  # torch CPU threads; grids set it so parallel runs don't oversubscribe
    test_on: str = "final"  # final | best_val
    mask_telemetry: bool = True  # mask statistics on a fixed validation batch at every epoch end (telemetry.py)

    def __post_init__(self):
        require(self.max_epochs >= 1, "max_epochs", self.max_epochs, ">= 1")
        require(self.gate_log_every_n_steps >= 1, "gate_log_every_n_steps", self.gate_log_every_n_steps, ">= 1")
        require(self.nan_check_every_n_steps >= 1, "nan_check_every_n_steps", self.nan_check_every_n_steps, ">= 1")
        require(self.threads is None or self.threads >= 1, "threads", self.threads, ">= 1 or null")
        choose("precision", self.precision, PRECISIONS)
        choose("accelerator", self.accelerator, ["auto", "cpu", "gpu", "cuda"])
        choose("test_on", self.test_on, TEST_ON)

    def device(self) -> str:
        """Where a run of this config trains here: `cuda` when a CUDA GPU is visible and allowed, else `cpu`."""
        import torch

        return "cuda" if self.accelerator != "cpu" and torch.cuda.is_available() else "cpu"

    def resolved(self, device: str | None = None, bf16_cpu: bool | None = None,
                 train_images: int | None = None) -> "TrainerConfig":
        """These settings with `auto`/null made concrete for `device` (default: `self.device()`).

        The presets are measured (benchmarks/train_throughput.py, results/benchmarks/):
        - CUDA: bf16 autocast, channels_last and torch.compile, the fast path for these small nets.
        - A CPU with native bf16 (AVX512-BF16 or AMX; `bf16_cpu`, default read from /proc/cpuinfo):
          bf16 autocast and channels_last (1.5x fp32 eager on a 2-core Zen 4).
        - Any other CPU: fp32 and channels_last (1.14x fp32 eager on a 2-core Zen 3, where emulated bf16
          runs at a tenth of fp32's speed).
        - torch.compile on a CPU where it pays back (`compile_pays`).
        `train_images` (training images per epoch, `DataConfig.train_images`) is what the compile rule reads of
        the run. Values set explicitly are kept.
        """
        gpu = (device or self.device()) == "cuda"
        bf16 = gpu or (cpu_has_bf16() if bf16_cpu is None else bf16_cpu)
        precision = ("bf16-mixed" if bf16 else "32-true") if self.precision == "auto" else self.precision
        images = self.max_epochs * train_images if train_images else None
        return dataclasses.replace(
            self, precision=precision, channels_last=True if self.channels_last is None else self.channels_last,
            compile=compile_pays(gpu, precision, images) if self.compile is None else self.compile)


def compile_pays(gpu: bool, precision: str, images: int | None) -> bool:
    """Whether the preset compiles a run: always on a GPU; on a CPU when the run trains in bf16 and at least
    `CPU_COMPILE_MIN_IMAGES` images, as far as the config tells (`images`: epochs × training images, None when
    the config does not say).

    Why (2-core CPUs, p4/se, batch 128, `attnplace fit` after the warm-up epoch; results/benchmarks/
    compile_pays_xeon_amx.md): compiling a network costs ~35–55 s in a cold cache and 2.5–5 s warm (the cache
    sits beside the results, `compiling.py`, so a study's later seed blocks and resumed calls are warm).
    - bf16 on an Intel Xeon with AMX: ResNet-20 847 img/s compiled against 572 eager (1.48x), ResNet-56 311
      against 207 (1.50x); an AMD EPYC with AVX512-BF16 gave 646 against 446 (1.45x). Over the committed CPU
      regime's 100,000 images that saves ~57 s a ResNet-20 run, more than a cold compile costs; from 50,000
      images on the rule compiles. Shorter runs (the quickstart's 15,000, the smoke grid, the tests) stay eager.
    - fp32: 450 against 443 (1.01x) for ResNet-20 and 169 against 158 (1.07x) for ResNet-56 on the Xeon, 1.16x
      on the Zen 3 EPYC (cpu_ceiling.md): a few seconds a run, not a cold compile's 35 s, so fp32 stays eager.
    The rule reads only the config and the CPU's flags, never the cache's state, so the same command keeps its
    run id once the cache is warm."""
    if gpu:
        return True
    return precision == "bf16-mixed" and images is not None and images >= CPU_COMPILE_MIN_IMAGES


@dataclass(frozen=True)
class WandbConfig:
    project: str = "attnplace"
    mode: str = "auto"  # auto: online only if the user has logged in (WANDB_API_KEY or netrc), else offline

    def __post_init__(self):
        choose("mode", self.mode, ["auto", "online", "offline"])
