"""One training epoch, images/s: our `BatchLoader` vs the usual torchvision pipeline.

    python benchmarks/dataloader_vs_torchvision.py [--limit 10000] [--dataset imagefolder --path PATH]

Fair footing: both start from images already decoded in RAM. Ours batches uint8 tensors (crop_flip +
normalise on whole batches); torchvision's runs a Dataset over in-memory PIL images through
Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...)]) in a
DataLoader(num_workers=2, batch_size=512). Reported: the first epoch (worker start-up included) and the
best of the next few (persistent workers, steady state; best-of because a shared machine is noisy, and
the load average is printed for that reason). A second table gives images per CPU-second on one core
(our loader on one thread, torchvision's transforms in-process), which other jobs on the machine barely
move. CPU only: this compares the data pipelines, not devices.
"""

import argparse
import itertools
import os
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from attnplace.data import load_dataset
from attnplace.data.augment import crop_flip
from attnplace.data.batches import BatchLoader

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"


class PILImages(Dataset):
    """Decoded PIL images held in a list, as a torchvision user would keep a small dataset in RAM."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = [Image.fromarray(x.permute(1, 2, 0).squeeze(2).numpy()) for x in images]
        self.labels, self.transform = labels.tolist(), transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def epoch_rates(loader, count: int, epochs: int) -> tuple[float, float]:
    """images/s of the first full pass over `loader`, and the best of the `epochs` passes after it."""
    rates = []
    for _ in range(1 + epochs):
        start = time.perf_counter()
        for _batch in loader:
            pass
        rates.append(count / (time.perf_counter() - start))
    return rates[0], max(rates[1:])


def cpu_rate(loader, count: int) -> float:
    """images per CPU-second of this process for one pass (after a warm-up pass)."""
    for _ in range(2):
        start = time.process_time()
        for _batch in loader:
            pass
    return count / (time.process_time() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="imagefolder")
    parser.add_argument("--path", default=str(SHARED))
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="steady-state epochs after the first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for our loader")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, args.path)
    images, labels = data.train_x[:args.limit], data.train_y[:args.limit]
    count = len(images) // args.batch_size * args.batch_size  # both drop the last partial batch
    size = data.image_size[0]

    epochs = itertools.count()  # a new shuffle each pass, as under a trainer
    ours = BatchLoader(images, labels, data.mean, data.std, args.batch_size, train=True, augment=crop_flip,
                       epoch=lambda: next(epochs))
    transform = transforms.Compose([transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    theirs = DataLoader(PILImages(images, labels, transform), batch_size=args.batch_size, shuffle=True,
                        drop_last=True, num_workers=args.workers, persistent_workers=args.workers > 0)

    print(f"{args.dataset}: {len(images)} training images {tuple(images.shape[1:])}, batch {args.batch_size}, "
          f"CPU, both from images already decoded in memory (theirs: a Dataset over in-RAM PIL images)")
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = [(f"attnplace BatchLoader (torch threads={torch.get_num_threads()}, batched crop_flip)",
             epoch_rates(ours, count, args.epochs)),
            (f"torchvision transforms + DataLoader(num_workers={args.workers})",
             epoch_rates(theirs, count, args.epochs))]
    print(f"{'pipeline':<62} {'epoch 1 img/s':>14} {'best later img/s':>17}")
    for label, (first, second) in rows:
        print(f"{label:<62} {first:>14,.0f} {second:>17,.0f}")
    print(f"speed-up, steady state: {rows[0][1][1] / rows[1][1][1]:.1f}×")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    in_process = DataLoader(theirs.dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    ours_cpu, theirs_cpu = cpu_rate(ours, count), cpu_rate(in_process, count)
    torch.set_num_threads(threads)
    print(f"\n{'one core, images per CPU-second':<62} {'img/cpu-s':>14}")
    print(f"{'attnplace BatchLoader (1 thread)':<62} {ours_cpu:>14,.0f}")
    print(f"{'torchvision transforms, in-process (num_workers=0)':<62} {theirs_cpu:>14,.0f}")
    print(f"speed-up per core: {ours_cpu / theirs_cpu:.1f}×")

if __name__ == "__main__":
    main()
