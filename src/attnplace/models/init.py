"""Common initial weights: a module's starting values depend on (seed, its name in the network) alone.

Comparisons between placements are paired by seed, so under one seed every tensor that two variants share
(same name, same shape) must start identical: `none` and `p4/cbam` then differ only in what the attention
adds. Drawing all weights from one global stream cannot give that: building an attention module consumes
random numbers and shifts every draw after it. Here each module re-initialises itself from its own stream,
seeded by (seed, module name); attention modules and gates, which have their own names, get their own streams.
"""

from collections.abc import Iterable

import torch
from torch import nn

from ..seeds import derive_seed


def init_weights(model: nn.Module, seed: int, keep: Iterable[nn.Parameter] = ()) -> None:
    """Re-initialise every module that owns parameters from the stream (seed, its qualified name), except
    modules owning a parameter in `keep` (weights a network already had: `convert`, `model.weights`)."""
    kept = {id(p) for p in keep}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own or any(id(p) in kept for p in own):
            continue
        with torch.random.fork_rng(devices=[]):  # CPU stream only; the caller's RNG state is left untouched
            torch.default_generator.manual_seed(derive_seed(seed, name))
            init_module(module)


def init_module(module: nn.Module) -> None:
    """He init for convs and unit-scale norms (the CIFAR ResNet recipe, attention convs included);
    anything else with `reset_parameters` (linear, conv1d, layer norm) keeps PyTorch's default."""
    if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
        return
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()  # draws the bias, if any, from PyTorch's default
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
