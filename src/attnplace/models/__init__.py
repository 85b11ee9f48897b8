"""Model zoo: attention types × placement patterns × backbones, built by name."""

from collections.abc import Iterable
from dataclasses import fields, replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attention import ATTENTION, create_attention, register_attention
from .backbones import BACKBONES, backbone_block, stage_count
from .blocks import PATTERNS, BlockOptions, ResidualBlock
from .convert import adopt, convert
from .external import create as create_library_network
from .external import is_external
from .families import FAMILIES
from .gates import gate_parameters, gate_values
from .init import init_weights
from .options import ModelOptions

BLOCK_OPTIONS = tuple(f.name for f in fields(BlockOptions) if f.name != "attention")


def build_model(backbone: str = "resnet20", pattern: str = "none", attention: str = "se", num_classes: int = 10,
                in_channels: int = 3, stages: Iterable[int] | None = None, seed: int = 0, weights: str | None = None,
                **block_options) -> nn.Module:
    """Build `backbone` whose blocks follow placement `pattern` with attention type `attention`.

    `stages` (1-based) picks which stages get the pattern; the others get plain `none` blocks
    (None = every stage). `block_options` are the fields of `BlockOptions` (gate inits, learn flags,
    `skip_attention`, `norm`, `p4_gate`, `block`: the backbone's family, which it may only confirm). Every
    argument is checked by `ModelOptions` (options.py), as a config's `model` section is; then `build_network`.
    """
    options = ModelOptions.of(backbone=backbone, pattern=pattern, attention=attention, weights=weights,
                              stages=None if stages is None else tuple(stages), **block_options)
    return build_network(options, num_classes, in_channels, seed)


def build_network(options: ModelOptions, num_classes: int = 10, in_channels: int = 3, seed: int = 0) -> nn.Module:
    """The network `options` describe. Weights depend on `seed` and each module's name only (`init.py`): two
    variants built with one seed start with identical shared tensors. A library backbone (`torchvision:resnet18`,
    `timm:resnet26`) is built and converted (`convert.py`); with `weights`, a local state_dict, it keeps those
    weights and only its new modules and classifier are drawn. The caller's random state is left as it was.
    """
    backbone, block_cls = options.backbone, PATTERNS.get(options.pattern)
    opts = replace(options, block=backbone_block(backbone, options.block))
    chosen = None if options.stages is None else set(options.stages)

    def make_block(stage: int, in_ch: int, out_ch: int, stride: int) -> nn.Module:
        cls = block_cls if chosen is None or stage in chosen else ResidualBlock
        return cls(in_ch, out_ch, stride, opts)

    loaded = []
    with torch.random.fork_rng(devices=[]):  # construction draws too (user modules without reset_parameters)
        torch.manual_seed(seed)
        if is_external(backbone):
            model, loaded = create_library_network(backbone, num_classes, in_channels, options.weights)
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
           "build_model", "build_network", "ModelOptions", "convert", "count_flops", "count_params", "create_attention",
           "gate_parameters", "gate_values", "is_external", "register_attention", "stage_count"]
