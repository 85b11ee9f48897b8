"""Backbones, each assembled from a block factory so that every pattern × attention fits every backbone.

A backbone is `stem -> stage1 .. stageN -> [tail] -> pool -> fc`; each stage is a sequence of blocks
named `block0, block1, ...`, which is what gives gates their readable names (`stage2.block0.gamma_s`).
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..registry import Registry
from .blocks import conv_norm

BACKBONES = Registry("backbone")

# make_block(stage_index (1-based), in_ch, out_ch, stride) -> a residual block
BlockFactory = Callable[[int, int, int, int], nn.Module]
# One stage: (out_channels, number of blocks, stride of its first block)
StagePlan = Sequence[tuple[int, int, int]]


def conv_norm_relu(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*conv_norm(in_ch, out_ch, 3, 1, norm), nn.ReLU(inplace=True))


class Network(nn.Sequential):
    """stem, stage1..N, optional tail, global average pool and a linear classifier."""

    def __init__(self, stem: nn.Module, stem_width: int, plan: StagePlan, make_block: BlockFactory,
                 num_classes: int, tail: nn.Module | None = None):
        layers = OrderedDict(stem=stem)
        width = stem_width
        for index, (out_ch, depth, stride) in enumerate(plan, start=1):
            blocks = OrderedDict()
            for b in range(depth):
                blocks[f"block{b}"] = make_block(index, width, out_ch, stride if b == 0 else 1)
                width = out_ch
            layers[f"stage{index}"] = nn.Sequential(blocks)
        if tail is not None:
            layers["tail"] = tail
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["fc"] = nn.Linear(width, num_classes)
        super().__init__(layers)
        self.num_stages = len(plan)


def stage_count(backbone: str) -> int:
    """How many stages `backbone` has: built on the meta device, so nothing is allocated or drawn."""
    with torch.device("meta"):
        return BACKBONES.get(backbone)(lambda *_: nn.Identity(), in_channels=3, num_classes=2, norm="batch").num_stages


@BACKBONES.register("flat")
def flat(make_block: BlockFactory, in_channels: int, num_classes: int, norm: str) -> Network:
    """Seed notebooks' net: stem 3→32, conv 32→64, block 64→64, block 64→128 /2, conv 128→128, pool, fc."""
    stem = nn.Sequential(conv_norm_relu(in_channels, 32, norm), conv_norm_relu(32, 64, norm))
    return Network(stem, 64, [(64, 1, 1), (128, 1, 2)], make_block, num_classes,
                   tail=conv_norm_relu(128, 128, norm))


def cifar_resnet(depth: int) -> Callable[..., Network]:
    """He et al. (2016) CIFAR ResNet-`depth`: 3 stages of (depth-2)/6 blocks, 16/32/64 channels."""
    n = (depth - 2) // 6

    def build(make_block: BlockFactory, in_channels: int, num_classes: int, norm: str) -> Network:
        return Network(conv_norm_relu(in_channels, 16, norm), 16, [(16, n, 1), (32, n, 2), (64, n, 2)],
                       make_block, num_classes)

    build.__doc__ = f"He et al. CIFAR ResNet-{depth}: 3 stages × {n} blocks, 16/32/64 channels."
    return build


for _depth in (20, 32, 56, 110):
    BACKBONES.register(f"resnet{_depth}")(cifar_resnet(_depth))


@BACKBONES.register("resnet18")
def resnet18(make_block: BlockFactory, in_channels: int, num_classes: int, norm: str) -> Network:
    """CIFAR ResNet-18: 3×3 stem, no max-pool, 4 stages × 2 blocks, 64–512 channels."""
    return Network(conv_norm_relu(in_channels, 64, norm), 64, [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)],
                   make_block, num_classes)
