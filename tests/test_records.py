"""Which runs a report reads: bad records are named and left out, and a folder that is not one experiment
(mixed configs, repeated seeds, different base configs, mixed environments) is refused with one line."""

import json
import math
from pathlib import Path

import pytest
from record_fixtures import environment, record, write_raw, write_runs

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report.build import write_report
from attnplace.report.records import load_records


def test_load_records_skips_bad_files_and_reports_them(results):
    runs, problems = load_records(results)
    assert len(runs) == 15  # seeds 0-2 of 5 variants; seed 3's partial block is left out
    assert sorted(Path(p.split(":")[0]).parent.name for p in problems) == ["corrupt", "partial"]
    assert any("metrics" in p for p in problems)
    assert list(runs.columns[:7]) == ["id", "status", "error", "failed_epoch",
                                      "model.pattern", "model.attention", "seed"]
    p2_failed = runs.set_index("id").loc["resnet20-p2-se-s2"]
    assert (p2_failed["status"], p2_failed["error"], p2_failed["failed_epoch"]) == ("failed", "loss is NaN", 3)
    assert math.isnan(p2_failed["test_acc"])
    assert runs.set_index("id").loc["resnet20-p1-se-s1", "test_acc"] == 0.92
    assert "test_acc5" not in runs


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.update(status="done"), "'status'"),
    (lambda r: r["metrics"].update(test_acc=91.2), "fractions"),
    (lambda r: r["metrics"].update(params="big"), "metrics.params"),
    (lambda r: r.update(config=[1]), "'config'"),
    (lambda r: r.update(history=[{"epoch": 0, "gates": {"stage2.block0.lambda": "x"}}]), "history[0].gates"),
    (lambda r: r.update(history=[{"epoch": 0, "masks": {"stage1.block0.attn.gain": "x"}}]), "history[0].masks"),
    (lambda r: r.update(failed_epoch=True), "failed_epoch"),
])
def test_wrong_types_are_problems_not_crashes(tmp_path, mutate, reason):
    bad = record("p1", 0, 0.9)
    mutate(bad)
    path = write_raw(tmp_path, "bad", json.dumps(bad))
    write_runs(tmp_path, [record("none", 0, 0.9)])
    runs, problems = load_records(tmp_path)
    assert list(runs["id"]) == ["resnet20-none-se-s0"]
    assert len(problems) == 1 and problems[0].startswith(str(path)) and reason in problems[0]


def test_single_runs_without_axes_use_backbone_pattern_attention(tmp_path):
    write_runs(tmp_path, [record("p4", 0, 0.9, axes=(), attention="cbam"),
                          record("none", 0, 0.8, axes=(), backbone="resnet56")])
    runs, problems = load_records(tmp_path)
    assert problems == []
    assert list(runs.columns[4:8]) == ["model.backbone", "model.pattern", "model.attention", "seed"]
    assert sorted(runs["variant"]) == ["resnet20/p4/cbam", "resnet56/none"]


def test_missing_or_empty_results_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope"):
        load_records(tmp_path / "nope")
    write_raw(tmp_path, "corrupt", "{")
    with pytest.raises(UserError, match=str(tmp_path)):
        write_report(tmp_path)


def _with_epochs(rec: dict, epochs: int) -> dict:
    rec["config"]["trainer"] = {"max_epochs": epochs}
    rec["id"] += f"-e{epochs}"
    return rec


