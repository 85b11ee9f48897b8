"""Model zoo: every backbone × pattern × attention builds and trains; registries, block options, parameter counts
and seeded initialisation. The gate formulas are in test_gate_formulas.py."""

import pytest
import torch
from torch import nn

import attnplace
from attnplace.models import BLOCK_OPTIONS, build_model, count_params, gate_values
from attnplace.models.attention import ATTENTION, create_attention
from attnplace.models.blocks import PATTERNS, BlockOptions
from pattern_blocks import make_block

REQUIRED_ATTENTION = ["se", "eca", "cbam", "coord", "none"]
PATTERN_NAMES = ["none", "p1", "p2", "p3", "p3c", "p4", "skip_only"]
BACKBONES = ["flat", "resnet20", "resnet32", "resnet56", "resnet110", "resnet18"]


def test_registries_hold_the_required_names():
    assert set(PATTERN_NAMES) == set(PATTERNS.names())
    family_backbones = {"resnet29", "resnet164", "preact_resnet20", "preact_resnet164",
                        "preact_resnet18"}  # test_families.py
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


@pytest.mark.parametrize("channels", [16, 64])
def test_cbam_is_timms_with_the_seeds_hidden_width_and_no_norm(channels):
    """Against the library: timm's CbamModule given h = max(C//16, 4) and its spatial BatchNorm removed computes
    the seeds' CBAM with the same weights, so those two are the only differences."""
    from timm.layers.cbam import CbamModule

    torch.manual_seed(2)
    cbam, timm_cbam = create_attention("cbam", channels), CbamModule(channels, rd_channels=max(channels // 16, 4))
    timm_cbam.spatial.conv.bn = nn.Identity()
    for p in cbam.parameters():
        p.data.normal_(0, 0.5)
    timm_cbam.channel.fc1.weight.data.copy_(cbam.channel.mlp[0].weight)
    timm_cbam.channel.fc2.weight.data.copy_(cbam.channel.mlp[2].weight)
    timm_cbam.spatial.conv.conv.weight.data.copy_(cbam.spatial.conv.weight)
    t = torch.randn(3, channels, 9, 7)
    torch.testing.assert_close(cbam(t), timm_cbam(t), rtol=1e-5, atol=1e-6)


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
    block = make_block("p4", skip_attention="eca")
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
        block = make_block("p1", in_ch=16, out_ch=16, stride=1)
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
