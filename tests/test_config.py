"""The run config: one-line errors for bad keys and values (before any data is read), canonical run ids,
YAML plus key=value overrides, and the per-device trainer preset."""

import json
from pathlib import Path

import pytest

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.models import ModelOptions, build_model
from attnplace.run.config import Config, canonical, load_config
from attnplace.run.config_io import from_dict, merge, parse_override
from attnplace.run.environment import cpu_has_bf16
from attnplace.run.sections import TrainerConfig


FIXED_VALUES = {"precision": "32-true", "channels_last": True, "compile": False}
FIXED = TrainerConfig(**FIXED_VALUES)


@pytest.mark.parametrize("overrides,message", [
    (["model.pattern=p9"], "model.pattern='p9' is invalid; valid: none, p1, p2, p3, p3c, p4, skip_only"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 is invalid; valid: > 0"),
    (["data.name=imagefolder", "data.path=/no/such/dir"], "data.path='/no/such/dir' is invalid; valid: an existing"),
    (["data.name=mnist"], "data.name='mnist' is invalid; valid: cifar10, cifar100, fashion-mnist, imagefolder"),
    (["model.patern=p1"], "unknown key 'model.patern'; valid: model.attention"),
    (["trainer.max_epochs=ten"], "trainer.max_epochs: expected int, got 'ten'"),
    (["model.stages=[1, x]"], "model.stages: expected int, got 'x'"),
    (["trainer.precision=fp8"], "trainer.precision='fp8' is invalid; valid: 32-true, bf16-mixed, 16-mixed"),
    (["model.lambda_init=2"], "model.lambda_init=2.0 is invalid; valid: a mixing weight in [0, 1]"),
    (["model.gamma_r_init=.nan"], "model.gamma_r_init=nan is invalid; valid: a finite number"),
    (["model.gamma_s_init=.inf"], "model.gamma_s_init=inf is invalid; valid: a finite number"),
    (["model.gate=soft"], "model.gate='soft' is invalid; valid: mask, mix, near_identity"),
    (["model.skip_gate=mix"], "model.skip_gate='mix' is invalid; valid: near_identity, mask"),
    (["model.pattern=p4", "model.p4_gate=direct", "model.gate=mix"], "model.p4_gate='direct' is p4 with gate=mask"),
    (["lr=0.1"], "unknown key 'lr'; valid: name, seed, model"),
    (["optim.lr"], "override 'optim.lr' is not key=value"),
    (["model.stages=[4]"], "model.stages=[4] is invalid; valid: a non-empty list of resnet20's stages 1..3"),
    (["model.backbone=flat", "model.stages=[0, 1]"],
     "model.stages=[0, 1] is invalid; valid: a non-empty list of flat's stages 1..2"),
    (["optim.momentum=0"], "optim.momentum=0.0 is invalid; valid: in (0, 1) with nesterov=true"),
    (["optim.gate_lr_scale=0"], "optim.gate_lr_scale=0.0 is invalid; valid: > 0"),
    (["model.p4_gate=soft"], "model.p4_gate='soft' is invalid; valid: near_identity, direct"),
    (["trainer.test_on=best"], "trainer.test_on='best' is invalid; valid: final, best_val"),
    (["trainer.test_on=best_val", "data.val_size=0"], "trainer.test_on='best_val' is invalid; valid: final when"),
])
def test_bad_configs_are_rejected_with_one_line(overrides, message):
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_reports_bad_config_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  pattern: p9\n")
    assert main(["fit", str(bad), "trainer.max_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "attnplace: error: model.pattern='p9' is invalid; valid: none, p1, p2, p3, p3c, p4, skip_only"
    assert main(["fit", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml' not found" in capsys.readouterr().err
    assert main(["fit", "model.pattern"]) == 2  # a key without its value is no config file
    assert capsys.readouterr().err.strip() == ("attnplace: error: 'model.pattern' is neither a config file (.yaml) "
                                               "nor key=value (e.g. model.pattern=p4)")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    assert main(["fit", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_config_errors_come_before_any_data_is_read(tmp_path, capsys):
    """Stages out of range and Nesterov without momentum fail at the config, not at a dataset or in torch."""
    for override in ("model.stages=[4]", "optim.momentum=0"):
        assert main(["fit", "data.name=cifar10", f"data.path={tmp_path / 'nothing-here'}", override]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and override.split("=")[0] in err and "download" not in err
    assert not list(tmp_path.iterdir())


def test_run_ids_are_stable_and_canonical():
    a = load_config(None, ["model.pattern=none", "model.attention=se", "model.gamma_s_init=0.5"])
    b = load_config(None, ["model.pattern=none", "model.attention=cbam", "output_dir=elsewhere"])
    assert a.run_id == b.run_id and a.model.attention == "none" and a.model.gamma_s_init == 0.0
    assert a.run_id.startswith("resnet20-none-none-s0-")
    c = load_config(None, ["model.pattern=p4", "model.gamma_s_init=0.5"])
    assert c.run_id != load_config(None, ["model.pattern=p4"]).run_id
    assert load_config(None, ["seed=1"]).run_id != load_config(None, ["seed=2"]).run_id


def test_any_config_gives_the_id_of_the_run_it_describes():
    """`run_id` is the canonical config's: a config built by hand, with unset gates and options its pattern
    ignores, names the run it describes."""
    by_hand = Config(model=ModelOptions(pattern="p3", gate="mix", gamma_s_init=0.5), trainer=FIXED)
    assert by_hand.run_id == canonical(by_hand).run_id == load_config(None, [
        "model.pattern=p3c", *(f"trainer.{k}={v}" for k, v in FIXED_VALUES.items())]).run_id
    assert by_hand.run_id.startswith("resnet20-p3c-se-s0-")


COMMITTED_RECORDS = sorted((Path(__file__).parents[1] / "results").glob("*/runs/*/record.json"))


def test_every_committed_record_s_config_gives_its_id():
    """A committed record's config, read back by hand, gives the id the run was recorded under (older records
    lack later keys; their defaults must keep the id)."""
    assert len(COMMITTED_RECORDS) > 100
    for path in COMMITTED_RECORDS:
        record = json.loads(path.read_text())
        assert from_dict(Config, record["config"]).run_id == record["id"], path


def test_one_check_states_a_bad_option_to_a_config_and_to_build_model():
    """Each option is checked once, where it is defined; a config names its dotted key, `build_model` its
    argument."""
    with pytest.raises(UserError, match=r"^model.gate='soft' is invalid; valid: mask, mix, near_identity$"):
        load_config(None, ["model.gate=soft"])
    with pytest.raises(UserError, match=r"^unknown gate 'soft'; valid: mask, mix, near_identity$"):
        build_model(gate="soft")
    with pytest.raises(UserError, match=r"^model.stages=\[4\] is invalid; valid: a non-empty list of resnet20's"):
        load_config(None, ["model.stages=[4]"])
    with pytest.raises(UserError, match=r"^stages=\[4\] do not exist in resnet20; valid: 1..3$"):
        build_model(stages=[4])


@pytest.mark.parametrize("overrides,scaled", [
    (["model.pattern=p1"], False), (["model.pattern=p3c"], True),
    (["model.pattern=p3c", "model.learn_lambda=false"], False), (["model.pattern=p4"], True),
    (["model.pattern=p4", "model.learn_gamma_s=false", "model.p4_gate=direct"], False),
])
def test_gate_lr_scale_is_kept_only_where_gates_learn(overrides, scaled):
    config = load_config(None, [*overrides, "optim.gate_lr_scale=10"])
    assert config.optim.gate_lr_scale == (10 if scaled else 1)


def test_p4_direct_drops_gamma_r_options_from_the_run():
    a = load_config(None, ["model.pattern=p4", "model.p4_gate=direct", "model.gamma_r_init=0.5"])
    b = load_config(None, ["model.pattern=p4", "model.p4_gate=direct"])
    assert a.run_id == b.run_id and a.model.gamma_r_init == 0.1


def test_yaml_config_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {pattern: p3c, stages: [2, 3]}\noptim: {lr: 0.05}\n")
    config = load_config(path, ["optim.lr=0.2", "model.attention=eca"])
    assert (config.model.pattern, config.model.stages, config.optim.lr, config.model.attention) == \
        ("p3c", (2, 3), 0.2, "eca")


def test_presets_resolve_auto_settings_per_device_and_cpu_capability():
    auto = from_dict(Config, {}).trainer
    assert (auto.precision, auto.channels_last, auto.compile) == ("auto", None, None)
    plain_cpu, bf16_cpu, gpu = auto.resolved("cpu", bf16_cpu=False), auto.resolved("cpu", bf16_cpu=True), \
        auto.resolved("cuda")
    assert (plain_cpu.precision, plain_cpu.channels_last, plain_cpu.compile) == ("32-true", True, False)
    assert (bf16_cpu.precision, bf16_cpu.channels_last, bf16_cpu.compile) == ("bf16-mixed", True, False)
    assert (gpu.precision, gpu.channels_last, gpu.compile) == ("bf16-mixed", True, True)
    explicit = load_config(None, ["trainer.precision=32-true", "trainer.compile=false"]).trainer.resolved("cuda")
    assert (explicit.precision, explicit.channels_last, explicit.compile) == ("32-true", True, False)
    assert load_config(None, ["trainer.accelerator=cpu"]).trainer.device() == "cpu"
    # The config a run is recorded (and identified) by holds what auto resolved to on this machine.
    here = load_config(None, []).trainer  # CIFAR-10's 50,000 training images less 5,000 validation, 30 epochs
    assert here == auto.resolved(train_images=45_000) and "auto" not in (here.precision, here.channels_last,
                                                                           here.compile)


@pytest.mark.parametrize("overrides,bf16_cpu,compiled", [
    (["data.train_subset=10000", "trainer.max_epochs=10"], True, True),  # the committed CPU regime: 100,000 images
    (["data.train_subset=10000", "trainer.max_epochs=10"], False, False),  # fp32 CPU: see compile_pays
    (["data.train_subset=10000", "trainer.max_epochs=10", "trainer.precision=32-true"], True, False),
    (["data.train_subset=5000", "trainer.max_epochs=3"], True, False),  # the quickstart: 15,000 images
    (["data.name=synthetic", "data.path=null", "trainer.max_epochs=3"], True, False),  # smoke-sized
    (["data.name=imagefolder", "data.path=.", "trainer.max_epochs=30"], True, False),  # size unknown: eager
    (["data.name=cifar100", "data.val_size=0", "trainer.max_epochs=1"], True, True),  # 50,000 images
    (["data.train_subset=10000", "trainer.max_epochs=10", "trainer.compile=false"], True, False),  # named: kept
])
def test_the_cpu_preset_compiles_a_bf16_run_long_enough_to_pay_as_its_config_tells(overrides, bf16_cpu, compiled):
    """The rule reads the config and the CPU's flags, nothing else (not the compile cache): the same command gets
    the same run id, cold cache or warm."""
    config = from_dict(Config, merge({}, dict(parse_override(o) for o in overrides)))
    resolved = config.trainer.resolved("cpu", bf16_cpu=bf16_cpu, train_images=config.data.train_images())
    assert resolved.compile is compiled


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_has_bf16(cpuinfo) is expected
    assert cpu_has_bf16(tmp_path / "missing") is False


def test_runs_differing_only_in_resolved_precision_get_different_ids(monkeypatch):
    from attnplace.run import sections

    ids = {}
    for bf16 in (False, True):
        monkeypatch.setattr(sections, "cpu_has_bf16", lambda b=bf16: b)
        config = load_config(None, ["model.pattern=p2", "trainer.accelerator=cpu"])
        ids[config.trainer.precision] = config.run_id
    assert set(ids) == {"32-true", "bf16-mixed"} and ids["32-true"] != ids["bf16-mixed"]