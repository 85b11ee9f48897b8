"""A block or net with weights, norm statistics and gates away from their initial values, so that a formula
test sees every term: a dropped module or a gate left at its start would change the output."""

import math

import torch
from torch import nn

GATE_VALUES = {"gamma": 0.37, "logit": -0.8}  # away from every initial value (γ₀ = 0 / 0.1, λ₀ = 0.1)
LAMBDA = 1 / (1 + math.exp(-GATE_VALUES["logit"]))


def randomize(module: nn.Module) -> nn.Module:
    """Weights, norm statistics and gates away from their initial values; eval mode, so norms use the statistics."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            p.copy_(torch.full_like(p, GATE_VALUES[leaf]) if leaf in GATE_VALUES else torch.randn_like(p) * 0.3)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(1)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return module.eval()
