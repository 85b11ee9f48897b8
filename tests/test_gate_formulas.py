"""Gate formulas: each pattern block computes its formula exactly (p1, p2, p3c's λ-mix, p4's near-identity and
direct gates), p4 with zero gammas and p3c at λ = 0 or 1 are exactly their plain counterparts; the gates start at
their configured values, receive gradients, learned λ is nudged off 0 and 1, and `gate_parameters` lists exactly
the learned gates."""

import pytest
import torch

import attnplace
from attnplace.models import build_model, gate_values
from attnplace.models.blocks import BlockOptions
from pattern_blocks import make_block


def _with_base_weights(pattern, base, **options):
    """A `pattern` block whose F and skip weights are copied from `base`, its extra weights kept."""
    block = make_block(pattern, **options)
    missing, unexpected = block.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("attn", "gate")) for k in missing)
    return block


@pytest.mark.parametrize("stride,in_ch", [(2, 16), (1, 32)])
def test_p4_with_zero_gammas_equals_none(stride, in_ch):
    x = torch.randn(4, in_ch, 8, 8)
    base = make_block("none", in_ch=in_ch, stride=stride)
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
    base = make_block("none")
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
    p3c = make_block("p3c", lambda_init=0.25)
    mixed = 0.75 * x + 0.25 * p3c.attn(x)
    torch.testing.assert_close(p3c(x), torch.relu(p3c.skip(x) + p3c.residual(mixed)))


def test_p1_p2_follow_their_formulas():
    x = torch.randn(4, 16, 8, 8)
    p1, p2 = make_block("p1"), make_block("p2")
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


def test_p4_direct_gate_applies_the_attention_as_it_is():
    x = torch.randn(4, 16, 8, 8)
    p4 = make_block("p4", attention="cbam", p4_gate="direct", gamma_s_init=0.25)
    assert set(gate_values(p4)) == {"gamma_s"} and not list(p4.gate_r.parameters())
    s, r = p4.skip(x), p4.residual(x)
    torch.testing.assert_close(p4(x), torch.relu(s + 0.25 * p4.attn_s(s) + p4.attn_r(r)))
    # With γ_s = 0 the skip is pure and the block is exactly Pattern-1 with the same weights.
    p1 = make_block("p1", attention="cbam")
    direct = _with_base_weights("p4", make_block("none"), attention="cbam", p4_gate="direct")
    p1.load_state_dict({**direct.state_dict(), **{f"attn.{k}": v for k, v in direct.attn_r.state_dict().items()}},
                       strict=False)
    torch.testing.assert_close(direct(x), p1(x), rtol=0, atol=0)
    with pytest.raises(attnplace.UserError, match="unknown p4_gate 'gated'; valid: near_identity, direct"):
        BlockOptions(p4_gate="gated")


@pytest.mark.parametrize("lambda_init,learned", [(0.0, 1e-4), (1.0, 1 - 1e-4), (0.3, 0.3)])
def test_learned_lambda_at_0_or_1_is_nudged_so_it_can_move(lambda_init, learned):
    block = make_block("p3c", lambda_init=lambda_init)
    assert gate_values(block)["lambda"] == pytest.approx(learned, rel=1e-4)
    x = torch.randn(2, 16, 8, 8)
    block(x).square().mean().backward()
    assert block.gate.logit.grad.abs() > 0
    fixed = make_block("p3c", lambda_init=lambda_init, learn_lambda=False)
    assert gate_values(fixed)["lambda"] == pytest.approx(lambda_init, abs=1e-7)  # fixed 0 / 1: exactly none / p3


def test_gate_parameters_are_exactly_the_learned_gates():
    from attnplace.models import gate_parameters

    model = build_model("resnet20", "p4", "se", learn_gamma_s=False)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].rsplit(".", 2)[-2] for p in gate_parameters(model)) == ["gate_r"] * 9
    assert len(gate_parameters(build_model("resnet20", "p3c", "se"))) == 9
    assert gate_parameters(build_model("resnet20", "p1", "se")) == []
