"""Any residual network: every block family × pattern × gate form computes its formula; the new CIFAR backbones
have the parameters of their formula and of the published figure (library ResNets: test_convert.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnplace
from attnplace.models import (BACKBONES, FAMILIES, PATTERNS, BlockOptions, build_model, count_flops, count_params,
                              gate_values)
from randomized import GATE_VALUES, LAMBDA, randomize

# --- the formulas, written out -------------------------------------------------------------------------------

def norm(t, bn):
    return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def conv(t, c, stride=1):
    return F.conv2d(t, c.weight, stride=stride, padding=c.kernel_size[0] // 2)


def residual_by_formula(family: str, branch: nn.Module, x: torch.Tensor, stride: int) -> torch.Tensor:
    """F of each family (families.py's table), the stride on the first 3×3."""
    c = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    n = [m for m in branch.modules() if isinstance(m, nn.BatchNorm2d)]
    if family == "basic":  # conv3-norm-ReLU-conv3-norm
        return norm(conv(F.relu(norm(conv(x, c[0], stride), n[0])), c[1]), n[1])
    if family == "bottleneck":  # conv1-norm-ReLU-conv3-norm-ReLU-conv1-norm
        t = F.relu(norm(conv(F.relu(norm(conv(x, c[0]), n[0])), c[1], stride), n[1]))
        return norm(conv(t, c[2]), n[2])
    if family == "preact":  # norm-ReLU-conv3-norm-ReLU-conv3
        return conv(F.relu(norm(conv(F.relu(norm(x, n[0])), c[0], stride), n[1])), c[1])
    # preact_bottleneck: norm-ReLU-conv1-norm-ReLU-conv3-norm-ReLU-conv1
    t = conv(F.relu(norm(conv(F.relu(norm(x, n[0])), c[0]), n[1])), c[1], stride)
    return conv(F.relu(norm(t, n[2])), c[2])


def skip_by_formula(family: str, skip: nn.Module, x: torch.Tensor, stride: int) -> torch.Tensor:
    if isinstance(skip, nn.Identity):
        return x
    (c,) = [m for m in skip.modules() if isinstance(m, nn.Conv2d)]
    (n,) = [m for m in skip.modules() if isinstance(m, nn.BatchNorm2d)]
    return conv(F.relu(norm(x, n)), c, stride) if family.startswith("preact") else norm(conv(x, c, stride), n)


def gate_by_formula(form: str, t, a):
    return {"mask": a, "near_identity": t + GATE_VALUES["gamma"] * a, "mix": (1 - LAMBDA) * t + LAMBDA * a}[form]


def block_by_formula(pattern: str, form: str, block, s: torch.Tensor, f, x: torch.Tensor) -> torch.Tensor:
    """merge(x) of each pattern (blocks.py's table); `f` computes F so that p3 can feed it g(x)."""
    if pattern == "none":
        return s + f(x)
    if pattern == "p1":
        r = f(x)
        return s + gate_by_formula(form, r, block.attn(r))
    if pattern == "p2":
        z = s + f(x)
        return gate_by_formula(form, z, block.attn(z))
    if pattern == "p3":
        return s + f(gate_by_formula(form, x, block.attn(x)))
    r = f(x)  # p4: g_s keeps its seeds' near-identity form
    return s + GATE_VALUES["gamma"] * block.attn_s(s) + gate_by_formula(form, r, block.attn_r(r))


SIGMA = {"basic": torch.relu, "bottleneck": torch.relu, "preact": lambda t: t, "preact_bottleneck": lambda t: t}
CASES = [(p, form) for p in ("p1", "p2", "p3", "p4") for form in ("mask", "near_identity", "mix")] + [("none", None)]


@pytest.mark.parametrize("shape", [(16, 32, 2), (32, 32, 1)], ids=["widening", "same"])
@pytest.mark.parametrize("pattern,form", CASES)
@pytest.mark.parametrize("family", FAMILIES.names())
def test_each_family_pattern_and_gate_form_computes_its_formula(family, pattern, form, shape):
    in_ch, out_ch, stride = shape
    block = randomize(PATTERNS.get(pattern)(in_ch, out_ch, stride,
                                            BlockOptions(attention="se", block=family, gate=form)))
    x = torch.randn(2, in_ch, 8, 8)
    with torch.no_grad():
        s = skip_by_formula(family, block.skip, x, stride)
        expected = SIGMA[family](block_by_formula(
            pattern, form, block, s, lambda t: residual_by_formula(family, block.residual, t, stride), x))
        torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)
    kernels = [m.kernel_size[0] for m in block.residual.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == ([1, 3, 1] if "bottleneck" in family else [3, 3])
    widths = [m.out_channels for m in block.residual.modules() if isinstance(m, nn.Conv2d)]
    assert widths == ([out_ch // 4, out_ch // 4, out_ch] if "bottleneck" in family else [out_ch, out_ch])
    if pattern in ("p1", "p2"):  # "out" is the block's output width: a bottleneck's expanded one (SE-ResNet-50)
        assert block.attn.fc1.in_channels == out_ch
    if pattern == "p3":
        assert block.attn.fc1.in_channels == in_ch


def test_a_block_family_is_one_line_of_error_when_unknown():
    with pytest.raises(attnplace.UserError, match=r"^unknown block 'resnext'; valid: basic, bottleneck, preact, "
                                                  r"preact_bottleneck$"):
        BlockOptions(block="resnext")


# --- backbones -------------------------------------------------------------------------------------------------

def bottleneck_params(in_ch: int, out_ch: int, preact: bool) -> int:
    mid = out_ch // 4
    convs, norms = in_ch * mid + 9 * mid * mid + mid * out_ch, 2 * (in_ch + 2 * mid if preact else 2 * mid + out_ch)
    skip = 0 if in_ch == out_ch else in_ch * out_ch + 2 * (in_ch if preact else out_ch)
    return convs + norms + skip


def basic_params(in_ch: int, out_ch: int, preact: bool) -> int:
    convs, norms = 9 * (in_ch * out_ch + out_ch * out_ch), 2 * (in_ch + out_ch if preact else 2 * out_ch)
    skip = 0 if in_ch == out_ch else in_ch * out_ch + 2 * (in_ch if preact else out_ch)
    return convs + norms + skip


def network_params(widths, depth, block_params, preact: bool, classes: int = 10) -> int:
    """stem conv (+ norm unless pre-activation), the stages, the tail norm (pre-activation), fc."""
    total, width = 27 * widths[0] + (0 if preact else 2 * widths[0]), widths[0]
    for out in widths[1:]:
        for _ in range(depth):
            total, width = total + block_params(width, out, preact), out
    return total + (2 * width if preact else 0) + width * classes + classes


# (backbone, its params by formula, the published figure or None)
EXPECTED = {
    "resnet164": (network_params([16, 64, 128, 256], 18, bottleneck_params, False), 1.7e6),
    "preact_resnet164": (network_params([16, 64, 128, 256], 18, bottleneck_params, True), 1.7e6),
    "preact_resnet20": (network_params([16, 16, 32, 64], 3, basic_params, True), 0.27e6),
    "preact_resnet18": (network_params([64, 64, 128, 256, 512], 2, basic_params, True), None),
    "resnet20": (network_params([16, 16, 32, 64], 3, basic_params, False), 0.27e6),
    "resnet29": (network_params([16, 64, 128, 256], 3, bottleneck_params, False), None),
}


@pytest.mark.parametrize("backbone", EXPECTED)
def test_backbone_params_match_the_formula_and_the_published_figure(backbone):
    """He et al. 2016, "Identity Mappings in Deep Residual Networks": ResNet-164, original and pre-activation,
    1.7M parameters on CIFAR-10; He et al. 2015: ResNet-20 0.27M."""
    formula, published = EXPECTED[backbone]
    with torch.device("meta"):  # counting needs no memory
        params = count_params(build_model(backbone, "none"))
    assert params == formula
    assert published is None or abs(params / published - 1) < 0.03


def test_resnet164_flops_match_the_published_figure():
    """Liu et al. 2017 ("Network Slimming"), Table 1: ResNet-164 on CIFAR-10, 4.99e8 FLOPs (2 per multiply-add)."""
    with torch.device("meta"):
        flops = count_flops(build_model("resnet164", "none"))
    assert abs(flops / 4.99e8 - 1) < 0.03


@pytest.mark.parametrize("backbone,block,blocks_per_stage", [
    ("resnet164", "bottleneck", 18), ("preact_resnet164", "preact_bottleneck", 18), ("preact_resnet20", "preact", 3),
    ("preact_resnet18", "preact", 2), ("resnet20", "basic", 3), ("resnet29", "bottleneck", 3)])
def test_a_backbone_name_decides_its_family(backbone, block, blocks_per_stage):
    with torch.device("meta"):
        model = build_model(backbone, "p1")
    assert BACKBONES.get(backbone).block == block
    assert len(model.stage2) == blocks_per_stage and model.stage2.block0.attn is not None
    assert ("tail" in dict(model.named_children())) == block.startswith("preact")  # norm-ReLU before the pool
    assert isinstance(model.stage1.block0.activation, nn.Identity if block.startswith("preact") else nn.ReLU)
    build_model(backbone, "p1", block=block)  # naming its own family is fine
    other = "basic" if block != "basic" else "preact"
    with pytest.raises(attnplace.UserError, match=f"block='{other}' contradicts backbone '{backbone}'"):
        build_model(backbone, "p1", block=other)


def test_new_backbones_train_forward_and_backward():
    for backbone in ("preact_resnet20", "resnet164"):
        model = build_model(backbone, "p4", "se", num_classes=7)
        out = model(torch.randn(2, 3, 16, 16))
        out.square().mean().backward()
        assert out.shape == (2, 7) and all(p.grad is not None for p in model.parameters())
        assert len(gate_values(model)) == 2 * 3 * (18 if backbone == "resnet164" else 3)
