"""Model zoo: every backbone × pattern × attention builds and trains; the gate formulas hold exactly."""

import pytest
import torch
from torch import nn

import attnplace
from attnplace.models import BLOCK_OPTIONS, build_model, count_params, gate_values
from attnplace.models.attention import ATTENTION, create_attention
from attnplace.models.blocks import PATTERNS, BlockOptions

REQUIRED_ATTENTION = ["se", "eca", "cbam", "coord", "none"]
PATTERN_NAMES = ["none", "p1", "p2", "p3", "p3c", "p4", "skip_only"]
BACKBONES = ["flat", "resnet20", "resnet32", "resnet56", "resnet110", "resnet18"]


def test_registries_hold_the_required_names():
    assert set(PATTERN_NAMES) == set(PATTERNS.names())
    family_backbones = {"resnet29", "resnet164", "preact_resnet20", "preact_resnet164", "preact_resnet18"}  # test_families.py
    assert set(BACKBONES) | family_backbones == set(attnplace.BACKBONES.names())
    assert set(REQUIRED_ATTENTION + ["gc", "ge", "ese", "lcbam"]) <= set(ATTENTION.names())


@pytest.mark.parametrize("name", ATTENTION.names())
@pytest.mark.parametrize("channels,size", [(16, 32), (64, 8), (3, 28)])
def test_every_attention_keeps_the_shape(name, channels, size):
    x = torch.randn(2, channels, size, size)
    assert create_attention(name, channels)(x).shape == x.shape


def test_se_hidden_width():
    se = create_attention("se", 64)
    assert se.fc1.out_channels == 4 and se.fc1.bias is not None  # max(64 // 16, 4)
    assert create_attention("se", 256).fc1.out_channels == 16


def cbam_by_formula(t, w1, w2, w_spatial):
    """The seeds' CBAM written out: m_c = σ(W2·ReLU(W1·avg) + W2·ReLU(W1·max)); t' = m_c ⊙ t;
    m_s = σ(conv7×7([mean_c t', max_c t'])); out = m_s ⊙ t'."""
    def mlp(v):  # v: N×C pooled features
        return torch.relu(v @ w1.T) @ w2.T

    m_c = torch.sigmoid(mlp(t.mean((2, 3))) + mlp(t.flatten(2).max(2).values))
    t1 = t * m_c[:, :, None, None]
    pooled = torch.stack([t1.mean(1), t1.max(1).values], dim=1)
    m_s = torch.sigmoid(torch.nn.functional.conv2d(pooled, w_spatial, padding=3))
    return t1 * m_s


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_cbam_is_the_seeds_formula(channels):
    cbam = create_attention("cbam", channels)
    hidden = max(channels // 16, 4)
    assert count_params(cbam) == 2 * channels * hidden + 2 * 7 * 7  # bias-free MLP, bias-free 7×7 conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cbam.modules())
    torch.manual_seed(1)
    for p in cbam.parameters():  # not the init: random weights, so a wrong formula cannot pass by luck
        p.data.normal_(0, 0.5)
    t = torch.randn(3, channels, 9, 7)
    w1 = cbam.channel.mlp[0].weight[:, :, 0, 0]
    w2 = cbam.channel.mlp[2].weight[:, :, 0, 0]
    expected = cbam_by_formula(t, w1, w2, cbam.spatial.conv.weight)
    torch.testing.assert_close(cbam(t), expected, rtol=1e-5, atol=1e-6)


def test_timm_cbam_is_kept_under_its_own_name():
    timm_cbam = create_attention("cbam_timm", 16)
    assert type(timm_cbam).__name__ == "CbamModule"
    assert timm_cbam.channel.fc1.out_channels == 1  # round(16/16), where the seeds' rule gives 4
    assert any(isinstance(m, nn.BatchNorm2d) for m in timm_cbam.modules())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("pattern", PATTERN_NAMES)
def test_every_variant_runs_forward_and_backward(backbone, pattern):
    torch.manual_seed(0)
    for attention in REQUIRED_ATTENTION if backbone in ("flat", "resnet20") else ["se"]:
        model = build_model(backbone, pattern, attention, num_classes=7)
        out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 7)
        out.square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("pattern", PATTERN_NAMES)
