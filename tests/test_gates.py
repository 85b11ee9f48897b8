"""Where × how: every pattern with every gate form computes its formula; today's names are presets of the two
axes with the modules and run ids they had; the options a block declares drive canonical configs; mask
telemetry reads masks in [0, 1] and leaves training bit-identical."""

import math

import pytest
import torch

from attnplace.models import PATTERNS, BlockOptions, build_model, build_network
from attnplace.models.blocks import ResidualBlock
from attnplace.errors import UserError
from attnplace.models.masks import mask_statistics
from attnplace.run.config import load_config
from attnplace.train.fit import fit

GATE_VALUES = {"gamma": 0.37, "logit": -0.8}  # away from every initial value (γ₀ = 0 / 0.1, λ₀ = 0.1)


def _block(pattern: str, attention: str = "se", **options) -> torch.nn.Module:
    torch.manual_seed(0)
    block = PATTERNS.get(pattern)(16, 32, 2, BlockOptions(attention=attention, **options))
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.rsplit(".", 1)[-1] in GATE_VALUES:
                p.fill_(GATE_VALUES[name.rsplit(".", 1)[-1]])
    return block.eval()


def _reference_gate(form: str, t: torch.Tensor, a: torch.Tensor, gamma: float) -> torch.Tensor:
    lam = 1 / (1 + math.exp(-GATE_VALUES["logit"]))
    return {"mask": a, "near_identity": t + gamma * a, "mix": (1 - lam) * t + lam * a}[form]


@pytest.mark.parametrize("form", ["mask", "near_identity", "mix"])
@pytest.mark.parametrize("pattern", ["p1", "p2", "p3", "p4"])
@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_each_pattern_and_gate_form_computes_its_formula(pattern, form, attention):
    block = _block(pattern, attention, gate=form)
    x = torch.randn(4, 16, 8, 8)
    g = GATE_VALUES["gamma"]
    with torch.no_grad():
        s, f = block.skip(x), block.residual(x)
        if pattern == "p1":
            expected = s + _reference_gate(form, f, block.attn(f), g)
        elif pattern == "p2":
            z = s + f
            expected = _reference_gate(form, z, block.attn(z), g)
        elif pattern == "p3":
            expected = s + block.residual(_reference_gate(form, x, block.attn(x), g))
        else:  # the skip keeps its near-identity gate γ_s
            expected = s + g * block.attn_s(s) + _reference_gate(form, f, block.attn_r(f), g)
        torch.testing.assert_close(block(x), torch.relu(expected))


def test_p4_skip_gate_may_be_a_raw_mask_too():
    block = _block("p4", skip_gate="mask", gate="mask")
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        s, f = block.skip(x), block.residual(x)
        torch.testing.assert_close(block(x), torch.relu(block.attn_s(s) + block.attn_r(f)))


SE_IDENTITY = ["model.pattern=p4", "model.attention=none", "model.skip_attention=se", "model.gate=mask",
               "model.skip_gate=mask"]


def test_skip_only_is_the_p4_with_attention_on_the_skip_alone():
    """SE-Identity's two spellings: one canonical config and run id, one network with the same weights."""
    named, spelled = load_config(None, ["model.pattern=skip_only"]), load_config(None, SE_IDENTITY)
    assert named == spelled and named.run_id == spelled.run_id and named.run_id.startswith("resnet20-skip_only-se-s0-")
    a, b = build_network(named.model, seed=3), build_network(spelled.model, seed=3)
    state = b.state_dict()
    assert a.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in a.state_dict().items())
    near = load_config(None, ["model.pattern=skip_only", "model.gate=near_identity", "model.gamma_s_init=0.2"])
    assert near == load_config(None, [*SE_IDENTITY, "model.skip_gate=near_identity", "model.gamma_s_init=0.2"])
    assert near.run_id.startswith("resnet20-skip_only-se-near_identity-s0-")


