"""Training images/s of one model, three ways: the `attnplace fit` path, a plain PyTorch loop, and that loop
fed by the usual torchvision pipeline.

    python benchmarks/train_throughput.py [--images 2560] [--epochs 2] [--batch-size 128] [--threads N]
    python benchmarks/train_throughput.py --device cuda --precision bf16-mixed --channels-last --compile

All three train the same model (`build_model`, same seed and init) with the same optimizer (SGD + Nesterov,
weight decay on conv/linear weights only, the warm-up + cosine schedule stepped every batch) on the same
`--images` training images (a class-balanced subset), held decoded in memory:

  a. fit path: `PlacementModule` + `AttnDataModule` in a Trainer from `fit.make_trainer` (the CSV logger, the
     run recorder and the `last.ckpt` callback included), timed by the clock that gives a run record its
     `train_images_per_s`: training batches only, so the epoch-end checkpoint and record writes are not timed;
  b. plain loop: forward, loss, backward, optimizer and schedule steps over a `BatchLoader` (same crop_flip),
     no Lightning, no metrics or logging;
  c. the plain loop over torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize on
     in-memory PIL images, in a DataLoader(num_workers=2, persistent workers).

Each runs one untimed warm-up epoch (allocator, kernels, compilation, worker start-up), then `--epochs`
timed ones; reported are the best timed epoch and all timed epochs together. a/b is the cost of Lightning
and the module's per-step metrics and logging; b/c that of the torchvision input pipeline. All three run in
one process with the same `torch.set_num_threads`.
"""

import argparse
import contextlib
import itertools
import logging
import tempfile
import time
import warnings
from collections.abc import Iterable

import lightning as L
import torch
from dataloader_vs_torchvision import SHARED, PILImages  # the sibling benchmark's in-RAM PIL dataset
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from attnplace.data import AttnDataModule
from attnplace.data.batches import BatchLoader
from attnplace.models import build_network
from attnplace.run.config import Config, load_config
from attnplace.train.fit import make_datamodule, make_trainer
from attnplace.train.module import PlacementModule, lr_factor, param_groups
from attnplace.train.recorder import RunRecorder

WARMUP_EPOCHS = 1


def fit_path(config: Config, data: AttnDataModule) -> list[float]:
    """a. What `attnplace fit` trains (set up as `fit.fit` does), without the test pass."""
    L.seed_everything(config.seed, verbose=False)
    module = PlacementModule(config.to_dict(), data.num_classes, data.in_channels)
    run_dir = config.resolved_run_dir()
    recorder = RunRecorder(run_dir / "record.json", {})
    make_trainer(config, run_dir, recorder).fit(module, datamodule=data)
    return [h["train_images"] / h["train_seconds"] for h in recorder.history]


def plain_loop(config: Config, data: AttnDataModule, batches: Iterable, device: torch.device) -> list[float]:
    """b and c: the same model and optimizer as `PlacementModule`, trained by hand over `batches`; images/s
    of each epoch."""
    model = build_network(config.model, data.num_classes, data.in_channels, config.seed)
    t = config.trainer
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    forward = torch.compile(model) if t.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    optimizer, scheduler = sgd_like_the_module(model, config, steps_per_epoch=len(batches))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if t.precision == "bf16-mixed"
                else contextlib.nullcontext())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    rates = []
    for _ in range(config.trainer.max_epochs):
        start, seen = time.perf_counter(), 0
        for x, y in batches:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast:
                loss = criterion(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
        sync()
        rates.append(seen / (time.perf_counter() - start))
    return rates


def sgd_like_the_module(model: nn.Module, config: Config, steps_per_epoch: int):
    """`PlacementModule.configure_optimizers` for SGD, without a Trainer to ask for the step count."""
    opt = config.optim
    groups = param_groups(model, opt.lr, opt.weight_decay, opt.gate_lr_scale)
    optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    total = steps_per_epoch * config.trainer.max_epochs
    warmup = round(opt.warmup_epochs * steps_per_epoch)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(opt.schedule, warmup, total))


WAYS = {
    "a": "attnplace fit path (Lightning Trainer, PlacementModule, AttnDataModule)",
    "b": "plain PyTorch loop over BatchLoader (batched crop_flip)",
    "c": "plain loop over torchvision transforms + DataLoader",
}


def throughput_config(run_dir: str, *, path: str, images: int, backbone: str, pattern: str, attention: str,
                      batch_size: int, epochs: int, device: str, precision: str, channels_last: bool,
                      compile: bool) -> Config:
    """A run of `WARMUP_EPOCHS + epochs` epochs on `images` training images, no validation, trainer settings
    explicit (no `auto`), so that all three ways train alike."""
    return load_config(None, [
        f"model.backbone={backbone}", f"model.pattern={pattern}", f"model.attention={attention}",
        "data.name=imagefolder", f"data.path={path}", f"data.train_subset={images}", "data.val_size=0",
        f"data.batch_size={batch_size}", f"trainer.max_epochs={WARMUP_EPOCHS + epochs}",
        f"trainer.accelerator={device}", f"trainer.precision={precision}", f"trainer.channels_last={channels_last}",
        f"trainer.compile={compile}", "trainer.progress_bar=false", f"run_dir={run_dir}",
    ])


