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
from attnplace.data.loader import BatchLoader
from attnplace.models import build_model
from attnplace.train.config import Config, load_config
from attnplace.train.fit import make_datamodule, make_trainer
from attnplace.train.module import PlacementModule, lr_factor, param_groups
from attnplace.train.record import RunRecorder

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
    model = build_model(num_classes=data.num_classes, in_channels=data.in_channels, seed=config.seed,
                        **config.model.build_kwargs())
    memory_format = torch.channels_last if config.trainer.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    forward = torch.compile(model) if config.trainer.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    optimizer, scheduler = sgd_like_the_module(model, config, steps_per_epoch=len(batches))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.trainer.precision == "bf16-mixed"
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
    groups = [g for g in param_groups(model, opt.lr, opt.weight_decay, opt.gate_lr_scale) if g["params"]]
    optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    total = steps_per_epoch * config.trainer.max_epochs
    warmup = round(opt.warmup_epochs * steps_per_epoch)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(opt.schedule, warmup, total))


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
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available: ..." banner
    warnings.filterwarnings("ignore", module="lightning")  # advice for real runs (logging interval, no val set)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as run_dir:
        config = load_config(None, [
            f"model.backbone={args.backbone}", f"model.pattern={args.pattern}", f"model.attention={args.attention}",
            "data.name=imagefolder", f"data.path={args.path}", f"data.train_subset={args.images}",
            "data.val_size=0", f"data.batch_size={args.batch_size}",
            f"trainer.max_epochs={WARMUP_EPOCHS + args.epochs}", f"trainer.accelerator={args.device}",
            f"trainer.precision={args.precision}", f"trainer.channels_last={args.channels_last}",
            f"trainer.compile={args.compile}", "trainer.progress_bar=false", f"run_dir={run_dir}",
        ])
        data = make_datamodule(config)
        data.prepare_data()
        data.setup("fit")
        # The very tensors the fit path trains on, taken before its Trainer may move them to the GPU.
        train = data.train_dataloader()
        images, labels = train.images, train.labels
        epochs = itertools.count()  # a new shuffle and augmentation draw each pass, as under the Trainer
        ours = BatchLoader(images.to(device), labels.to(device), data.mean, data.std, args.batch_size, train=True,
                           augment=data.augment, seed=config.seed, epoch=lambda: next(epochs))
        transform = transforms.Compose([
            transforms.RandomCrop(data.image_size, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
        torchvision_loader = DataLoader(
            PILImages(images, labels, transform), batch_size=args.batch_size, shuffle=True, drop_last=True,
            num_workers=args.workers, persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")

        m, t = config.model, config.trainer
        print(f"{m.backbone} {m.pattern} {m.attention}: {data.num_train} CIFAR-10 (JPEG) training images in memory, "
              f"batch {args.batch_size} ({len(ours)} steps/epoch), {WARMUP_EPOCHS} warm-up + {args.epochs} timed "
              f"epochs; {args.device}, {t.precision}, channels_last={t.channels_last}, compile={t.compile}, "
              f"torch threads {torch.get_num_threads()}")
        epoch_rates = {
            "a": fit_path(config, data),
            "b": plain_loop(config, data, ours, device),
            "c": plain_loop(config, data, torchvision_loader, device),
        }
    ways = {
        "a": "attnplace fit path (Lightning Trainer, PlacementModule, AttnDataModule)",
        "b": "plain PyTorch loop over BatchLoader (batched crop_flip)",
        "c": f"plain loop over torchvision transforms + DataLoader(num_workers={args.workers})",
    }
    timed = {key: r[WARMUP_EPOCHS:] for key, r in epoch_rates.items()}
    # The best timed epoch, as timeit reports its best repeat: other load on the machine only ever slows an
    # epoch down. Beside it, all timed epochs together (equal-sized epochs: the harmonic mean of their rates).
    rates = {key: max(r) for key, r in timed.items()}
    print(f"{'':<3}{'way':<80} {'best img/s':>11} {'all img/s':>10}")
    for key, r in timed.items():
        print(f"{key}. {ways[key]:<80} {rates[key]:>11,.0f} {len(r) / sum(1 / x for x in r):>10,.0f}")
    print(f"a/b = {rates['a'] / rates['b']:.3f}  (Lightning + per-step metrics and logging; target >= 0.95 on CPU)")
    print(f"b/c = {rates['b'] / rates['c']:.2f}   (BatchLoader vs the torchvision input pipeline, same training loop)")


if __name__ == "__main__":
    main()
