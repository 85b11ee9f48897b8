"""Attention registry: name -> constructor `(channels) -> nn.Module` returning the *gated* tensor.

Every module here computes `A(t) = m(t) ⊙ t` with the shape of `t` (CBAM applies its channel and then
its spatial mask itself). The placement patterns in `blocks.py` only ever see this gated output.
Implementations come from `timm.layers` where timm's module is the seeds' module; CBAM is not (see
`cbam.py`), so `cbam` is written here after the seeds and timm's is kept as `cbam_timm`.

Register your own with the decorator; it is then usable by name everywhere (models, configs, grids):

    @register_attention("my_gate")
    def my_gate(channels: int) -> nn.Module:
        return MyGate(channels)
"""

from functools import partial

from timm.layers.cbam import CbamModule, LightCbamModule
from timm.layers.coord_attn import CoordAttn, EfficientLocalAttn, SimpleCoordAttn, StripAttn
from timm.layers.eca import CecaModule, EcaModule
from timm.layers.gather_excite import GatherExcite
from timm.layers.global_context import GlobalContext
from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
from torch import nn

from ..registry import Registry
from .cbam import CBAM, hidden_width

ATTENTION = Registry("attention")
register_attention = ATTENTION.register


def create_attention(name: str, channels: int) -> nn.Module:
    return ATTENTION.get(name)(channels)


@register_attention("none")
def no_attention(channels: int) -> nn.Module:
    """Identity: m(t) = 1, so A(t) = t."""
    return nn.Identity()


@register_attention("se")
def squeeze_excite(channels: int) -> nn.Module:
    """Squeeze-and-Excitation (Hu et al.): hidden width max(C//16, 4), with bias, as in the seed notebooks."""
    return SEModule(channels, rd_channels=hidden_width(channels), bias=True)


@register_attention("eca")
def efficient_channel(channels: int) -> nn.Module:
    """ECA (Wang et al.): 1-D conv across channels, kernel size adapted to C."""
    return EcaModule(channels)


@register_attention("cbam")
def cbam(channels: int) -> nn.Module:
    """CBAM as in the seeds (Woo et al.): bias-free shared MLP, hidden max(C//16, 4), then 7×7 conv, no norm."""
    return CBAM(channels)


@register_attention("cbam_timm")
def cbam_timm(channels: int) -> nn.Module:
    """timm's CBAM: hidden round(C/16) (at least 1), and BatchNorm after the spatial 7×7 conv."""
    return CbamModule(channels, rd_ratio=1 / 16, rd_divisor=1, spatial_kernel_size=7)


@register_attention("coord")
def coordinate(channels: int) -> nn.Module:
    """Coordinate Attention (Hou et al.): direction-aware masks pooled along H and W."""
    return CoordAttn(channels)


# The rest of timm's lightweight multiplicative gates, with timm's own defaults. Excluded on purpose:
# `gca` (adds a context vector instead of gating), and sk/splat/nl/halo/lambda/bottleneck, which replace
# convolutions rather than gate a tensor, so they are not an `A(t) = m(t) ⊙ t` module.
_TIMM_GATES = {
    "ese": (EffectiveSEModule, "Effective SE (CenterMask): one FC layer, hard-sigmoid gate."),
    "ecam": (partial(EcaModule, use_mlp=True), "ECA with a small MLP instead of the 1-D conv."),
    "ceca": (CecaModule, "Circular ECA: ECA with circular padding across channels."),
    "gc": (GlobalContext, "Global Context (GCNet) block, multiplicative fusion."),
    # GE-θ⁻, the parameter-free form; timm 1.0.31's MLP form fails to construct (ConvMlp signature clash).
    "ge": (partial(GatherExcite, use_mlp=False), "Gather-Excite θ⁻ (Hu et al.): sigmoid of the global mean."),
    "lcbam": (LightCbamModule, "Light CBAM: CBAM with a cheaper spatial branch."),
    "scoord": (SimpleCoordAttn, "Simplified Coordinate Attention."),
    "ela": (EfficientLocalAttn, "Efficient Local Attention: 1-D convs along H and W."),
    "strip": (StripAttn, "Strip attention: coordinate-style masks from strip pooling."),
}


def _timm_gate(cls, doc: str):
    def build(channels: int) -> nn.Module:
        return cls(channels)

    build.__doc__ = doc
    return build


for _name, (_cls, _doc) in _TIMM_GATES.items():
    register_attention(_name)(_timm_gate(_cls, _doc))
