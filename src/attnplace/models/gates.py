"""Learned scalar gates (γ_s, γ_r, λ) and a readable view of them across a model."""

import torch
from torch import nn


def add_scalar(module: nn.Module, name: str, value: float, learnable: bool) -> None:
    """Attach a scalar as a parameter (learned) or a buffer (fixed, but still saved in checkpoints)."""
    tensor = torch.tensor(float(value))
    if learnable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned gate scalars (γ_s, γ_r, λ's logit): a block's own parameters are exactly its gates,
    since everything else it holds lives in submodules. Fixed gates are buffers and are not listed."""
    return [p for m in model.modules() if callable(getattr(m, "gates", None)) for p in m.parameters(recurse=False)]


def gate_values(model: nn.Module) -> dict[str, float]:
    """Every scalar gate by its place in the network, e.g. `stage2.block0.gamma_s` or `stage3.block1.lambda`.

    λ is reported as the mixing weight sigmoid(logit), not the raw logit, because that is what the
    formula `x~ = (1-λ)·x + λ·A(x)` uses.
    """
    values = {}
    for prefix, module in model.named_modules():
        gates = getattr(module, "gates", None)
        if callable(gates):
            for name, value in gates().items():
                values[f"{prefix}.{name}" if prefix else name] = float(value.detach())
    return values
