"""Model zoo: attention types × placement patterns × backbones, built by name."""

from collections.abc import Iterable
from dataclasses import fields, replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError
from .attention import ATTENTION, create_attention, register_attention
from .backbones import BACKBONES, backbone_block, stage_count
from .blocks import PATTERNS, BlockOptions, ResidualBlock
from .convert import adopt, convert
from .external import create as create_library_network
from .external import is_external
from .families import FAMILIES
from .gates import gate_parameters, gate_values
from .init import init_weights

BLOCK_OPTIONS = tuple(f.name for f in fields(BlockOptions) if f.name != "attention")


def build_model(backbone: str = "resnet20", pattern: str = "none", attention: str = "se", num_classes: int = 10,
                in_channels: int = 3, stages: Iterable[int] | None = None, seed: int = 0, weights: str | None = None,
                **block_options) -> nn.Module:
    """Build `backbone` whose blocks follow placement `pattern` with attention type `attention`.

    `stages` (1-based) picks which stages get the pattern; the others get plain `none` blocks
    (None = every stage). `block_options` are the fields of `BlockOptions` (gate inits, learn flags,
    `skip_attention`, `norm`, `p4_gate`, `block`: the backbone's family, which it may only confirm).
    Weights depend on `seed` and each module's name only (`init.py`): two variants built with one seed
    start with identical shared tensors. A library backbone (`torchvision:resnet18`, `timm:resnet26`) is
    built and converted (`convert.py`); with `weights`, a local state_dict, it keeps those weights and only
    its new modules and classifier are drawn. The caller's random state is left as it was.
    """
    opts = BlockOptions.of(attention, **block_options)
    block_cls = PATTERNS.get(pattern)
    opts = replace(opts, block=backbone_block(backbone, opts.block))
    chosen = None if stages is None else set(stages)
    if chosen is not None and not chosen <= set(range(1, (n := stage_count(backbone)) + 1)):
        raise UserError(f"stages={sorted(chosen)} do not exist in {backbone}; valid: 1..{n}")
    if weights is not None and not is_external(backbone):
        raise UserError(f"weights={weights!r} is for torchvision:/timm: backbones, not {backbone}; valid: null")
    if opts.norm != "batch" and is_external(backbone):
        raise UserError(f"norm={opts.norm!r} cannot change {backbone}'s own norms; valid: batch")

    def make_block(stage: int, in_ch: int, out_ch: int, stride: int) -> nn.Module:
        cls = block_cls if chosen is None or stage in chosen else ResidualBlock
        return cls(in_ch, out_ch, stride, opts)

    loaded = []
    with torch.random.fork_rng(devices=[]):  # construction draws too (user modules without reset_parameters)
        torch.manual_seed(seed)
        if is_external(backbone):
            model, loaded = create_library_network(backbone, num_classes, in_channels, weights)
            adopt(model, block_cls, opts, chosen)
        else:
            model = BACKBONES.get(backbone)(make_block, in_channels=in_channels, num_classes=num_classes,
                                            norm=opts.norm)
    init_weights(model, seed, keep=loaded)
    return model


def count_params(model: nn.Module) -> int:
    """Learned parameters (fixed gates are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, in_channels: int = 3, image_size: int | tuple[int, int] = 32) -> int:
    """Forward FLOPs for one image, as torch.utils.flop_counter counts them (2 per multiply-add)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    param = next(model.parameters())
    x = torch.zeros(1, in_channels, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


__all__ = ["ATTENTION", "BACKBONES", "FAMILIES", "PATTERNS", "BLOCK_OPTIONS", "BlockOptions", "backbone_block",
           "build_model", "convert", "count_flops", "count_params", "create_attention", "gate_parameters",
           "gate_values", "is_external", "register_attention", "stage_count"]