def prepared(config: Config) -> AttnDataModule:
    data = make_datamodule(config)
    data.prepare_data()
    data.setup("fit")
    return data


def measure(config: Config, data: AttnDataModule, device: torch.device, workers: int,
            ways: str = "abc") -> dict[str, dict]:
    """For each of `ways`: images/s of every epoch (the first `WARMUP_EPOCHS` are warm-up) and peak GPU
    memory in GB (None on a CPU). `workers`: DataLoader workers of the torchvision pipeline (c)."""
    # The very tensors the fit path trains on, taken before its Trainer may move them to the GPU.
    train = data.train_dataloader()
    images, labels = train.images, train.labels
    epochs = itertools.count()  # a new shuffle and augmentation draw each pass, as under the Trainer
    batch_size = config.data.batch_size
    runs = {
        "a": lambda: fit_path(config, data),
        "b": lambda: plain_loop(config, data, BatchLoader(
            images.to(device), labels.to(device), data.mean, data.std, batch_size, train=True,
            augment=data.augment, seed=config.seed, epoch=lambda: next(epochs)), device),
        "c": lambda: plain_loop(config, data, torchvision_loader(images, labels, data, batch_size, workers,
                                                                 pin=device.type == "cuda"), device),
    }
    results = {}
    for way in ways:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        rates = runs[way]()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        results[way] = {"epoch_images_per_s": rates, "peak_gb": peak}
    return results


def torchvision_loader(images: torch.Tensor, labels: torch.Tensor, data: AttnDataModule, batch_size: int,
                       workers: int, pin: bool) -> DataLoader:
    transform = transforms.Compose([
        transforms.RandomCrop(data.image_size, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    return DataLoader(PILImages(images.cpu(), labels.cpu(), transform), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=workers, persistent_workers=workers > 0, pin_memory=pin)


def best_and_overall(epoch_rates: list[float]) -> tuple[float, float]:
    """The best timed epoch, as timeit reports its best repeat (other load on the machine only ever slows an
    epoch down), and all timed epochs together (equal-sized epochs: the harmonic mean of their rates)."""
    timed = epoch_rates[WARMUP_EPOCHS:]
    return max(timed), len(timed) / sum(1 / r for r in timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(SHARED), help="an image-folder dataset (folder or archive)")
    parser.add_argument("--images", type=int, default=2560, help="training images (class-balanced subset)")
    parser.add_argument("--backbone", default="resnet20")
    parser.add_argument("--pattern", default="p1")
    parser.add_argument("--attention", default="se")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per way, after one warm-up epoch")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    # One thread by default: on a shared machine, several intra-op threads stall whenever another process
    # holds a core, which swamps what is measured here (raise it on an idle machine).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for all three ways")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    quiet_lightning()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        config = throughput_config(
            run_dir, path=args.path, images=args.images, backbone=args.backbone, pattern=args.pattern,
            attention=args.attention, batch_size=args.batch_size, epochs=args.epochs, device=args.device,
            precision=args.precision, channels_last=args.channels_last, compile=args.compile)
        data = prepared(config)
        m, t = config.model, config.trainer
        print(f"{m.backbone} {m.pattern} {m.attention}: {data.num_train} CIFAR-10 (JPEG) training images in memory, "
              f"batch {args.batch_size} ({data.num_train // args.batch_size} steps/epoch), {WARMUP_EPOCHS} warm-up + "
              f"{args.epochs} timed epochs; {args.device}, {t.precision}, channels_last={t.channels_last}, "
              f"compile={t.compile}, torch threads {torch.get_num_threads()}")
        results = measure(config, data, device, args.workers)
    rates = {}
    print(f"{'':<3}{'way':<80} {'best img/s':>11} {'all img/s':>10}")
    for key, result in results.items():
        rates[key], overall = best_and_overall(result["epoch_images_per_s"])
        label = WAYS[key] + (f" (num_workers={args.workers})" if key == "c" else "")
        print(f"{key}. {label:<80} {rates[key]:>11,.0f} {overall:>10,.0f}")
    print(f"a/b = {rates['a'] / rates['b']:.3f}  (Lightning + per-step metrics and logging; target >= 0.95 on CPU)")
    print(f"b/c = {rates['b'] / rates['c']:.2f}   (BatchLoader vs the torchvision input pipeline, same training loop)")


def quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available: ..." banner
    warnings.filterwarnings("ignore", module="lightning")  # advice for real runs (logging interval, no val set)


if __name__ == "__main__":
    main()
