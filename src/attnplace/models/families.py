"""Block families: what a residual block computes around its attention. A block is `y = σ(merge(x))`; the
pattern (`blocks.py`) writes `merge` from F, the skip and attention, and the family builds F, the skip and σ.

    family              F(x)                                                 skip, if shape changes   σ
    basic               conv3-norm-ReLU-conv3-norm                           conv1-norm               ReLU
    bottleneck          conv1-norm-ReLU-conv3-norm-ReLU-conv1-norm           conv1-norm               ReLU
    preact              norm-ReLU-conv3-norm-ReLU-conv3                      norm-ReLU-conv1          none
    preact_bottleneck   norm-ReLU-conv1-norm-ReLU-conv3-norm-ReLU-conv1      norm-ReLU-conv1          none

conv3 / conv1 are 3×3 / 1×1 convolutions; the stride sits on F's first 3×3 and on the skip's conv, and the
skip is the identity while stride and width stay. A block's `out_ch` is its output width: a bottleneck's F
narrows to out_ch/4 and widens back (He et al. 2016), so attention on "out" acts on the expanded width, as
SE-ResNet-50's does, and on "in" (p3) on the block input, in_ch wide. Pre-activation blocks (He et al.,
"Identity Mappings in Deep Residual Networks", 2016) have no σ after the sum, so p2's attention acts on the
sum itself; their networks open with a bare conv and close with norm-ReLU before the pool (`stem`, `tail`).
He et al.'s widening unit shares its first norm-ReLU between F and the skip; here the skip has its own, so
skip(x) and F(x) stay two functions of x (p3 attends F's input only).
"""

import math

from torch import nn

from ..registry import Registry

FAMILIES = Registry("block")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # At most 32 groups (Wu & He) but at least 4 channels per group, so 16-wide stages still pool statistics.
    return nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False)


def conv_norm(in_ch: int, out_ch: int, kernel: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(conv(in_ch, out_ch, kernel, stride), norm_layer(norm, out_ch))


def conv_norm_relu(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*conv_norm(in_ch, out_ch, 3, 1, norm), nn.ReLU(inplace=True))


def norm_relu(norm: str, channels: int) -> nn.Sequential:
    return nn.Sequential(norm_layer(norm, channels), nn.ReLU(inplace=True))


class Family:
    """The parts of one block from in_ch to out_ch channels with `stride`. `layers` (weighted layers in F)
    is what a network's depth counts; `expansion` is out_ch over F's inner width."""

    layers, expansion = 2, 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, norm: str = "batch"):
        self.in_ch, self.out_ch, self.stride, self.norm = in_ch, out_ch, stride, norm

    @property
    def reshapes(self) -> bool:
        return self.stride != 1 or self.in_ch != self.out_ch

    def residual(self) -> nn.Module:
        """F."""
        raise NotImplementedError

    def skip(self) -> nn.Module:
        return conv_norm(self.in_ch, self.out_ch, 1, self.stride, self.norm) if self.reshapes else nn.Identity()

    def activation(self) -> nn.Module:
        """σ, after the merge."""
        return nn.ReLU()

    @staticmethod
    def stem(in_channels: int, width: int, norm: str) -> nn.Module:
        return conv_norm_relu(in_channels, width, norm)

    @staticmethod
    def tail(width: int, norm: str) -> nn.Module | None:
        """What a network of these blocks applies after its last stage, before the pool."""
        return None


@FAMILIES.register("basic")
class Basic(Family):
    """F = conv3×3-norm-ReLU-conv3×3-norm; σ = ReLU (He et al. 2015)."""

    def residual(self):
        return nn.Sequential(conv_norm(self.in_ch, self.out_ch, 3, self.stride, self.norm), nn.ReLU(inplace=True),
                             conv_norm(self.out_ch, self.out_ch, 3, 1, self.norm))


@FAMILIES.register("bottleneck")
class Bottleneck(Family):
    """F = conv1×1-norm-ReLU-conv3×3-norm-ReLU-conv1×1-norm, inner width out_ch/4; σ = ReLU (He et al. 2015)."""

    layers, expansion = 3, 4

    def residual(self):
        mid = self.out_ch // self.expansion
        return nn.Sequential(conv_norm(self.in_ch, mid, 1, 1, self.norm), nn.ReLU(inplace=True),
                             conv_norm(mid, mid, 3, self.stride, self.norm), nn.ReLU(inplace=True),
                             conv_norm(mid, self.out_ch, 1, 1, self.norm))


class PreActivation(Family):
    """Norms and ReLUs before each conv, nothing after the sum (He et al., Identity Mappings, 2016)."""

    def skip(self):
        if not self.reshapes:
            return nn.Identity()
        return nn.Sequential(*norm_relu(self.norm, self.in_ch), conv(self.in_ch, self.out_ch, 1, self.stride))

    def activation(self):
        return nn.Identity()

    @staticmethod
    def stem(in_channels, width, norm):
        return nn.Sequential(conv(in_channels, width, 3))

    @staticmethod
    def tail(width, norm):
        return norm_relu(norm, width)


@FAMILIES.register("preact")
class PreAct(PreActivation):
    """F = norm-ReLU-conv3×3-norm-ReLU-conv3×3; no σ."""

    def residual(self):
        return nn.Sequential(*norm_relu(self.norm, self.in_ch), conv(self.in_ch, self.out_ch, 3, self.stride),
                             *norm_relu(self.norm, self.out_ch), conv(self.out_ch, self.out_ch, 3))


@FAMILIES.register("preact_bottleneck")
class PreActBottleneck(PreActivation):
    """F = norm-ReLU-conv1×1-norm-ReLU-conv3×3-norm-ReLU-conv1×1, inner width out_ch/4; no σ."""

    layers, expansion = 3, 4

    def residual(self):
        mid = self.out_ch // self.expansion
        return nn.Sequential(*norm_relu(self.norm, self.in_ch), conv(self.in_ch, mid, 1),
                             *norm_relu(self.norm, mid), conv(mid, mid, 3, self.stride),
                             *norm_relu(self.norm, mid), conv(mid, self.out_ch, 1))