def test_a_variant_mixing_two_configs_is_refused_with_one_line(tmp_path):
    """A grid rerun with more epochs beside the old runs: averaging them would mix two experiments."""
    recs = [_with_epochs(record(p, s, 0.9), 10) for p in ("none", "p1") for s in (0, 1)]
    recs.append(_with_epochs(record("p1", 2, 0.95), 20))
    write_runs(tmp_path, recs)
    with pytest.raises(UserError) as err:
        load_records(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "variant p1/se mixes runs" in message
    assert "trainer.max_epochs (10 vs 20)" in message


def test_variants_from_different_base_configs_are_refused(tmp_path):
    recs = [_with_epochs(record("none", s, 0.9), 10) for s in (0, 1)]
    recs += [_with_epochs(record("p1", s, 0.9), 30) for s in (0, 1)]
    with pytest.raises(UserError, match=r"runs differ in trainer.max_epochs \(10 vs 30\), which is not an axis"):
        load_records(write_runs(tmp_path, recs))


def test_a_key_added_to_the_schema_later_reads_as_its_default(tmp_path):
    """A study resumed under newer code: the new runs' configs carry a key the first runs' lack, at its default."""
    recs = [record(p, s, 0.9) for p in ("none", "p1") for s in (0, 1)]
    for rec in recs[1::2]:
        rec["config"]["model"]["block"] = None  # `model.block` came later; None is its default
    runs, _ = load_records(write_runs(tmp_path, recs))
    assert len(runs) == 4
    recs[1]["config"]["model"]["block"] = "bottleneck"  # a value other than the default is a real difference
    with pytest.raises(UserError, match="model.block"):
        load_records(write_runs(tmp_path, recs))


def test_repeated_seeds_are_refused(tmp_path):
    again = record("p1", 1, 0.93)
    again["id"] += "-again"
    write_runs(tmp_path, [record("none", 1, 0.9), record("p1", 1, 0.92), again])
    with pytest.raises(UserError, match="variant p1/se has seed 1 more than once"):
        load_records(tmp_path)


def test_grid_json_run_list_leaves_earlier_runs_out(tmp_path):
    old = [_with_epochs(record(p, s, 0.5), 10) for p in ("none", "p1") for s in (0, 1)]
    new = [_with_epochs(record(p, s, 0.9 + 0.01 * s), 20) for p in ("none", "p1") for s in (0, 1)]
    write_runs(tmp_path, old + new)
    (tmp_path / "grid.json").write_text(json.dumps({"name": "g", "axes": {"model.pattern": [], "seed": []},
                                                     "runs": [r["id"] for r in new] + ["never-started"]}))
    report = write_report(tmp_path)
    assert sorted(report.runs["id"]) == sorted(r["id"] for r in new)
    assert report.summary.set_index("variant").loc["p1/se", "acc_mean"] == pytest.approx(0.905)
    assert report.notes[:2] == ["4 run folder(s) in runs/ are not in grid.json (an earlier configuration of the "
                                "grid) and are left out, e.g. resnet20-none-se-s0-e10",
                                "unfinished: 1 run(s) not started, 0 stopped mid-training (not counted); rerun the "
                                "grid command to finish them"]
    # The id of the run not started names no seed (`-s<seed>-<8 hex>`), so it holds up no block.
    assert report.notes[2] == "seed blocks in the tables: 2 (seed 0, 1: 2 not saying their hardware)"
    assert report.problems == []  # a run not started yet is pending, not a broken record
    assert "are not in grid.json" in (tmp_path / "summary.md").read_text()


def _environments(*envs):
    """none and p1 on seeds 0 and 1, the runs taking the given environments in turn."""
    runs = [(p, seed) for p in ("none", "p1") for seed in (0, 1)]
    return [record(p, seed, 0.9 + 0.01 * seed, environment=envs[i % len(envs)]) for i, (p, seed) in enumerate(runs)]


def test_mixed_precisions_are_refused_in_one_line(tmp_path, capsys):
    write_runs(tmp_path, _environments(environment("32-true"), environment("bf16-mixed")))
    with pytest.raises(UserError) as err:
        load_records(tmp_path)
    assert str(err.value) == (f"{tmp_path}: runs differ in precision (32-true: 2 run(s), bf16-mixed: 2 run(s)); a "
                              f"table never mixes device types, precisions or compile settings, nor hardware within a "
                              f"seed block: keep each in its own results folder, or pass --allow-mixed-environments to "
                              f"compare them anyway")
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    report = write_report(tmp_path, allow_mixed_environments=True)
    assert any(line.startswith("warning: runs differ in precision (32-true") and "--allow-mixed-environments" in line
               for line in report.caveats)
    assert "warning: runs differ in precision" in (tmp_path / "summary.md").read_text()


def test_device_types_and_compile_must_match_but_not_the_core_count(tmp_path):
    """`_environments` gives seed 0's block the first environment and seed 1's the second: device type and compile
    must agree across blocks, hardware only within one (tests/test_report_seed_blocks.py)."""
    cores = _environments(environment(device="cpu: 2 cores"), environment(device="cpu: 16 cores"))
    assert len(load_records(write_runs(tmp_path / "cores", cores))[0]) == 4  # one CPU model, threads fixed
    mixed = _environments(environment(device="cpu: 2 cores"), environment(device="cuda: NVIDIA H200", compile=True))
    with pytest.raises(UserError, match=r"runs differ in device \(cpu: 2 run\(s\), cuda: 2 run\(s\)\), "
                                        r"compile \(False: 2 run\(s\), True: 2 run\(s\)\);"):
        load_records(write_runs(tmp_path / "mixed", mixed))
    gpus = _environments(environment(device="cuda: NVIDIA H200"), environment(device="cuda: NVIDIA A100"))
    assert load_records(write_runs(tmp_path / "gpus", gpus))[0]["hardware"].tolist() == \
        ["NVIDIA H200", "NVIDIA A100"] * 2  # one GPU model per seed block


def test_a_seed_block_on_two_cpu_models_is_refused_and_older_records_without_one_do_not_count(tmp_path):
    """fp32 on an AMD EPYC (AVX2) and on an Intel Xeon (AVX512) trains the same config to other numbers, so a block,
    whose variants the table pairs, keeps to one of them."""
    xeon = "Intel(R) Xeon(R) Processor, torch kernels AVX512"
    mixed = _environments(environment(), environment(cpu=xeon), environment(cpu=xeon), environment())
    with pytest.raises(UserError, match=r"runs differ in hardware within seed block 0 \(AMD EPYC, torch kernels "
                                        r"AVX2: 1 run\(s\), Intel\(R\) Xeon\(R\) Processor, torch kernels AVX512: "
                                        r"1 run\(s\)\) and 1 more block\(s\);"):
        load_records(write_runs(tmp_path / "mixed", mixed))
    unknown = environment()
    del unknown["cpu"]
    runs, _ = load_records(write_runs(tmp_path / "older", _environments(environment(), unknown)))
    assert runs["hardware"].fillna("not said").tolist() == ["AMD EPYC, torch kernels AVX2", "not said"] * 2


def test_a_precision_axis_is_not_mixing_each_precision_is_its_own_group(tmp_path):
    """A grid that varies `trainer.precision` on purpose: each precision is a group with its own baseline, so no
    comparison mixes the two, and the report neither refuses nor warns."""
    recs = []
    for precision in ("32-true", "bf16-mixed"):
        for pattern, seed in [(p, s) for p in ("none", "p1") for s in (0, 1)]:
            rec = record(pattern, seed, 0.9 + 0.01 * seed + (0.02 if pattern == "p1" else 0.0),
                         environment=environment(precision))
            rec["id"] += f"-{precision}"
            rec["config"]["trainer"] = {"precision": precision}
            rec["axes"]["trainer.precision"] = precision
            recs.append(rec)
    write_runs(tmp_path, recs, {"model.pattern": ["none", "p1"], "model.attention": ["se"], "seed": [0, 1],
                                "trainer.precision": ["32-true", "bf16-mixed"]})
    report = write_report(tmp_path)
    assert not any("differ in" in line for line in report.caveats)
    summary = report.summary.set_index("variant")
    assert summary["baseline"].sum() == 2
    assert summary.loc[~summary["baseline"], "diff"].tolist() == pytest.approx([0.02, 0.02])
    mixed = [{**r, "environment": environment("bf16-mixed" if r is recs[0] else r["environment"]["precision"])}
             for r in recs]  # one fp32 run that trained in bf16: not the axis's doing
    with pytest.raises(UserError, match=r"runs differ in precision \(bf16-mixed: 5 run\(s\), 32-true: 3 run"):
        load_records(write_runs(tmp_path / "odd", mixed, json.loads((tmp_path / "grid.json").read_text())["axes"]))


def test_runs_without_an_environment_do_not_count(tmp_path):
    """A run that failed before training has no environment; older records without `compile` ran eager."""
    old = environment()
    del old["compile"], old["channels_last"]
    recs = _environments(environment(), old) + [record("p2", s, None, status="failed", environment={}) for s in (0, 1)]
    runs, _ = load_records(write_runs(tmp_path, recs))
    assert len(runs) == 6 and runs["compile"].tolist()[:4] == [False] * 4