@pytest.mark.parametrize("form", ["mask", "near_identity"])
def test_skip_only_computes_its_formula(form):
    """y = σ(g(skip(x)) + F(x)): A on the skip with g, the residual as it is."""
    block = _block("skip_only", gate=form)
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        s = block.skip(x)
        expected = _reference_gate(form, s, block.attn_s(s), GATE_VALUES["gamma"]) + block.residual(x)
        torch.testing.assert_close(block(x), torch.relu(expected))


def test_skip_only_takes_no_mix():
    with pytest.raises(UserError, match=r"model\.gate='mix' is invalid; valid: near_identity, mask"):
        load_config(None, ["model.pattern=skip_only", "model.gate=mix"])


# Built by the code before the gate axis existed (commit a3a55de): run id, parameter count, the sum of every
# initial parameter and the first logits of a fixed input, for seed 3 (ids are for seed 0).
LEGACY = {
    "none": (["model.pattern=none"], "resnet20-none-none-s0-d6d52690", 272474, 726.070462, [-1.284696, 1.452053]),
    "p1": (["model.pattern=p1"], "resnet20-p1-se-s0-36e34710", 275534, 688.782336, [-0.228871, 0.229328]),
    "p2": (["model.pattern=p2"], "resnet20-p2-se-s0-ae578031", 275534, 688.782336, [0.0379, -0.109883]),
    "p3": (["model.pattern=p3"], "resnet20-p3-se-s0-85562d43", 275102, 705.040046, [-0.189987, 0.264831]),
    "p3c": (["model.pattern=p3c"], "resnet20-p3c-se-s0-dd1f6c97", 275111, 685.265025, [-1.06798, 1.256226]),
    "p4": (["model.pattern=p4"], "resnet20-p4-se-s0-955c7044", 278612, 750.187962, [-1.581507, 1.772105]),
    "p4 direct": (["model.pattern=p4", "model.p4_gate=direct"], "resnet20-p4-se-s0-f5a8ac4e", 278603,
                  749.287962, [-0.20659, 0.313701]),
    "p4 cbam fixed γ_s": (["model.pattern=p4", "model.attention=cbam", "model.learn_gamma_s=false",
                           "model.gamma_r_init=0.3"], "resnet20-p4-cbam-s0-3b4470e1", 279623, 716.834593,
                          [-1.72447, 1.572123]),
    "p3c fixed λ": (["model.pattern=p3c", "model.lambda_init=0.5", "model.learn_lambda=false"],
                    "resnet20-p3c-se-s0-82d57202", 275102, 705.040046, [-0.491212, 0.644713]),
}
FIXED_TRAINER = ["trainer.precision=32-true", "trainer.channels_last=false", "trainer.compile=false"]


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_names_build_the_same_modules_and_ids_as_before(name):
    overrides, run_id, params, weight_sum, logits = LEGACY[name]
    config = load_config(None, ["model.backbone=resnet20", *FIXED_TRAINER, *overrides])
    assert config.run_id == run_id
    model = build_network(config.model, seed=3).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(float(p.detach().double().sum()) for p in model.parameters()) == pytest.approx(weight_sum, abs=1e-5)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))[0, :2]
    torch.testing.assert_close(out, torch.tensor(logits), atol=2e-6, rtol=0)


@pytest.mark.parametrize("a,b", [
    (["model.pattern=p3", "model.gate=mix"], ["model.pattern=p3c"]),
    (["model.pattern=p3c", "model.gate=mask"], ["model.pattern=p3"]),
    (["model.pattern=p4", "model.gate=mask"], ["model.pattern=p4", "model.p4_gate=direct"]),
    (["model.pattern=p4", "model.gate=near_identity", "model.skip_gate=near_identity"], ["model.pattern=p4"]),
    (["model.pattern=none", "model.gate=mix", "model.lambda_init=0.7"], ["model.pattern=none"]),
    (["model.pattern=p1", "model.gate=mask", "model.gamma_r_init=0.5"], ["model.pattern=p1"]),
])
def test_presets_and_ignored_options_canonicalise_to_one_run(a, b):
    assert load_config(None, a) == load_config(None, b)