def test_grayscale_28x28(pattern):
    model = build_model("resnet20", pattern, "cbam", num_classes=10, in_channels=1)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def _block(pattern, in_ch=16, out_ch=32, stride=2, **options):
    torch.manual_seed(0)
    return PATTERNS.get(pattern)(in_ch, out_ch, stride, BlockOptions(**{"attention": "se", **options}))


def _with_base_weights(pattern, base, **options):
    """A `pattern` block whose F and skip weights are copied from `base`, its extra weights kept."""
    block = _block(pattern, **options)
    missing, unexpected = block.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("attn", "gate")) for k in missing)
    return block


@pytest.mark.parametrize("stride,in_ch", [(2, 16), (1, 32)])
def test_p4_with_zero_gammas_equals_none(stride, in_ch):
    x = torch.randn(4, in_ch, 8, 8)
    base = _block("none", in_ch=in_ch, stride=stride)
    p4 = _with_base_weights("p4", base, in_ch=in_ch, stride=stride, gamma_s_init=0.0, gamma_r_init=0.0)
    torch.testing.assert_close(p4(x), base(x), rtol=0, atol=0)
    # ...and with γ ≠ 0 it is exactly the near-identity formula t + γ·A(t) on both paths.
    with torch.no_grad():
        p4.gate_s.gamma.fill_(0.3), p4.gate_r.gamma.fill_(-0.2)
    s, r = p4.skip(x), p4.residual(x)
    expected = torch.relu(s + 0.3 * p4.attn_s(s) + r - 0.2 * p4.attn_r(r))
    torch.testing.assert_close(p4(x), expected)


def test_p3c_interpolates_between_none_and_p3():
    x = torch.randn(4, 16, 8, 8)
    base = _block("none")
    p3 = _with_base_weights("p3", base)
    # A fixed λ keeps 0 and 1 exact (a learned one is nudged to 1e-4 / 1 - 1e-4 so that it can move).
    p3c_zero = _with_base_weights("p3c", base, lambda_init=0.0, learn_lambda=False)
    p3c_one = _with_base_weights("p3c", base, lambda_init=1.0, learn_lambda=False)
    p3c_one.attn.load_state_dict(p3.attn.state_dict())
    torch.testing.assert_close(p3c_zero(x), base(x), rtol=0, atol=0)
    torch.testing.assert_close(p3c_one(x), p3(x), rtol=0, atol=0)
    assert not torch.allclose(p3(x), base(x))  # otherwise the two identities above say nothing


def test_p3c_mixes_input_with_lambda():
    x = torch.randn(4, 16, 8, 8)
    p3c = _block("p3c", lambda_init=0.25)
    mixed = 0.75 * x + 0.25 * p3c.attn(x)
    torch.testing.assert_close(p3c(x), torch.relu(p3c.skip(x) + p3c.residual(mixed)))


def test_p1_p2_follow_their_formulas():
    x = torch.randn(4, 16, 8, 8)
    p1, p2 = _block("p1"), _block("p2")
    torch.testing.assert_close(p1(x), torch.relu(p1.skip(x) + p1.attn(p1.residual(x))))
    torch.testing.assert_close(p2(x), torch.relu(p2.attn(p2.skip(x) + p2.residual(x))))


def test_gate_initial_values_and_learnability():
    model = build_model("resnet20", "p4", "se")
    gates = gate_values(model)
    assert len(gates) == 2 * 9
    assert gates["stage2.block0.gamma_s"] == 0.0
    assert gates["stage3.block2.gamma_r"] == pytest.approx(0.1)
    names = {n for n, _ in model.named_parameters()}
    assert "stage1.block0.gate_s.gamma" in names and "stage1.block0.gate_r.gamma" in names

    lam = gate_values(build_model("resnet20", "p3c", "se"))
    assert set(lam) == {f"stage{s}.block{b}.lambda" for s in (1, 2, 3) for b in range(3)}
    assert all(v == pytest.approx(0.1) for v in lam.values())

    fixed = build_model("resnet20", "p4", "se", learn_gamma_s=False, gamma_r_init=0.5, learn_lambda=False)
    names = {n for n, _ in fixed.named_parameters()}
    assert "stage1.block0.gate_s.gamma" not in names and "stage1.block0.gate_r.gamma" in names
    assert "stage1.block0.gate_s.gamma" in fixed.state_dict()  # fixed gates still travel with checkpoints
    assert gate_values(fixed)["stage1.block0.gamma_r"] == 0.5


