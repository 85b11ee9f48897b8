"""`convert` adds placements to torchvision's and timm's ResNets keeping every weight, and with identity-start
gates the function too; configs name such backbones (`torchvision:NAME`, `timm:NAME`, `model.weights`) without
changing any earlier run id."""

import copy

import pytest
import timm
import torch
import torchvision
from torch import nn

import attnplace
from attnplace.models import PATTERNS, build_model, build_network, count_params, gate_values
from attnplace.run.config import load_config
from randomized import GATE_VALUES, randomize

FIXED_TRAINER = ["trainer.precision=32-true", "trainer.channels_last=false", "trainer.compile=false"]


# --- convert ---------------------------------------------------------------------------------------------------

LIBRARY_NETS = {
    "torchvision resnet18": lambda: torchvision.models.resnet18(),
    "torchvision resnet50": lambda: torchvision.models.resnet50(),
    "timm resnet18": lambda: timm.create_model("resnet18", pretrained=False),
    "timm resnet26": lambda: timm.create_model("resnet26", pretrained=False),
}
# Gates that start at the identity: g(t) = t + 0·A(t), or (1-0)·t + 0·A(t) with a fixed λ₀ = 0.
IDENTITY_STARTS = {
    "p1 near_identity": ("p1", dict(gate="near_identity", gamma_r_init=0.0)),
    "p2 near_identity": ("p2", dict(gate="near_identity", gamma_r_init=0.0)),
    "p3 near_identity": ("p3", dict(gate="near_identity", gamma_r_init=0.0)),
    "p3c fixed λ0=0": ("p3c", dict(lambda_init=0.0, learn_lambda=False)),
    "p2 mix fixed λ0=0": ("p2", dict(gate="mix", lambda_init=0.0, learn_lambda=False)),
    "p4 γ_s0=γ_r0=0": ("p4", dict(gamma_s_init=0.0, gamma_r_init=0.0)),
}


@pytest.fixture(scope="module", params=LIBRARY_NETS)
def library_net(request):
    """A library ResNet with random weights and norm statistics (so that a dropped module would show), eval."""
    torch.manual_seed(0)
    net = LIBRARY_NETS[request.param]().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return net, x, net(x)


@pytest.mark.parametrize("case", IDENTITY_STARTS)
def test_convert_with_identity_start_gates_keeps_the_function_and_every_weight(library_net, case):
    net, x, before = library_net
    pattern, options = IDENTITY_STARTS[case]
    original = copy.deepcopy(net)
    kept = {id(t): t.clone() for t in [*original.parameters(), *original.buffers()]}
    converted = attnplace.convert(original, pattern, "se", **options).eval()
    with torch.no_grad():
        torch.testing.assert_close(converted(x), before, rtol=0, atol=0)
    tensors = dict([*converted.named_parameters(), *converted.named_buffers()])
    assert kept.keys() <= {id(t) for t in tensors.values()}  # every original tensor, the same objects...
    assert all(torch.equal(t, kept[id(t)]) for t in tensors.values() if id(t) in kept)  # ...and values
    new = [name for name, t in tensors.items() if id(t) not in kept]
    assert new and all(".attn" in n or ".gate" in n for n in new)
    assert all(isinstance(m, PATTERNS.get(pattern)) for m in converted.layer2)


def test_converted_blocks_compute_the_pattern_on_the_original_modules():
    torch.manual_seed(0)
    ref = randomize(torchvision.models.resnet18().layer2[0])  # 64 -> 128, stride 2, with a downsample
    block = attnplace.convert(nn.Sequential(copy.deepcopy(ref)), "p1", "cbam", gate="near_identity")[0].eval()
    with torch.no_grad():
        block.gate.gamma.fill_(GATE_VALUES["gamma"])
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        f = ref.bn2(ref.conv2(torch.relu(ref.bn1(ref.conv1(x)))))
        expected = torch.relu(ref.downsample(x) + f + GATE_VALUES["gamma"] * block.attn(f))
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_convert_stages_names_gates_and_errors():
    model = attnplace.convert(torchvision.models.resnet18(), "p4", "se", stages=[3, 4])
    assert {k.split(".")[0] for k in gate_values(model)} == {"layer3", "layer4"}
    assert "layer4.1.gamma_s" in gate_values(model) and type(model.layer1[0]) is PATTERNS.get("none")
    with pytest.raises(attnplace.UserError, match=r"stages=\[5\] do not exist in ResNet; valid: 1..4"):
        attnplace.convert(torchvision.models.resnet18(), "p1", stages=[5])
    with pytest.raises(attnplace.UserError, match="has no residual block to convert"):
        attnplace.convert(nn.Sequential(nn.Conv2d(3, 8, 3)), "p1")
    with pytest.raises(attnplace.UserError, match="unknown block option 'gamma'"):
        attnplace.convert(torchvision.models.resnet18(), "p1", gamma=0.0)


def test_se_resnet50_has_the_published_parameter_count():
    """Hu et al. 2018 (SENet): SE-ResNet-50 has ~28.1M parameters, ~2.5M more than ResNet-50's ~25.6M."""
    se = attnplace.convert(torchvision.models.resnet50(), "p1", "se")
    assert abs(count_params(se) / 28.1e6 - 1) < 0.01
    assert count_params(se) - count_params(torchvision.models.resnet50()) == pytest.approx(2.5e6, rel=0.02)


