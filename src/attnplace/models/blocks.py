r"""The placement patterns: *where* attention `A(t) = m(t) ⊙ t` sits in a residual block, and *how* its
output joins the signal, the gate `g` (`gates.py`: mask `A(t)`, near_identity `t + γ·A(t)`, mix
`(1-λ)·t + λ·A(t)`). A block is y = σ(merge(x)): its family (`families.py`, `opts.block`) builds the residual
branch F, the skip and σ (basic: F = conv3×3-norm-ReLU-conv3×3-norm, skip = identity or 1×1 conv + norm when
stride or width change, σ = ReLU; pre-activation families have no σ), and the pattern writes the merge, the
same formula for every family.

    where \ how   merge (then σ)               mask                 near_identity        mix
    none          skip(x) + F(x)               the baseline: no attention, no gate
    p1            skip(x) + g(F(x))            seeds' p1 (SE-ResNet)
    p2            g(skip(x) + F(x))            seeds' p2
    p3            skip(x) + F(g(x))            seeds' p3                                 p3c (seeds, λ₀ = 0.1)
    p4            g_s(skip(x)) + g_r(F(x))     g_r: p4_gate=direct  seeds' p4: γ_s₀ = 0, γ_r₀ = 0.1
    skip_only     g(skip(x)) + F(x)            SE-Identity          γ₀ = γ_s₀ = 0

`model.gate` picks the column for the pattern's attention (p4: the residual path's g_r); `model.skip_gate`
picks p4's skip gate g_s (near_identity with γ_s₀ = 0, so the skip starts pure, or mask). Left unset, each
pattern takes its seeds' form, so today's names keep their meaning: mask for p1–p3, mix for p3c (= p3 × mix),
near_identity on both paths for p4, and `p4_gate="direct"` (the seeds' form for CBAM) is p4 with g_r = mask.
γ of a pattern's gate comes from `gamma_r_init` / `learn_gamma_r`, p4's skip γ from `gamma_s_init`, λ from
`lambda_init`. `skip_only` (SE-Identity in Hu et al.'s integration ablation) is a name for one p4: attention on
the skip path alone. Each subclass overrides only `merge`, its row's formula, and declares which options it reads
(`uses`): config canonicalisation, run ids and the report's grouping all read that declaration.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserError, choices_error, choose, require
from ..registry import Registry
from .attention import ATTENTION, create_attention
from .families import FAMILIES, Family
from .gates import GATES, gate_options, make_gate

if TYPE_CHECKING:
    from .options import ModelOptions

PATTERNS = Registry("pattern")
NORMS = ("batch", "group")
P4_GATES = ("near_identity", "direct")
SKIP_GATES = ("near_identity", "mask")  # a mix has one λ, the pattern's own


@dataclass(frozen=True)
class BlockOptions:
    """Everything a grid may vary about a block. Options a pattern does not use are ignored by it (`uses`)."""

    attention: str = "se"
    skip_attention: str | None = None  # p4's A_s; None = same type as A_r
    norm: str = "batch"  # "group": GroupNorm, the seed's advice for small batches
    block: str | None = None  # the block family (families.py); None: the backbone's own, basic outside one
    gate: str | None = None  # how the pattern's attention joins (p4: g_r); None = the pattern's seeds' form
    skip_gate: str | None = None  # p4's g_s; None = near_identity
    lambda_init: float = 0.1  # a mix gate's λ₀
    learn_lambda: bool = True
    gamma_s_init: float = 0.0  # p4's skip gate: the skip starts pure
    gamma_r_init: float = 0.1  # a near-identity gate's γ₀ on the pattern's attention
    learn_gamma_s: bool = True
    learn_gamma_r: bool = True
    p4_gate: str = "near_identity"  # or "direct": p4 with g_r = mask (the older name of gate=mask on p4)

    def __post_init__(self):
        choose("attention", self.attention, ATTENTION.names())
        if self.skip_attention is not None:
            choose("skip_attention", self.skip_attention, ATTENTION.names())
        choose("norm", self.norm, NORMS)
        if self.block is not None:
            choose("block", self.block, FAMILIES.names())
        choose("p4_gate", self.p4_gate, P4_GATES)
        if self.gate is not None:
            choose("gate", self.gate, GATES.names())
        if self.skip_gate is not None:
            choose("skip_gate", self.skip_gate, SKIP_GATES)
        require(math.isfinite(self.lambda_init) and 0.0 <= self.lambda_init <= 1.0, "lambda_init", self.lambda_init,
                "a mixing weight in [0, 1]")
        for name in ("gamma_s_init", "gamma_r_init"):
            require(math.isfinite(getattr(self, name)), name, getattr(self, name), "a finite number")

    @classmethod
    def of(cls, **options) -> "BlockOptions":
        """From keyword arguments (`build_model`'s, `convert`'s): an unknown option fails before anything is
        built, and so does a bad value, in one line naming the argument."""
        names = [f.name for f in fields(BlockOptions) if f.name != "attention"]
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise choices_error("block option", unknown[0], names)
        return cls(**options)


@PATTERNS.register("none")
class ResidualBlock(nn.Module):
    """Baseline, no attention: y = σ(skip(x) + F(x)).

    Subclasses with attention set `attention_on` (the width a single A acts on: "in", the block input, or
    "out", its output) and `seeds_gate`, the gate form their seeds' formula uses when `gate` is left unset.
    F, the skip and σ come from `family`: by default `opts.block`'s built for these widths; `convert` passes
    one that reuses an existing block's modules.
    """

    attention_on: str | None = None
    seeds_gate: str | None = None
    preset_of: tuple[str, str] | None = None  # (pattern, gate) of the network this pattern is a name for
    where: str | None = None  # the row of the where × how table (a preset shares its base's): the atlas's column

    def __init__(self, in_ch: int, out_ch: int, stride: int, opts: BlockOptions, family: Family | None = None):
        super().__init__()
        family = family or FAMILIES.get(opts.block or "basic")(in_ch, out_ch, stride, opts.norm)
        self.residual, self.skip, self.activation = family.residual(), family.skip(), family.activation()
        if self.attention_on:
            self.attn = create_attention(opts.attention, in_ch if self.attention_on == "in" else out_ch)
            self.gate = make_gate(self.gate_form(opts), "r", opts)

    @classmethod
    def gate_form(cls, opts: BlockOptions) -> str | None:
        """The gate on the pattern's attention: `opts.gate`, or the seeds' form."""
        return (opts.gate or cls.seeds_gate) if cls.seeds_gate else None

    @classmethod
    def check(cls, opts: "ModelOptions") -> None:
        """Options that contradict each other in this pattern; `ModelOptions` asks at construction."""

    @classmethod
    def resolve(cls, opts: "ModelOptions") -> "ModelOptions":
        """`opts` with the gate forms made concrete, under the pattern name that the patterns' presets give this
        network: p3 × mix is p3c, p3c × mask is p3 (`preset_of`). Canonical configs and run ids are this."""
        gate = cls.gate_form(opts)
        base, form = cls.preset_of or (opts.pattern, gate)
        presets = {block.preset_of: name for name, block in PATTERNS.items() if block.preset_of}
        pattern = presets.get((base, gate), base if gate != form else opts.pattern)
        return replace(opts, pattern=pattern, gate=gate, skip_gate=None)

    @classmethod
    def uses(cls, opts: BlockOptions) -> set[str]:
        """The `BlockOptions` fields this block reads with `opts`' gate forms; everything else it ignores."""
        form = cls.gate_form(opts)
        return {"attention", "gate", *gate_options(form, "r")} if form else set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.merge(x))

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.residual(x)

    def attend(self, t: torch.Tensor) -> torch.Tensor:
        """g(t): the gate of the pattern's attention applied to t."""
        return self.gate(t, self.attn(t))

    def gates(self) -> dict[str, torch.Tensor]:
        """The block's gate scalars by short name (`gamma_r`, `gamma_s`, `lambda`; see `gate_values`)."""
        return self.gate.values("r") if self.attention_on else {}