def test_gammas_receive_gradients():
    model = build_model("resnet20", "p4", "se")
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean().backward()
    assert model.stage2.block1.gate_s.gamma.grad.abs() > 0 and model.stage2.block1.gate_r.gamma.grad.abs() > 0


def test_stage_selection_puts_plain_blocks_elsewhere():
    model = build_model("resnet20", "p4", "se", stages=[2, 3])
    assert {k.split(".")[0] for k in gate_values(model)} == {"stage2", "stage3"}
    assert type(model.stage1.block0) is PATTERNS.get("none")
    with pytest.raises(attnplace.UserError, match="valid: 1..3"):
        build_model("resnet20", "p1", "se", stages=[4])


def _extra_params(backbone, pattern):
    return count_params(build_model(backbone, pattern, "se")) - count_params(build_model(backbone, "none", "se"))


@pytest.mark.parametrize("backbone,num_blocks", [("resnet20", 9), ("flat", 2), ("resnet18", 8)])
def test_parameter_accounting(backbone, num_blocks):
    p1 = _extra_params(backbone, "p1")
    assert p1 > 0
    assert _extra_params(backbone, "p2") == p1
    assert _extra_params(backbone, "p4") == 2 * p1 + 2 * num_blocks
    assert _extra_params(backbone, "p3c") == _extra_params(backbone, "p3") + num_blocks


def test_skip_attention_may_differ():
    block = _block("p4", skip_attention="eca")
    assert type(block.attn_s).__name__ == "EcaModule" and type(block.attn_r).__name__ == "SEModule"


