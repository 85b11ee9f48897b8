"""Backbones, each assembled from a block factory so that every pattern × attention fits every backbone.

A backbone is `stem -> stage1 .. stageN -> [tail] -> pool -> fc`; each stage is a sequence of blocks
named `block0, block1, ...`, which is what gives gates their readable names (`stage2.block0.gamma_s`).
Each builder says the block family it is made of (`block`, `families.py`); the family gives the stem and tail
(a pre-activation network opens with a bare conv and closes with norm-ReLU). A stage's width is its blocks'
output width, so a bottleneck network's stages are 4× its inner widths. Names `torchvision:NAME` and
`timm:NAME` are library networks whose blocks `convert` replaces (`external.py`).
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import UserError, choose
from ..registry import Registry
from .external import is_external, library_facts
from .families import FAMILIES, conv_norm_relu

BACKBONES = Registry("backbone")

# make_block(stage_index (1-based), in_ch, out_ch, stride) -> a residual block
BlockFactory = Callable[[int, int, int, int], nn.Module]
# One stage: (out_channels, number of blocks, stride of its first block)
StagePlan = Sequence[tuple[int, int, int]]


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
    if is_external(backbone):
        return library_facts(backbone).stages
    with torch.device("meta"):
        return BACKBONES.get(backbone)(lambda *_: nn.Identity(), in_channels=3, num_classes=2, norm="batch").num_stages


def backbone_block(backbone: str, block: str | None = None) -> str:
    """The block family `backbone` is made of; `block`, if given, must be that family."""
    if not is_external(backbone):
        choose("backbone", backbone, [*BACKBONES.names(), "torchvision:NAME", "timm:NAME"])
    family = library_facts(backbone).block if is_external(backbone) else BACKBONES.get(backbone).block
    if block not in (None, family):
        raise UserError(f"block={block!r} contradicts backbone {backbone!r}, which is made of {family} blocks; "
                        f"valid: {family}, or unset")
    return family


def made_of(block: str):
    """Decorator: the builder's networks are made of `block` blocks."""
    def mark(build):
        build.block = block
        return build

    return mark


@BACKBONES.register("flat")
@made_of("basic")
def flat(make_block: BlockFactory, in_channels: int, num_classes: int, norm: str) -> Network:
    """Seed notebooks' net: stem 3→32, conv 32→64, block 64→64, block 64→128 /2, conv 128→128, pool, fc."""
    stem = nn.Sequential(conv_norm_relu(in_channels, 32, norm), conv_norm_relu(32, 64, norm))
    return Network(stem, 64, [(64, 1, 1), (128, 1, 2)], make_block, num_classes,
                   tail=conv_norm_relu(128, 128, norm))


def resnet(widths: Sequence[int], depths: Sequence[int], block: str, doc: str) -> Callable[..., Network]:
    """A ResNet of `block` blocks: stem of widths[0] channels, then one stage per (inner width, depth), the
    first stride 1 and the others 2; stage widths are inner widths × the family's expansion."""
    family = FAMILIES.get(block)
    plan = [(w * family.expansion, d, 1 if i == 0 else 2) for i, (w, d) in enumerate(zip(widths, depths))]

    @made_of(block)
    def build(make_block: BlockFactory, in_channels: int, num_classes: int, norm: str) -> Network:
        return Network(family.stem(in_channels, widths[0], norm), widths[0], plan, make_block, num_classes,
                       tail=family.tail(plan[-1][0], norm))

    build.__doc__ = doc
    return build


def cifar_resnet(depth: int, block: str = "basic", published: str = "") -> Callable[..., Network]:
    """He et al. (2016) CIFAR ResNet-`depth`: 3 stages of (depth-2)/(3·layers per block) blocks, inner widths
    16/32/64."""
    family = FAMILIES.get(block)
    n = (depth - 2) // (3 * family.layers)
    widths = "/".join(str(w * family.expansion) for w in (16, 32, 64))
    kind = "" if block == "basic" else f" ({block.replace('_', ' ')})"
    doc = f"He et al. CIFAR ResNet-{depth}{kind}: 3 stages × {n} blocks, {widths} channels{published}."
    return resnet((16, 32, 64), (n, n, n), block, doc)


for _depth in (20, 32, 56, 110):
    BACKBONES.register(f"resnet{_depth}")(cifar_resnet(_depth))
# He et al., "Identity Mappings in Deep Residual Networks" (2016), CIFAR-10 comparison table: 1.7M for both.
BACKBONES.register("resnet164")(cifar_resnet(164, "bottleneck", "; 1.7M params published"))
# The smallest bottleneck net of the 9n+2 family (n = 3): a deeper net's blocks at ResNet-20's cost, for CPU runs.
BACKBONES.register("resnet29")(cifar_resnet(29, "bottleneck"))
BACKBONES.register("preact_resnet20")(cifar_resnet(20, "preact"))
BACKBONES.register("preact_resnet164")(cifar_resnet(164, "preact_bottleneck", "; 1.7M params published"))

for _name, _block in (("resnet18", "basic"), ("preact_resnet18", "preact")):
    _kind = "" if _block == "basic" else "PreAct-"
    BACKBONES.register(_name)(resnet((64, 128, 256, 512), (2, 2, 2, 2), _block,
                                     f"CIFAR {_kind}ResNet-18: 3×3 stem, no max-pool, 4 stages × 2 blocks, "
                                     "64–512 channels."))
