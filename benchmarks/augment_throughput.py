"""Images/s of the batched augmentation alone: crop_flip + normalise over a whole in-memory training split.

    python benchmarks/augment_throughput.py [--dataset imagefolder --path PATH] [--batch-size 512] [--threads 1]

Defaults to the shared CIFAR-10 (JPEG) tarball (decoded once, then served from the cache). Runs on the CPU,
and on CUDA too when available, with the images already on that device, as the DataModule holds them.
On a busy machine use --threads 1: torch's intra-op threads stall whenever another job holds a core.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from attnplace.data import load_dataset
from attnplace.data.augment import crop_flip, none, normalizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"


def images_per_second(images: torch.Tensor, augment, normalize, batch_size: int, repeats: int) -> float:
    """Best of `repeats` passes (a shared machine is noisy; the best pass is the pipeline's own speed)."""
    generator = torch.Generator().manual_seed(0)
    normalize(augment(images[:batch_size], generator))  # warm-up: allocator, kernels
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    best = 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for first in range(0, len(images), batch_size):
            normalize(augment(images[first:first + batch_size], generator))
        sync()
        best = max(best, len(images) / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="imagefolder")
    parser.add_argument("--path", default=str(SHARED))
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the split; the best one counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, args.path)
    print(f"{args.dataset} train split: {tuple(data.train_x.shape)} uint8, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'device':<8} {'pipeline':<24} {'images/s':>12}")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        images = data.train_x.to(device)
        normalize = normalizer(data.mean, data.std, device)
        for label, augment in (("normalize only", none), ("crop_flip + normalize", crop_flip)):
            rate = images_per_second(images, augment, normalize, args.batch_size, args.repeats)
            print(f"{device:<8} {label:<24} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
