"""Model zoo: every backbone × pattern × attention builds and trains; the gate formulas hold exactly."""

import pytest
import torch
from torch import nn

import attnplace
from attnplace.models import BLOCK_OPTIONS, build_model, count_params, gate_values
from attnplace.models.attention import ATTENTION, create_attention
from attnplace.models.blocks import PATTERNS, BlockOptions

REQUIRED_ATTENTION = ["se", "eca", "cbam", "coord", "none"]
PATTERN_NAMES = ["none", "p1", "p2", "p3", "p3c", "p4"]
BACKBONES = ["flat", "resnet20", "resnet32", "resnet56", "resnet110", "resnet18"]


def test_registries_hold_the_required_names():
    assert set(PATTERN_NAMES) == set(PATTERNS.names())
    assert set(BACKBONES) == set(attnplace.BACKBONES.names())
    assert set(REQUIRED_ATTENTION + ["gc", "ge", "ese", "lcbam"]) <= set(ATTENTION.names())


@pytest.mark.parametrize("name", ATTENTION.names())
@pytest.mark.parametrize("channels,size", [(16, 32), (64, 8), (3, 28)])
def test_every_attention_keeps_the_shape(name, channels, size):
    x = torch.randn(2, channels, size, size)
    assert create_attention(name, channels)(x).shape == x.shape


def test_se_hidden_width_and_cbam_hyperparameters():
    se = create_attention("se", 64)
    assert se.fc1.out_channels == 4 and se.fc1.bias is not None  # max(64 // 16, 4)
    assert create_attention("se", 256).fc1.out_channels == 16
    cbam = create_attention("cbam", 64)
    assert cbam.channel.fc1.out_channels == 4 and cbam.spatial.conv.conv.kernel_size == (7, 7)


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
    return PATTERNS.get(pattern)(in_ch, out_ch, stride, BlockOptions(attention="se", **options))


def _with_base_weights(pattern, base, **options):
    """A `pattern` block whose F and skip weights are copied from `base`, its extra weights kept."""
    block = _block(pattern, **options)
    missing, unexpected = block.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("attn", "gamma", "lambda")) for k in missing)
    return block


@pytest.mark.parametrize("stride,in_ch", [(2, 16), (1, 32)])
def test_p4_with_zero_gammas_equals_none(stride, in_ch):
    x = torch.randn(4, in_ch, 8, 8)
    base = _block("none", in_ch=in_ch, stride=stride)
    p4 = _with_base_weights("p4", base, in_ch=in_ch, stride=stride, gamma_s_init=0.0, gamma_r_init=0.0)
    torch.testing.assert_close(p4(x), base(x), rtol=0, atol=0)
    # ...and with γ ≠ 0 it is exactly the near-identity formula t + γ·A(t) on both paths.
    with torch.no_grad():
        p4.gamma_s.fill_(0.3), p4.gamma_r.fill_(-0.2)
    s, r = p4.skip(x), p4.residual(x)
    expected = torch.relu(s + 0.3 * p4.attn_s(s) + r - 0.2 * p4.attn_r(r))
    torch.testing.assert_close(p4(x), expected)


def test_p3c_interpolates_between_none_and_p3():
    x = torch.randn(4, 16, 8, 8)
    base = _block("none")
    p3 = _with_base_weights("p3", base)
    p3c_zero = _with_base_weights("p3c", base, lambda_init=0.0)
    p3c_one = _with_base_weights("p3c", base, lambda_init=1.0)
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
    assert "stage1.block0.gamma_s" in names and "stage1.block0.gamma_r" in names

    lam = gate_values(build_model("resnet20", "p3c", "se"))
    assert set(lam) == {f"stage{s}.block{b}.lambda" for s in (1, 2, 3) for b in range(3)}
    assert all(v == pytest.approx(0.1) for v in lam.values())

    fixed = build_model("resnet20", "p4", "se", learn_gamma_s=False, gamma_r_init=0.5, learn_lambda=False)
    names = {n for n, _ in fixed.named_parameters()}
    assert "stage1.block0.gamma_s" not in names and "stage1.block0.gamma_r" in names
    assert "stage1.block0.gamma_s" in fixed.state_dict()  # fixed gates still travel with checkpoints
    assert gate_values(fixed)["stage1.block0.gamma_r"] == 0.5


def test_gammas_receive_gradients():
    model = build_model("resnet20", "p4", "se")
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean().backward()
    assert model.stage2.block1.gamma_s.grad.abs() > 0 and model.stage2.block1.gamma_r.grad.abs() > 0


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
    ({"backbone": "resnet21"}, "unknown backbone 'resnet21'; valid: flat, resnet110"),
    ({"pattern": "p9"}, "unknown pattern 'p9'; valid: none, p1, p2, p3, p3c, p4"),
    ({"attention": "sse"}, "unknown attention 'sse'; valid: cbam"),
    ({"gamma_init": 0.1}, "unknown block option 'gamma_init'; valid: skip_attention"),
    ({"norm": "layer"}, "unknown norm 'layer'; valid: batch, group"),
])
def test_unknown_names_give_one_line_errors(kwargs, key):
    with pytest.raises(attnplace.UserError) as err:
        build_model(**kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_block_options_are_listed():
    assert set(BLOCK_OPTIONS) == {"skip_attention", "norm", "lambda_init", "learn_lambda", "gamma_s_init",
                                  "gamma_r_init", "learn_gamma_s", "learn_gamma_r"}


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
