"""Batched augmentation on uint8 N×C×H×W tensors, on whatever device they live on.

Each registered augmentation is `fn(images, generator) -> images`: random numbers come from the CPU
`generator` (so CPU and GPU runs draw the same ones, and a resumed run redraws them) and then move to the
images' device. Augmentation runs on uint8 before normalisation, so zero padding is black, as in
torchvision's `RandomCrop(padding=4)` before `ToTensor()`.
"""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..registry import Registry

Augment = Callable[[Tensor, torch.Generator], Tensor]
Normalize = Callable[[Tensor], Tensor]
AUGMENTS: Registry[Augment] = Registry("augment")


@AUGMENTS.register("none")
def none(images: Tensor, generator: torch.Generator) -> Tensor:
    """No augmentation."""
    return images


@AUGMENTS.register("crop_flip")
def crop_flip(images: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop of the image zero-padded by `pad` px, then a horizontal flip with probability 1/2."""
    n = len(images)
    offsets = to_device(torch.randint(0, 2 * pad + 1, (n, 2), generator=generator), images.device)
    flip = to_device(torch.rand(n, generator=generator) < 0.5, images.device)
    return crop_and_flip(images, offsets[:, 0], offsets[:, 1], flip, pad)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """`t`, fresh on the CPU, on `device`. To a GPU through pinned memory and asynchronously: a plain copy
    from pageable memory waits for the GPU to finish all its queued work, a host sync every batch."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def crop_and_flip(images: Tensor, top: Tensor, left: Tensor, flip: Tensor, pad: int) -> Tensor:
    """The deterministic half of `crop_flip`: image i is cropped at (top[i], left[i]) of its `pad`-padded
    copy and mirrored where flip[i]. One gather over the batch, no Python loop over images."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    columns = torch.arange(w, device=images.device).expand(n, w)
    columns = torch.where(flip[:, None], columns.flip(1), columns) + left[:, None]
    rows = torch.arange(h, device=images.device) + top[:, None]
    source = (rows[:, :, None] * (w + 2 * pad) + columns[:, None, :]).view(n, 1, h * w)
    return padded.flatten(2).gather(2, source.expand(n, c, h * w)).view(n, c, h, w)


def normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> Normalize:
    """uint8 images -> float32 `(x / 255 - mean) / std` per channel, as one multiply and one subtract,
    with the constants placed on `device` once rather than per batch."""
    std64 = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    scale = (1 / (255 * std64)).to(device, torch.float32)
    shift = (torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1) / std64).to(device, torch.float32)
    return lambda images: images.to(torch.float32).mul_(scale).sub_(shift)