@PATTERNS.register("p1")
class InsideResidual(ResidualBlock):
    """Pattern-1, inside the residual (SE-ResNet): y = σ(skip(x) + g(F(x)))."""

    attention_on, seeds_gate, where = "out", "mask", "p1"

    def merge(self, x):
        return self.skip(x) + self.attend(self.residual(x))


@PATTERNS.register("p2")
class AfterAddition(ResidualBlock):
    """Pattern-2, after the addition: z = skip(x) + F(x); y = σ(g(z))."""

    attention_on, seeds_gate, where = "out", "mask", "p2"

    def merge(self, x):
        return self.attend(self.skip(x) + self.residual(x))


@PATTERNS.register("p3")
class BeforeResidual(ResidualBlock):
    """Pattern-3, before the residual: y = σ(skip(x) + F(g(x))); A acts on the in_ch-wide input."""

    attention_on, seeds_gate, where = "in", "mask", "p3"

    def merge(self, x):
        return self.skip(x) + self.residual(self.attend(x))


@PATTERNS.register("p3c")
class ControlledBeforeResidual(BeforeResidual):
    """Controlled Pattern-3, p3 × mix: x~ = (1-λ)·x + λ·A(x), λ = sigmoid(logit), λ₀ = 0.1;
    y = σ(skip(x) + F(x~))."""

    seeds_gate = "mix"
    preset_of = ("p3", "mix")  # the same network as p3 with gate=mix: `canonical` names that p3c


