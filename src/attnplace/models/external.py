"""Library backbones by name: `torchvision:NAME` (`torchvision.models.get_model`) and `timm:NAME`
(`timm.create_model`), any ResNet made of the blocks `convert` knows. Built without downloading anything;
`weights` names a local state_dict file to start from. The classifier `fc` is always replaced by a fresh one
for the dataset's classes, and a first conv for other than 3 input channels is adapted as timm adapts it
(`adapt_input_conv`: summed over RGB for 1 channel).
"""

import pickle
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import timm
import torch
import torchvision
from timm.models import adapt_input_conv
from torch import nn

from ..errors import UserError
from .convert import LAYOUTS, residual_blocks

LIBRARIES = {
    "torchvision": (lambda name: name in torchvision.models.list_models(module=torchvision.models),
                    lambda name: torchvision.models.get_model(name, weights=None)),
    "timm": (timm.is_model, lambda name: timm.create_model(name, pretrained=False)),
}
VALID = "torchvision:NAME or timm:NAME, a ResNet of BasicBlock / Bottleneck blocks (resnet18, resnet50, ...)"


class Facts(NamedTuple):
    stages: int
    block: str


def is_external(backbone: str) -> bool:
    return ":" in backbone


def construct(backbone: str) -> nn.Module:
    """The library's network, randomly initialised, with its own classifier."""
    library, _, name = backbone.partition(":")
    known, build = LIBRARIES.get(library, (lambda _: False, None))
    if not known(name):
        raise UserError(f"backbone={backbone!r} is invalid; valid: {VALID}")
    return build(name)


@lru_cache
def library_facts(backbone: str) -> Facts:
    """Its stage count and block family, read off a copy built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        found = residual_blocks(construct(backbone))
    families = sorted({LAYOUTS[type(block)].block for _, _, block, _ in found})
    if len(families) != 1:
        raise UserError(f"backbone={backbone!r} is invalid (no residual blocks of one kind to convert); valid: "
                        f"{VALID}")
    return Facts(found[-1][3], families[0])


def create(backbone: str, num_classes: int, in_channels: int = 3,
           weights: str | None = None) -> tuple[nn.Module, list[nn.Parameter]]:
    """The network with a fresh `num_classes` classifier, its other tensors from `weights` if given; returns
    it and the parameters that came from the file."""
    net = construct(backbone)
    library_facts(backbone)  # a network attnplace can convert
    if weights is not None:
        load_state(net, weights, backbone)
    if in_channels != 3:
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        first.weight = nn.Parameter(adapt_input_conv(in_channels, first.weight.detach()))
        first.in_channels = in_channels
    loaded = list(net.parameters()) if weights is not None else []
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    if hasattr(net, "num_classes"):
        net.num_classes = num_classes
    return net, loaded


def load_state(net: nn.Module, path: str, backbone: str) -> None:
    """Load the state_dict at `path` into `net`, all but the classifier, which is replaced anyway."""
    valid = f"valid: a local state_dict of {backbone} (torch.save(model.state_dict(), path))"
    if not Path(path).is_file():
        raise UserError(f"weights={path!r} is not a file; {valid}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                                  strict=False)
    except (RuntimeError, ValueError, AttributeError, EOFError, pickle.UnpicklingError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__  # one line, however torch words it
        raise UserError(f"weights={path!r} cannot be loaded into {backbone} ({reason}); {valid}") from None
    wrong = [k for k in missing if not k.startswith("fc.")] + list(unexpected)
    if wrong:
        raise UserError(f"weights={path!r} does not fit {backbone}: {len(wrong)} keys differ, e.g. {wrong[0]!r}; "
                        f"{valid}")
