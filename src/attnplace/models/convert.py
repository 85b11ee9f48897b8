"""Placements in an existing network: `convert` replaces each residual block of a torchvision or timm ResNet
by its pattern variant, in place, keeping every weight the network had.

The new block reuses the old one's modules as its family's parts (`Adopted`): F is its convs, norms and
activations in the order its forward runs them (`LAYOUTS`), the skip its `downsample` (or the identity), σ
its last activation. Only the attention modules and gates are new, initialised from (seed, their name) as
`init.py` does. With a gate that starts at the identity the converted network computes what it did before:

    near_identity, γ₀ = 0        g(t) = t + 0·A(t) = t      gamma_r_init=0 (p4: and gamma_s_init=0)
    mix, fixed λ₀ = 0            g(t) = 1·t + 0·A(t) = t    lambda_init=0, learn_lambda=False (learned: 1e-4)

    model = attnplace.convert(torchvision.models.resnet50(), "p1", "se", gate="near_identity", gamma_r_init=0)
"""

from dataclasses import dataclass, replace

import timm.models.resnet as timm_resnet
import torch
import torchvision.models.resnet as tv_resnet
from torch import nn

from ..errors import UserError
from .blocks import PATTERNS, BlockOptions, ResidualBlock
from .families import Family
from .init import init_weights
from .stages import check_stages


@dataclass(frozen=True)
class Layout:
    """How a known block computes: its family, F's modules in forward order (absent ones skipped), σ's module."""

    block: str
    residual: tuple[str, ...]
    activation: str


LAYOUTS = {
    tv_resnet.BasicBlock: Layout("basic", ("conv1", "bn1", "relu", "conv2", "bn2"), "relu"),
    tv_resnet.Bottleneck: Layout("bottleneck", ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"),
                                 "relu"),
    timm_resnet.BasicBlock: Layout("basic", ("conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2", "se",
                                             "drop_path"), "act2"),
    timm_resnet.Bottleneck: Layout("bottleneck", ("conv1", "bn1", "act1", "conv2", "bn2", "drop_block", "act2",
                                                  "aa", "conv3", "bn3", "se", "drop_path"), "act3"),
}


class Adopted(Family):
    """The parts of an existing block: its own modules, as they are."""

    def __init__(self, block: nn.Module):
        self.block, self.layout = block, LAYOUTS[type(block)]
        convs = [m for m in self.residual() if isinstance(m, nn.Conv2d)]
        super().__init__(convs[0].in_channels, convs[-1].out_channels)

    def residual(self):
        parts = (getattr(self.block, name, None) for name in self.layout.residual)
        return nn.Sequential(*(m for m in parts if m is not None))

    def skip(self):
        return nn.Identity() if self.block.downsample is None else self.block.downsample

    def activation(self):
        return getattr(self.block, self.layout.activation)


def residual_blocks(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module, int]]:
    """(parent, name, block, stage) for every block `LAYOUTS` knows, in order. A stage is one parent container
    (torchvision's and timm's layer1..layer4 are stages 1..4)."""
    found, stages = [], {}
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) in LAYOUTS:
                found.append((parent, name, child, stages.setdefault(id(parent), len(stages) + 1)))
    return found


def convert(model: nn.Module, pattern: str = "p1", attention: str = "se", stages=None, seed: int = 0,
            **block_options) -> nn.Module:
    """Replace every residual block of `model` (torchvision's or timm's BasicBlock / Bottleneck) by its
    `pattern` variant with `attention`, in place, and return `model`.

    Every parameter and buffer of `model` stays, the same tensors under new names (`layer1.0.conv1` becomes
    `layer1.0.residual.0`); the attention and gate modules are initialised from (seed, their name).
    `stages` (1-based, layer1 = 1) picks the stages that get the pattern; the others get plain `none` blocks,
    which compute what the originals did. `block_options` are `BlockOptions` fields (gate, gamma_r_init, ...),
    checked there. The caller's random state is left as it was.
    """
    opts = BlockOptions.of(attention=attention, **block_options)
    block_cls = PATTERNS.get(pattern)
    if stages is not None:
        check_stages(stages, convertible_blocks(model)[-1][3], type(model).__name__)  # the last block's stage
    kept = list(model.parameters())
    with torch.random.fork_rng(devices=[]):  # constructors draw (attention modules' default init)
        adopt(model, block_cls, opts, stages)
    init_weights(model, seed, keep=kept)
    return model


def convertible_blocks(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module, int]]:
    """`residual_blocks`, of which a network to convert must have one."""
    found = residual_blocks(model)
    if not found:
        raise UserError(f"{type(model).__name__} has no residual block to convert; valid: a network of "
                        "torchvision's or timm's ResNet BasicBlock / Bottleneck blocks")
    return found


def adopt(model: nn.Module, block_cls: type, opts: BlockOptions, stages=None) -> None:
    """`convert`'s replacement, without initialising the new modules (they keep their constructors' values).
    `stages` are checked by the caller (`convert`, or `ModelOptions` for `build_network`)."""
    chosen = None if stages is None else set(stages)
    for parent, name, block, stage in convertible_blocks(model):
        family = Adopted(block)
        cls = block_cls if chosen is None or stage in chosen else ResidualBlock
        new = cls(family.in_ch, family.out_ch, 1, replace(opts, block=family.layout.block), family)
        weight = next(block.parameters())
        setattr(parent, name, new.to(weight.device, weight.dtype))