@PATTERNS.register("p4")
class DualPath(ResidualBlock):
    """Pattern-4, dual path: y = σ(g_s(skip(x)) + g_r(F(x))), each g with its own attention.

    The seeds' form: g_•(t) = t + γ_•·A_•(t) on both paths, γ_s₀ = 0 (the skip starts pure), γ_r₀ = 0.1.
    `p4_gate="direct"` is g_r = mask, A_r(f) as it is (the seeds' form for CBAM): with γ_s = 0 that is Pattern-1's
    formula, though not its starting weights under one seed (`attn_r` draws from its own stream, p1's `attn` from
    another; init.py), which adds noise to a p1-against-p4 pair but no bias.
    """

    seeds_gate, where = "near_identity", "p4"

    def __init__(self, in_ch, out_ch, stride, opts, family=None):
        super().__init__(in_ch, out_ch, stride, opts, family)
        self.attn_s = create_attention(opts.skip_attention or opts.attention, out_ch)
        self.attn_r = create_attention(opts.attention, out_ch)
        self.gate_s = make_gate(self.skip_gate_form(opts), "s", opts)
        self.gate_r = make_gate(self.gate_form(opts), "r", opts)

    @classmethod
    def gate_form(cls, opts):
        return opts.gate or ("mask" if opts.p4_gate == "direct" else cls.seeds_gate)

    @staticmethod
    def skip_gate_form(opts: BlockOptions) -> str:
        return opts.skip_gate or "near_identity"

    @classmethod
    def check(cls, opts):
        if opts.p4_gate == "direct" and opts.gate not in (None, "mask"):
            raise UserError(f"p4_gate='direct' is p4 with gate=mask, but gate={opts.gate!r}; valid: drop one of them")

    @classmethod
    def resolve(cls, opts):
        """Both gates concrete, and the older `p4_gate` name saying the same as `gate`. Attention on the skip
        alone (no attention and a mask on the residual path: g_r(F(x)) = F(x)) is named `skip_only`."""
        gate, skip_attention = cls.gate_form(opts), opts.skip_attention or opts.attention
        if opts.attention == "none" and gate == "mask" and skip_attention != "none":
            return replace(opts, pattern="skip_only", attention=skip_attention, gate=cls.skip_gate_form(opts),
                           skip_gate=None, skip_attention=None, p4_gate="near_identity")
        return replace(opts, gate=gate, skip_gate=cls.skip_gate_form(opts),
                       p4_gate="direct" if gate == "mask" else "near_identity")

    @classmethod
    def uses(cls, opts):
        form, skip = cls.gate_form(opts), cls.skip_gate_form(opts)
        return {"attention", "skip_attention", "gate", "skip_gate", "p4_gate", *gate_options(form, "r"),
                *gate_options(skip, "s")}

    def merge(self, x):
        s, r = self.skip(x), self.residual(x)
        return self.gate_s(s, self.attn_s(s)) + self.gate_r(r, self.attn_r(r))

    def gates(self):
        return {**self.gate_s.values("s"), **self.gate_r.values("r")}


@PATTERNS.register("skip_only")
class SkipOnly(DualPath):
    """Attention on the skip path alone, SE-Identity in Hu et al.'s integration ablation: y = σ(g(skip(x)) + F(x)).

    A name for one p4: `attention=none` and `gate=mask` on the residual path (g_r(F(x)) = F(x)), this pattern's
    attention on the skip with its gate as `skip_gate` (mask, the seeds' form; or near_identity, γ₀ from
    `gamma_s_init`). It is built as that p4, module for module, so both spellings start from the same weights,
    and `canonical` names that p4 `skip_only` (`DualPath.resolve`).
    """

    seeds_gate, where = "mask", "skip_only"

    def __init__(self, in_ch, out_ch, stride, opts, family=None):
        super().__init__(in_ch, out_ch, stride, self.as_p4(opts), family)

    @classmethod
    def as_p4(cls, opts: BlockOptions) -> BlockOptions:
        return replace(opts, attention="none", skip_attention=opts.attention, gate="mask",
                       skip_gate=cls.gate_form(opts), p4_gate="direct")

    @classmethod
    def gate_form(cls, opts):
        return opts.gate or cls.seeds_gate

    @classmethod
    def check(cls, opts):
        choose("gate", cls.gate_form(opts), SKIP_GATES)

    @classmethod
    def resolve(cls, opts):
        return replace(opts, gate=cls.gate_form(opts), skip_gate=None)

    @classmethod
    def uses(cls, opts):
        return {"attention", "gate", *gate_options(cls.gate_form(opts), "s")}


def where_and_how(pattern: str, model: Mapping) -> tuple[str, str] | None:
    """The where × how cell of a run of `pattern` whose config's `model` section is `model` (a record's, maybe
    from before later keys existed): the class's `where` and its gate form, the config's `gate` or else the
    seeds' form the class gives it. None for the plain block or a pattern not registered here."""
    if pattern not in PATTERNS or (block := PATTERNS.get(pattern)).where is None:
        return None
    known = {f.name for f in fields(BlockOptions)}
    options = BlockOptions(**{k: v for k, v in model.items() if k in known and v is not None})
    return block.where, block.gate_form(options)
