"""The placement patterns: where attention `A(t) = m(t) ⊙ t` sits inside a residual block.

All patterns share one residual branch `F(x)` = conv3×3-norm-ReLU-conv3×3-norm and one skip
(identity, or 1×1 conv + norm when stride or width change), and all end in ReLU:

    none  y = skip(x) + F(x)                                  the baseline
    p1    y = skip(x) + A(F(x))                               inside the residual (SE-ResNet)
    p2    z = skip(x) + F(x);  y = A(z)                        after the addition
    p3    y = skip(x) + F(A(x))                               before the residual (A on in_ch)
    p3c   y = skip(x) + F((1-λ)·x + λ·A(x)),  λ = sigmoid(logit), λ₀ = 0.1
    p4    y = A_s(skip(x)) + A_r(F(x)),  A_•(t) = t + γ_•·A(t),  γ_s₀ = 0, γ_r₀ = 0.1
          p4_gate="direct": A_r(f) = A(f) as it is (the seeds' form for CBAM); A_s keeps its γ_s gate

(each followed by ReLU). Each subclass overrides only `merge`, the pre-activation output.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, choices_error
from ..registry import Registry
from .attention import create_attention
from .gates import add_scalar

PATTERNS = Registry("pattern")
NORMS = ("batch", "group")
P4_GATES = ("near_identity", "direct")
# A learned λ₀ of exactly 0 or 1 is a ±inf logit, which no gradient can move: nudge it inside (as the seed does).
LAMBDA_EPS = 1e-4


@dataclass(frozen=True)
class BlockOptions:
    """Everything a grid may vary about a block. Options a pattern does not use are ignored by it."""

    attention: str = "se"
    skip_attention: str | None = None  # p4's A_s; None = same type as A_r
    norm: str = "batch"  # "group": GroupNorm, the seed's advice for small batches
    lambda_init: float = 0.1  # p3c
    learn_lambda: bool = True
    gamma_s_init: float = 0.0  # p4: the skip starts pure
    gamma_r_init: float = 0.1
    learn_gamma_s: bool = True
    learn_gamma_r: bool = True
    p4_gate: str = "near_identity"  # or "direct": A_r applied as it is, no γ_r

    def __post_init__(self):
        if self.norm not in NORMS:
            raise choices_error("norm", self.norm, NORMS)
        if self.p4_gate not in P4_GATES:
            raise choices_error("p4_gate", self.p4_gate, P4_GATES)
        if not 0.0 <= self.lambda_init <= 1.0:
            raise UserError(f"lambda_init={self.lambda_init} is not a mixing weight; valid: a value in [0, 1]")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # At most 32 groups (Wu & He) but at least 4 channels per group, so 16-wide stages still pool statistics.
    return nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels)


def conv_norm(in_ch: int, out_ch: int, kernel: int, stride: int, norm: str) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, norm_layer(norm, out_ch))


def residual_branch(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Sequential:
    """F(x): conv3×3-norm-ReLU-conv3×3-norm."""
    return nn.Sequential(
        conv_norm(in_ch, out_ch, 3, stride, norm), nn.ReLU(inplace=True), conv_norm(out_ch, out_ch, 3, 1, norm)
    )


def skip_connection(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_norm(in_ch, out_ch, 1, stride, norm)


@PATTERNS.register("none")
class ResidualBlock(nn.Module):
    """Baseline, no attention: y = ReLU(skip(x) + F(x))."""

    attention_on: str | None = None  # which width a single A acts on: "in" (block input), "out", or none

    def __init__(self, in_ch: int, out_ch: int, stride: int, opts: BlockOptions):
        super().__init__()
        self.residual = residual_branch(in_ch, out_ch, stride, opts.norm)
        self.skip = skip_connection(in_ch, out_ch, stride, opts.norm)
        if self.attention_on:
            self.attn = create_attention(opts.attention, in_ch if self.attention_on == "in" else out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.merge(x))

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.residual(x)

    def gates(self) -> dict[str, torch.Tensor]:
        """The block's learned scalars by short name (see `gate_values`)."""
        return {}


@PATTERNS.register("p1")
class InsideResidual(ResidualBlock):
    """Pattern-1, inside the residual (SE-ResNet): y = ReLU(skip(x) + A(F(x)))."""

    attention_on = "out"

    def merge(self, x):
        return self.skip(x) + self.attn(self.residual(x))


@PATTERNS.register("p2")
class AfterAddition(ResidualBlock):
    """Pattern-2, after the addition: z = skip(x) + F(x); y = ReLU(A(z))."""

    attention_on = "out"

    def merge(self, x):
        return self.attn(self.skip(x) + self.residual(x))


@PATTERNS.register("p3")
class BeforeResidual(ResidualBlock):
    """Pattern-3, before the residual: y = ReLU(skip(x) + F(A(x))); A acts on the in_ch-wide input."""

    attention_on = "in"

    def merge(self, x):
        return self.skip(x) + self.residual(self.attended_input(x))

    def attended_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


@PATTERNS.register("p3c")
class ControlledBeforeResidual(BeforeResidual):
    """Controlled Pattern-3: x~ = (1-λ)·x + λ·A(x), λ = sigmoid(logit), λ₀ = 0.1; y = ReLU(skip(x) + F(x~))."""

    def __init__(self, in_ch, out_ch, stride, opts):
        super().__init__(in_ch, out_ch, stride, opts)
        # Learn the logit, not λ, so λ stays in (0, 1). A fixed λ₀ = 0 or 1 is a ±inf logit: exactly none / p3.
        lam = opts.lambda_init
        if opts.learn_lambda:
            lam = min(max(lam, LAMBDA_EPS), 1 - LAMBDA_EPS)
        add_scalar(self, "lambda_logit", torch.logit(torch.tensor(lam)), opts.learn_lambda)

    def attended_input(self, x):
        lam = torch.sigmoid(self.lambda_logit)
        return (1 - lam) * x + lam * self.attn(x)

    def gates(self):
        return {"lambda": torch.sigmoid(self.lambda_logit)}


@PATTERNS.register("p4")
class DualPath(ResidualBlock):
    """Pattern-4, dual path: y = ReLU(A_s(skip(x)) + A_r(F(x))).

    p4_gate="near_identity": A_•(t) = t + γ_•·A(t) on both paths, γ_s₀ = 0 (the skip starts pure), γ_r₀ = 0.1.
    p4_gate="direct": A_r(f) = A(f), the attention as it is (the seeds' form for CBAM); the skip keeps
    t + γ_s·A_s(t), so it still starts pure. With γ_s = 0 this is Pattern-1 exactly.
    """

    def __init__(self, in_ch, out_ch, stride, opts):
        super().__init__(in_ch, out_ch, stride, opts)
        self.attn_s = create_attention(opts.skip_attention or opts.attention, out_ch)
        self.attn_r = create_attention(opts.attention, out_ch)
        self.direct = opts.p4_gate == "direct"
        add_scalar(self, "gamma_s", opts.gamma_s_init, opts.learn_gamma_s)
        if not self.direct:
            add_scalar(self, "gamma_r", opts.gamma_r_init, opts.learn_gamma_r)

    def merge(self, x):
        s, r = self.skip(x), self.residual(x)
        a_r = self.attn_r(r) if self.direct else r + self.gamma_r * self.attn_r(r)
        return s + self.gamma_s * self.attn_s(s) + a_r

    def gates(self):
        names = ("gamma_s",) if self.direct else ("gamma_s", "gamma_r")
        return {name: getattr(self, name) for name in names}