def test_options_a_gate_reads_split_runs_and_others_do_not():
    near = load_config(None, ["model.pattern=p2", "model.gate=near_identity"])
    assert near.run_id.startswith("resnet20-p2-se-near_identity-s0-")
    assert near.run_id != load_config(None, ["model.pattern=p2", "model.gate=near_identity",
                                             "model.gamma_r_init=0.2"]).run_id
    assert near.run_id == load_config(None, ["model.pattern=p2", "model.gate=near_identity",
                                             "model.lambda_init=0.7"]).run_id
    assert near.optim.gate_lr_scale == 1 and load_config(None, [
        "model.pattern=p2", "model.gate=near_identity", "optim.gate_lr_scale=10"]).optim.gate_lr_scale == 10
    assert load_config(None, ["model.pattern=p2", "optim.gate_lr_scale=10"]).optim.gate_lr_scale == 1  # mask


def test_a_user_registered_pattern_inherits_its_declaration():
    @PATTERNS.register("test_p1_twice")
    class Twice(ResidualBlock):
        """y = ReLU(skip(x) + g(g(F(x))))"""

        attention_on, seeds_gate = "out", "mask"

        def merge(self, x):
            return self.skip(x) + self.attend(self.attend(self.residual(x)))

    try:
        a = load_config(None, ["model.pattern=test_p1_twice", "model.gamma_r_init=0.5"])
        assert a.model.gamma_r_init == 0.1 and a.model.gate == "mask"  # a mask gate reads no γ
        b = load_config(None, ["model.pattern=test_p1_twice", "model.gate=near_identity", "model.gamma_r_init=0.5"])
        assert b.model.gamma_r_init == 0.5
    finally:
        PATTERNS._entries.pop("test_p1_twice")


@pytest.mark.parametrize("pattern,attention", [("p2", "se"), ("p4", "cbam")])
def test_mask_statistics_are_finite_and_masks_lie_in_0_1(pattern, attention):
    model = build_model("resnet20", pattern, attention, gate="mask")
    stats = mask_statistics(model, torch.randn(8, 3, 32, 32))
    assert stats and all(math.isfinite(v) for v in stats.values())
    means = {k: v for k, v in stats.items() if k.endswith("_mean")}
    assert all(0 <= v <= 1 for v in means.values())
    assert all(0 <= v <= 1 for k, v in stats.items() if k.endswith(("_low", "_high")))
    kinds = {k.rsplit(".", 1)[-1] for k in stats}
    assert ("spatial_mean" in kinds) == (attention == "cbam") and "gain" in kinds
    # A raw mask in (0, 1) shrinks what it gates: gain below 1, about the mean mask for SE on the sum.
    assert all(0 < v < 1 for k, v in stats.items() if k.endswith("gain") and pattern == "p2")
    assert model.training  # left as it was


TINY = ["data.name=synthetic", "data.path=null", "data.val_size=100", "data.batch_size=50",
        "data.synthetic={num_train: 300, num_test: 100, image_size: 16}", "model.backbone=resnet20",
        "model.pattern=p4", "model.attention=cbam", "trainer.progress_bar=false", "trainer.deterministic=true",
        "optim.warmup_epochs=0", "trainer.max_epochs=2"]


def test_telemetry_leaves_training_bit_identical(tmp_path):
    runs = {tele: fit(load_config(None, [*TINY, f"trainer.mask_telemetry={str(tele).lower()}",
                                         f"run_dir={tmp_path / str(tele)}"])) for tele in (True, False)}
    with_masks, without = runs[True], runs[False]
    assert len(with_masks["history"][-1]["masks"]) == 9 * 2 * 9 and without["history"][-1]["masks"] == {}
    assert with_masks["id"] == without["id"]  # telemetry is not part of what a run computes

    def trained(record):
        return [{k: v for k, v in h.items() if k not in ("train_seconds", "masks")} for h in record["history"]]

    assert trained(with_masks) == trained(without)
    assert with_masks["metrics"]["test_acc"] == without["metrics"]["test_acc"]
