"""*How* an attention output joins the tensor it attends: the gate forms, and a readable view of their scalars.

With `a = A(t) = m(t) ⊙ t` (the attention's gated output), a gate returns

    mask            g(t) = a                          the raw mask, as SE-ResNet applies it
    near_identity   g(t) = t + γ·a = t·(1 + γ·m(t))   γ₀ = 0 is exactly the identity
    mix             g(t) = (1-λ)·t + λ·a,  λ = sigmoid(logit)

γ and λ's logit are learned (parameters) or fixed (buffers, still saved in checkpoints).
"""

import torch
from torch import nn

from ..registry import Registry

GATES = Registry("gate")
# A learned λ₀ of exactly 0 or 1 is a ±inf logit, which no gradient can move: nudge it inside (as the seed does).
LAMBDA_EPS = 1e-4


def add_scalar(module: nn.Module, name: str, value: float | torch.Tensor, learnable: bool) -> None:
    """Attach a scalar as a parameter (learned) or a buffer (fixed, but still saved in checkpoints)."""
    tensor = torch.as_tensor(value, dtype=torch.float32).clone()
    if learnable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


class Gate(nn.Module):
    """A gate form: `forward(t, a)` combines a tensor with its attended `a = A(t)`. `options` names the
    `BlockOptions` fields its (init, learn) come from, `{path}` standing for the path it gates."""

    options: tuple[str, ...] = ()

    def forward(self, t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def values(self, path: str) -> dict[str, torch.Tensor]:
        """The gate's scalars under the names records use (see `gate_values`)."""
        return {}


@GATES.register("mask")
class MaskGate(Gate):
    """g(t) = A(t): the raw mask; it has no scalar and reads no option."""

    def forward(self, t, a):
        return a


@GATES.register("near_identity")
class NearIdentityGate(Gate):
    """g(t) = t + γ·A(t), γ₀ from `gamma_<path>_init`: starts at (or near) the identity."""

    options = ("gamma_{path}_init", "learn_gamma_{path}")

    def __init__(self, init: float, learn: bool):
        super().__init__()
        add_scalar(self, "gamma", init, learn)

    def forward(self, t, a):
        return t + self.gamma * a

    def values(self, path):
        return {f"gamma_{path}": self.gamma}  # named after the option that set it: gamma_r, gamma_s


@GATES.register("mix")
class MixGate(Gate):
    """g(t) = (1-λ)·t + λ·A(t), λ = sigmoid(logit), λ₀ from `lambda_init`.

    The logit is learned, not λ, so λ stays in (0, 1). A fixed λ₀ = 0 or 1 is a ±inf logit: exactly t / A(t).
    """

    options = ("lambda_init", "learn_lambda")

    def __init__(self, init: float, learn: bool):
        super().__init__()
        lam = min(max(init, LAMBDA_EPS), 1 - LAMBDA_EPS) if learn else init
        add_scalar(self, "logit", torch.logit(torch.tensor(float(lam))), learn)

    def forward(self, t, a):
        lam = torch.sigmoid(self.logit)
        return (1 - lam) * t + lam * a

    def values(self, path):
        return {"lambda": torch.sigmoid(self.logit)}  # the mixing weight, not the logit


def gate_options(form: str, path: str) -> tuple[str, ...]:
    """The `BlockOptions` fields a gate of `form` on `path` ("r": the pattern's attention, "s": p4's skip) reads."""
    return tuple(name.format(path=path) for name in GATES.get(form).options)


def make_gate(form: str, path: str, opts) -> nn.Module:
    """A gate of `form` for `path`, initialised from the options it reads (`gate_options`)."""
    cls = GATES.get(form)
    return cls(*(getattr(opts, name) for name in gate_options(form, path)))


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned gate scalars (γ_s, γ_r, λ's logit), which the optimiser treats apart (own lr, no decay)."""
    return [p for m in model.modules() if isinstance(m, Gate) for p in m.parameters()]


def gate_values(model: nn.Module) -> dict[str, float]:
    """Every scalar gate by its place in the network, e.g. `stage2.block0.gamma_s` or `stage3.block1.lambda`.

    λ is reported as the mixing weight sigmoid(logit), not the raw logit, because that is what the
    formula `(1-λ)·t + λ·A(t)` uses.
    """
    values = {}
    for prefix, module in model.named_modules():
        gates = getattr(module, "gates", None)
        if callable(gates):
            for name, value in gates().items():
                values[f"{prefix}.{name}" if prefix else name] = float(value.detach())
    return values
