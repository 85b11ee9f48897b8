"""`Splits`: one dataset decoded into memory, the unit that readers return and the cache stores."""

import functools
import hashlib
import json
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Splits:
    """Images as uint8 N×C×H×W and labels as int64 N, per split; `val_*` only when the dataset ships one.

    `mean`/`std` are per channel on the 0..1 scale, computed from `train_x` when not given. They come from
    the whole shipped training split (before any validation carve), so they are a property of the dataset
    and can be cached with it.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: list[str]
    val_x: Tensor | None = None
    val_y: Tensor | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        for split in self.split_names():
            x, y = self.split(split)
            if x.dtype != torch.uint8 or x.dim() != 4 or y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"{split} split: need uint8 N×C×H×W and int64 N, got {x.dtype} {tuple(x.shape)}, "
                                 f"{y.dtype} {tuple(y.shape)}")
            if x.shape[1:] != self.train_x.shape[1:]:
                raise ValueError(f"{split} images are {tuple(x.shape[1:])}, "
                                 f"train images {tuple(self.train_x.shape[1:])}")
            if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(self.class_names):
                raise ValueError(f"{split} labels outside 0..{len(self.class_names) - 1}")
        if not self.mean:
            self.mean, self.std = channel_stats(self.train_x)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the decoded content: every split's images and labels, and the class names. It depends on
        what a network trains and is tested on, not on where the files lie or when they were copied, so the
        same images give the same fingerprint on any machine, and replaced files another. (sha256 reads the
        60,000 CIFAR images in well under a second; a process computes it once per dataset.)"""
        digest = hashlib.sha256(json.dumps(self.class_names).encode())
        for split in self.split_names():
            for tensor in self.split(split):
                digest.update(f"{split}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(tensor.contiguous().numpy())  # no copy: hashlib reads the buffer
        return digest.hexdigest()[:16]

    def split_names(self) -> list[str]:
        return ["train", "test"] + (["val"] if self.val_x is not None else [])

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train_x.shape[2:])


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images, on the 0..1 scale."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in x.split(4096):  # float64 copies of a whole split would take ~8× its memory
        chunk = chunk.to(torch.float64)
        total += chunk.sum((0, 2, 3))
        squares += chunk.square().sum((0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