def test_group_norm_option():
    model = build_model("resnet20", "p1", "se", norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # GroupNorm works at batch size 1


def test_custom_attention_usable_by_name():
    class HalfGate(nn.Module):
        def forward(self, t):
            return 0.5 * t

    attnplace.register_attention("test_half")(lambda channels: HalfGate())
    try:
        block = _block("p1", in_ch=16, out_ch=16, stride=1)
        custom = PATTERNS.get("p1")(16, 16, 1, BlockOptions(attention="test_half"))
        custom.load_state_dict(block.state_dict(), strict=False)
        x = torch.randn(2, 16, 8, 8)
        torch.testing.assert_close(custom(x), torch.relu(x + 0.5 * custom.residual(x)))
        assert build_model("flat", "p4", "test_half")(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    finally:
        ATTENTION._entries.pop("test_half")


@pytest.mark.parametrize("kwargs,key", [
    ({"backbone": "resnet21"}, "unknown backbone 'resnet21'; valid: flat, preact_resnet164"),
    ({"pattern": "p9"}, "unknown pattern 'p9'; valid: none, p1, p2, p3, p3c, p4, skip_only"),
    ({"attention": "sse"}, "unknown attention 'sse'; valid: cbam"),
    ({"gamma_init": 0.1}, "unknown block option 'gamma_init'; valid: skip_attention"),
    ({"norm": "layer"}, "unknown norm 'layer'; valid: batch, group"),
])
def test_unknown_names_give_one_line_errors(kwargs, key):
    with pytest.raises(attnplace.UserError) as err:
        build_model(**kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_block_options_are_listed():
    assert set(BLOCK_OPTIONS) == {"skip_attention", "norm", "block", "gate", "skip_gate", "lambda_init", "learn_lambda",
                                  "gamma_s_init", "gamma_r_init", "learn_gamma_s", "learn_gamma_r", "p4_gate"}


def test_cli_list_prints_registries_and_costs(capsys):
    from attnplace.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "coord " in out and "p3c " in out and "resnet110 " in out
    table = out.split("parameters / forward FLOPs")[1]
    resnet20 = next(line for line in table.splitlines() if line.strip().startswith("resnet20 "))
    assert "272,474" in resnet20 and "278,612" in resnet20 and "81.63M" in resnet20
    assert main(["list", "--attention", "sse"]) == 2
    assert "unknown attention 'sse'" in capsys.readouterr().err


def test_p4_direct_gate_applies_the_attention_as_it_is():
    x = torch.randn(4, 16, 8, 8)
    p4 = _block("p4", attention="cbam", p4_gate="direct", gamma_s_init=0.25)
    assert set(gate_values(p4)) == {"gamma_s"} and not list(p4.gate_r.parameters())
    s, r = p4.skip(x), p4.residual(x)
    torch.testing.assert_close(p4(x), torch.relu(s + 0.25 * p4.attn_s(s) + p4.attn_r(r)))
    # With γ_s = 0 the skip is pure and the block is exactly Pattern-1 with the same weights.
    p1 = _block("p1", attention="cbam")
    direct = _with_base_weights("p4", _block("none"), attention="cbam", p4_gate="direct")
    p1.load_state_dict({**direct.state_dict(), **{f"attn.{k}": v for k, v in direct.attn_r.state_dict().items()}},
                       strict=False)
    torch.testing.assert_close(direct(x), p1(x), rtol=0, atol=0)
    with pytest.raises(attnplace.UserError, match="unknown p4_gate 'gated'; valid: near_identity, direct"):
        BlockOptions(p4_gate="gated")


@pytest.mark.parametrize("lambda_init,learned", [(0.0, 1e-4), (1.0, 1 - 1e-4), (0.3, 0.3)])
def test_learned_lambda_at_0_or_1_is_nudged_so_it_can_move(lambda_init, learned):
    block = _block("p3c", lambda_init=lambda_init)
    assert gate_values(block)["lambda"] == pytest.approx(learned, rel=1e-4)
    x = torch.randn(2, 16, 8, 8)
    block(x).square().mean().backward()
    assert block.gate.logit.grad.abs() > 0
    fixed = _block("p3c", lambda_init=lambda_init, learn_lambda=False)
    assert gate_values(fixed)["lambda"] == pytest.approx(lambda_init, abs=1e-7)  # fixed 0 / 1: exactly none / p3


def _shared_tensors(a: nn.Module, b: nn.Module) -> list[str]:
    sa, sb = a.state_dict(), b.state_dict()
    return [k for k in sa if k in sb and sa[k].shape == sb[k].shape]


def test_variants_under_one_seed_share_every_common_tensor():
    torch.manual_seed(123)
    none = build_model("resnet20", "none", "se", seed=0)
    torch.manual_seed(456)  # the caller's random state must not matter
    p4 = build_model("resnet20", "p4", "cbam", seed=0)
    p1 = build_model("resnet20", "p1", "eca", seed=0, stages=[3])
    for other in (p4, p1):
        common = _shared_tensors(none, other)
        assert len(common) == len(none.state_dict())  # every tensor of the baseline is shared
        for key in common:
            assert torch.equal(none.state_dict()[key], other.state_dict()[key]), key
    # The extras come from their own streams: p4's A_s and A_r (same type, same shape) differ.
    assert not torch.equal(p4.stage1.block0.attn_s.channel.mlp[0].weight, p4.stage1.block0.attn_r.channel.mlp[0].weight)
    # Another seed gives other weights for every randomly initialised tensor.
    seed0, seed1 = none.state_dict(), build_model("resnet20", "none", "se", seed=1).state_dict()
    random = [k for k in seed0 if k.endswith("weight") and seed0[k].ndim > 1]  # convs and fc (norms start at 1)
    assert len(random) == 22 and all(not torch.equal(seed0[k], seed1[k]) for k in random)


def test_build_model_leaves_the_global_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_model("resnet20", "p4", "cbam", seed=3)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_init_keeps_the_cifar_resnet_recipe():
    model = build_model("resnet20", "p1", "se", seed=0)
    conv = model.stage3.block0.residual[0][0].weight  # 32 -> 64, 3×3: He fan_out std = sqrt(2 / (64·9))
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    bn = model.stage3.block0.residual[0][1]
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.bias, torch.zeros(64))


def test_gate_parameters_are_exactly_the_learned_gates():
    from attnplace.models import gate_parameters

    model = build_model("resnet20", "p4", "se", learn_gamma_s=False)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].rsplit(".", 2)[-2] for p in gate_parameters(model)) == ["gate_r"] * 9
    assert len(gate_parameters(build_model("resnet20", "p3c", "se"))) == 9
    assert gate_parameters(build_model("resnet20", "p1", "se")) == []