# --- library backbones in build_model and configs --------------------------------------------------------------

def test_library_backbones_build_with_shared_initial_weights_and_the_dataset_classes():
    none = build_model("torchvision:resnet18", "none", num_classes=10, seed=0)
    p4 = build_model("torchvision:resnet18", "p4", "cbam", num_classes=10, seed=0)
    a, b = none.state_dict(), p4.state_dict()
    assert a.keys() <= b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert none.fc.out_features == 10 and none(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    gray = build_model("timm:resnet18", "p1", num_classes=3, in_channels=1)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_weights_file_is_kept_and_the_classifier_reset(tmp_path):
    torch.manual_seed(5)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    model = build_model("torchvision:resnet18", "p1", "se", num_classes=10, weights=str(tmp_path / "r18.pt"))
    # The file's tensors under the converted names (convert keeps every tensor, tested above), classifier aside.
    expected = attnplace.convert(copy.deepcopy(source), "p1", "se").state_dict()
    kept = [k for k in expected if not (".attn" in k or ".gate" in k or k.startswith("fc."))]
    assert len(kept) == len(source.state_dict()) - 2
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in kept)
    assert model.fc.out_features == 10
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pt")
    with pytest.raises(attnplace.UserError, match=r"does not fit torchvision:resnet18: \d+ keys differ") as err:
        build_model("torchvision:resnet18", "p1", weights=str(tmp_path / "r34.pt"))
    assert "\n" not in str(err.value)
    with pytest.raises(attnplace.UserError, match="for torchvision:/timm: backbones, not resnet20"):
        build_model("resnet20", "p1", weights=str(tmp_path / "r18.pt"))


@pytest.mark.parametrize("overrides,message", [
    (["model.backbone=torchvision:resnet18", "model.weights=/no/such.pt"],
     "model.weights='/no/such.pt' is invalid; valid: an existing state_dict file"),
    (["model.weights=/no/such.pt"], "model.weights='/no/such.pt' is invalid; valid: null for a built-in backbone"),
    (["model.backbone=torchvision:resnet19"], "model.backbone='torchvision:resnet19' is invalid; valid: "
                                              "torchvision:NAME or timm:NAME"),
    (["model.backbone=torchvision:vgg11"], "model.backbone='torchvision:vgg11' is invalid (no residual blocks"),
    (["model.backbone=keras:resnet50"], "model.backbone='keras:resnet50' is invalid; valid: torchvision:NAME"),
    (["model.backbone=resnet21"], "model.backbone='resnet21' is invalid; valid: flat, preact_resnet164"),
    (["model.backbone=resnet164", "model.block=basic"],
     "model.block='basic' contradicts backbone 'resnet164', which is made of bottleneck blocks; valid: bottleneck"),
    (["model.block=resnext"], "model.block='resnext' is invalid; valid: basic, bottleneck, preact, preact_bottleneck"),
    (["model.backbone=timm:resnet26", "model.stages=[5]"], "model.stages=[5] is invalid; valid: a non-empty list of "
                                                           "timm:resnet26's stages 1..4"),
])
def test_bad_backbone_configs_are_one_line_errors(overrides, message):
    with pytest.raises(attnplace.UserError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_block_and_weights_stay_out_of_the_run_id_at_their_defaults(tmp_path):
    base = load_config(None, FIXED_TRAINER + ["model.pattern=p1"])
    assert base.run_id == load_config(None, FIXED_TRAINER + ["model.pattern=p1", "model.block=basic"]).run_id
    assert base.run_id == "resnet20-p1-se-s0-36e34710"  # as before these keys (test_gates.py's LEGACY)
    deep = load_config(None, FIXED_TRAINER + ["model.backbone=resnet164"])
    assert deep.run_id == load_config(None, FIXED_TRAINER + ["model.backbone=resnet164",
                                                             "model.block=bottleneck"]).run_id
    library = load_config(None, FIXED_TRAINER + ["model.backbone=torchvision:resnet18"])
    assert library.run_id.startswith("torchvision-resnet18-p1-se-s0-")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    weighted = load_config(None, FIXED_TRAINER + ["model.backbone=torchvision:resnet18",
                                                  f"model.weights={tmp_path / 'r18.pt'}"])
    assert weighted.run_id != library.run_id and weighted.model.weights == str(tmp_path / "r18.pt")
    model = build_network(weighted.model, num_classes=10)
    assert model.fc.out_features == 10


TINY = ["data.name=synthetic", "data.path=null", "data.val_size=50", "data.batch_size=50",
        "data.synthetic={num_train: 150, num_test: 50, image_size: 32}", "model.pattern=p4", "model.attention=se",
        "trainer.progress_bar=false", "optim.warmup_epochs=0", "trainer.max_epochs=1", *FIXED_TRAINER]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["torchvision:resnet18", "preact_resnet20"])
def test_fit_trains_and_logs_the_gates_of_new_backbones(tmp_path, backbone):
    from attnplace.train.fit import fit

    record = fit(load_config(None, [*TINY, f"model.backbone={backbone}", f"run_dir={tmp_path}"]))
    assert record["status"] == "completed"
    gates = record["history"][-1]["gates"]
    assert ("layer4.1.gamma_s" if backbone.startswith("torchvision") else "stage3.block2.gamma_s") in gates
    assert record["history"][-1]["masks"]
