"""The full-data regime's speed: `attnplace fit` against a compiled plain loop, both training 45,000 CIFAR-10
(JPEG) images an epoch and validating on 5,000 after every epoch, in one process, the machine otherwise idle.

    python benchmarks/full_data.py [--config experiments/integration_cpu.yaml] [--pattern p1] [--epochs 3]
    python benchmarks/full_data.py --images 1024 --epochs 2     # a quick check of the script

The run is the grid file's base config (the study recipe; default the integration study's: bf16-mixed,
channels_last, compiled, batch 128) with `--pattern`, for `--epochs` epochs:
  a. fit: `attnplace fit`'s Trainer (`fit.make_trainer`: loggers, the recorder, checkpoints, mask telemetry),
     timed at each epoch's start, so an epoch is its training, its validation and every epoch-end write;
  b. plain loop: the same network, optimizer and schedule over the same `BatchLoader`s, compiled the same way,
     validating after every epoch (no_grad, autocast), and nothing else.
Printed per way: every epoch's wall seconds and training images / wall second, and the training-only rate
(the record's clock, `train_images_per_s`); then a/b over the epochs after the first (which compiles). Target
(issue "Published numbers, reproduced"): a/b >= 0.9.
"""

import argparse
import contextlib
import itertools
import tempfile
import time

import lightning as L
import torch
from torch import nn
from train_throughput import prepared, quiet_lightning, sgd_like_the_module

from attnplace.data.batches import BatchLoader
from attnplace.models import build_network
from attnplace.run.config import Config, canonical
from attnplace.run.config_io import from_dict, merge, read_yaml
from attnplace.train.fit import make_trainer
from attnplace.train.module import PlacementModule
from attnplace.train.recorder import RunRecorder


class EpochClock(L.Callback):
    """perf_counter at each training epoch's start and at the end of fit: an epoch is all that happens
    between two starts (training, validation, epoch-end checkpoint and record writes)."""

    def __init__(self):
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self.marks.append(time.perf_counter())

    def on_fit_end(self, trainer, module):
        self.marks.append(time.perf_counter())


def fit_way(config: Config, data) -> dict:
    L.seed_everything(config.seed, verbose=False)
    module = PlacementModule(config, data.num_classes, data.in_channels)
    run_dir = config.resolved_run_dir()
    recorder = RunRecorder(run_dir / "record.json", {})
    trainer = make_trainer(config, run_dir, recorder)
    clock = EpochClock()
    trainer.callbacks.append(clock)
    trainer.fit(module, datamodule=data)
    walls = [b - a for a, b in itertools.pairwise(clock.marks)]
    return {"wall_s": walls, "train_s": [h["train_seconds"] for h in recorder.history],
            "images": [h["train_images"] for h in recorder.history]}


def loop_way(config: Config, data) -> dict:
    t, device = config.trainer, torch.device("cpu")
    model = build_network(config.model, data.num_classes, data.in_channels, config.seed)
    model = model.to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    if t.compile:
        model.compile()
    epoch = [0]  # the loop's epoch counter, which draws each epoch's shuffle and augmentation as the Trainer's
    shown = data.train_dataloader()
    train = BatchLoader(shown.images, shown.labels, data.mean, data.std, config.data.batch_size, train=True,
                        augment=data.augment, seed=config.seed, epoch=lambda: epoch[0])
    val = data.val_dataloader()
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    optimizer, scheduler = sgd_like_the_module(model, config, steps_per_epoch=len(train))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if t.precision == "bf16-mixed"
                else contextlib.nullcontext())
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    walls, trains, images = [], [], []
    for epoch[0] in range(t.max_epochs):
        start, seen = time.perf_counter(), 0
        model.train()
        for x, y in train:
            with autocast:
                loss = criterion(model(x.contiguous(memory_format=memory_format)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
        trained = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad(), autocast:
            for x, y in val:
                correct += int((model(x.contiguous(memory_format=memory_format)).argmax(1) == y).sum())
        walls.append(time.perf_counter() - start)
        trains.append(trained - start)
        images.append(seen)
    return {"wall_s": walls, "train_s": trains, "images": images}


def study_config(path: str, pattern: str, epochs: int, run_dir: str, images: int | None = None) -> Config:
    """The grid file's base config with `pattern`, `epochs` epochs, its folder in `run_dir` and, for a quick
    check of this script, `images` training images."""
    base = merge(read_yaml(path)["base"], {"model.pattern": pattern, "trainer.max_epochs": epochs,
                                           "data.train_subset": images})
    return canonical(from_dict(Config, {**base, "run_dir": run_dir}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/integration_cpu.yaml", help="a grid file: its base config")
    parser.add_argument("--pattern", default="p1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--images", type=int, help="a class-balanced training subset, to check the script quickly")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_lightning()
    with tempfile.TemporaryDirectory() as run_dir:
        config = study_config(args.config, args.pattern, args.epochs, run_dir, args.images)
        data = prepared(config)
        t = config.trainer
        print(f"{config.model.backbone} {config.model.pattern} {config.model.attention}: {data.num_train} training and "
              f"{config.data.val_size} validation images, batch {config.data.batch_size}, {args.epochs} epochs; "
              f"{t.precision}, channels_last={t.channels_last}, compile={t.compile}, threads {torch.get_num_threads()}")
        results = {"a. fit": fit_way(config, data), "b. plain loop": loop_way(config, data)}
    rate = {}
    for way, r in results.items():
        walls = " ".join(f"{w:.1f}" for w in r["wall_s"])
        rate[way] = sum(r["images"][1:]) / sum(r["wall_s"][1:])
        train_rate = sum(r["images"][1:]) / sum(r["train_s"][1:])
        print(f"{way:<14} epoch wall s: {walls}; after epoch 1: {rate[way]:,.0f} img/s with validation, "
              f"{train_rate:,.0f} img/s training only")
    a, b = rate.values()
    print(f"a/b = {a / b:.3f} (epochs 2..{args.epochs}, wall clock with validation; target >= 0.9)")


if __name__ == "__main__":
    main()
