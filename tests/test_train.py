"""Training: config validation, fit on real data, resume after SIGKILL, NaN runs, W&B offline. The optimizer and
its lr schedules are in test_schedules.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import attnplace
from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.run.config import load_config
from attnplace.train.fit import fit, make_trainer
from attnplace.train.recorder import RunRecorder
from attnplace.train.module import PlacementModule
from attnplace.run.provenance import code_version, git_commit, source_hash
from conftest import SHARED_TARBALL, comparable, logged_rows, wandb_records
from tiny import TINY


def test_best_val_tests_the_best_validation_epoch(tmp_path):
    config = load_config(None, [*TINY, "model.pattern=p1", "trainer.max_epochs=3", "trainer.test_on=best_val",
                                f"run_dir={tmp_path}"])
    record = fit(config)
    val = [h["val_acc"] for h in record["history"]]
    assert record["metrics"]["tested_epoch"] == val.index(max(val))
    best = torch.load(tmp_path / "best.ckpt", weights_only=False)
    assert best["epoch"] == record["metrics"]["tested_epoch"]  # saved during that epoch's validation
    # Testing from best.ckpt restores every callback's state from it: the record still holds all 3 epochs, and
    # its val_acc is the last epoch's (here the best is epoch 1 of 0-2).
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2] and record["metrics"]["val_acc"] == val[-1]
    assert record["metrics"]["tested_epoch"] < 2


def test_the_best_checkpoint_saves_before_last_so_last_carries_its_state(tmp_path):
    """Lightning runs the two checkpoint callbacks in list order at each epoch end, and last.ckpt holds the best
    callback's state (its best score so far): saved after it, a run resumed from last.ckpt compares its next
    epoch with this epoch's best, as an uninterrupted run does, not the epoch before's."""
    config = load_config(None, [*TINY, "trainer.test_on=best_val", f"run_dir={tmp_path}"])
    trainer = make_trainer(config, tmp_path, RunRecorder.for_run(tmp_path, config))
    assert [c.filename for c in trainer.checkpoint_callbacks] == ["best", "last"]


def test_label_smoothing_shapes_the_training_loss_only():
    """With label_smoothing 0.2 the training loss is smoothed; validation reports the plain cross-entropy."""
    config = load_config(None, [*TINY, "optim.label_smoothing=0.2"])
    module = PlacementModule(config.to_dict(), 10, 3)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    logged = {}
    module.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    module.eval()
    with torch.no_grad():
        logits = module(x)
        module.validation_step((x, y), 0)
    assert float(logged["val_loss"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    assert float(module.criterion(logits, y)) != pytest.approx(float(logged["val_loss"]))


def test_fit_on_shared_cifar10_learns_and_moves_gammas(tmp_path, monkeypatch, shared_cifar):
    monkeypatch.setenv("ATTNPLACE_CACHE", str(shared_cifar[1]))  # decoded once per session, not beside the data
    config = load_config(None, [
        "data.name=imagefolder", f"data.path={SHARED_TARBALL}", "data.train_subset=4000", "data.val_size=1000",
        "model.pattern=p4", "model.attention=se", "trainer.max_epochs=2", "optim.lr=0.05", "optim.warmup_epochs=0",
        "trainer.progress_bar=false", f"output_dir={tmp_path}"])
    record = fit(config)
    assert record["status"] == "completed"
    metrics = record["metrics"]
    assert metrics["test_acc"] > 0.25, metrics  # chance is 0.10, on all 10,000 test images
    assert metrics["params"] == 278_612 and metrics["flops"] == 81_637_120
    assert metrics["train_images_per_s"] > 0 and len(record["history"]) == 2
    # Throughput leaves out the warm-up epoch: it is the second epoch's, and the first is reported apart.
    second = record["history"][1]
    assert metrics["train_images_per_s"] == pytest.approx(second["train_images"] / second["train_seconds"])
    assert metrics["first_epoch_images_per_s"] > 0 and second["train_images"] == 4000 // 128 * 128
    assert metrics["tested_epoch"] == 1 and record["config"]["trainer"]["test_on"] == "final"
    initial = record["initial_gates"]  # γ_s₀ = 0 and γ_r₀ = 0.1 in all 9 blocks
    assert sorted(k.rsplit(".", 1)[1] for k in initial) == ["gamma_r"] * 9 + ["gamma_s"] * 9
    assert all(v == (0.0 if k.endswith("gamma_s") else pytest.approx(0.1)) for k, v in initial.items())
    gammas_s = {k: v for k, v in record["history"][-1]["gates"].items() if k.endswith("gamma_s")}
    assert len(gammas_s) == 9 and max(abs(v) for v in gammas_s.values()) > 1e-3  # started at exactly 0
    saved = json.loads((config.resolved_run_dir() / "record.json").read_text())
    assert saved["metrics"]["test_acc"] == metrics["test_acc"] and saved["config"]["model"]["pattern"] == "p4"


def test_a_trained_run_that_fails_to_start_keeps_its_epochs_and_hardware(tmp_path):
    """An epoch trained, then the data goes missing: the record says why it failed (before training, so a rerun
    tries again), and keeps its history, environment and data fingerprint, which its last.ckpt and its seed
    block's hardware binding rest on."""
    config = load_config(None, [*TINY, "trainer.max_epochs=1", f"run_dir={tmp_path / 'run'}"])
    trained = fit(config)
    record_path = tmp_path / "run" / "record.json"
    running = {**json.loads(record_path.read_text()), "status": "running"}  # as if killed before its test
    record_path.write_text(json.dumps(running))
    (tmp_path / "empty" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(UserError, match="is missing"):
        fit(load_config(None, [*(o for o in TINY if not o.startswith(("data.name", "data.path", "data.synthetic"))),
                               "trainer.max_epochs=1", f"run_dir={tmp_path / 'run'}", "data.name=cifar10",
                               f"data.path={tmp_path / 'empty'}"]))
    failed = json.loads(record_path.read_text())
    assert (failed["status"], failed["failed_epoch"]) == ("failed", None) and "is missing" in failed["error"]
    for key in ("history", "environment", "data_fingerprint", "initial_gates"):
        assert failed[key] == trained[key], key
    assert len(failed["sessions"]) == 2


def _fit_command(run_dir: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "attnplace.cli", "fit", *TINY, "model.pattern=p4", f"trainer.max_epochs={epochs}",
            f"run_dir={run_dir}", "trainer.threads=1"]


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    epochs = 6
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run(_fit_command(whole, epochs), check=True, capture_output=True)

    proc = subprocess.Popen(_fit_command(resumed, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record_file = resumed / "record.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once two epochs are checkpointed: mid-way through the third
        record = json.loads(record_file.read_text()) if record_file.exists() else {"history": []}
        if len(record["history"]) >= 2 and (resumed / "last.ckpt").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads(record_file.read_text())
    assert killed["status"] == "running" and len(killed["history"]) < epochs

    subprocess.run(_fit_command(resumed, epochs), check=True, capture_output=True)
    a, b = (json.loads((d / "record.json").read_text()) for d in (whole, resumed))
    assert b["status"] == "completed" and len(b["history"]) == epochs
    assert comparable(a["history"]) == comparable(b["history"])
    assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"]
    # metrics.csv too: the killed session's epochs stay, and the epoch the kill cut is logged once
    la, lb = ([(r["epoch"], r["val_acc"]) for r in logged_rows(d) if r["val_acc"]] for d in (whole, resumed))
    assert la == lb and len(la) == epochs
    wa, wb = (torch.load(d / "last.ckpt", weights_only=False)["state_dict"] for d in (whole, resumed))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_fit_prints_the_result_and_no_library_remarks(tmp_path):
    """A fresh process, as a user runs it: Lightning's banner, tips and warnings about our own use of it
    (LeafSpec, log interval) are filtered; what is left is the result line."""
    done = subprocess.run([sys.executable, "-m", "attnplace.cli", "fit", *TINY, "trainer.max_epochs=1",
                           f"run_dir={tmp_path}", "trainer.threads=1"], capture_output=True, text=True, check=True)
    assert done.stderr == ""
    first, *wrapped = done.stdout.splitlines()  # the result line, wrapped at 120 columns
    line = " ".join([first, *(w.strip() for w in wrapped)])
    assert all(w.startswith("  ") for w in wrapped) and max(map(len, done.stdout.splitlines())) <= 120
    assert line.startswith("resnet20-p1-se-s0-") and "test acc" in line and line.endswith("record.json")


def test_nan_run_is_recorded_as_failed(tmp_path, capsys):
    code = main(["fit", *TINY, "model.pattern=p1", "optim.lr=1e30", "trainer.max_epochs=3", f"run_dir={tmp_path}"])
    assert code == 1
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "failed" and record["failed_epoch"] == 0
    assert record["error"].startswith(("loss became nan at epoch 0", "loss became inf at epoch 0"))
    assert "failed (loss became" in capsys.readouterr().out


def test_completed_run_is_not_repeated(tmp_path):
    config = load_config(None, [*TINY, "trainer.max_epochs=1", f"run_dir={tmp_path}"])
    first = fit(config)
    mtime = (tmp_path / "record.json").stat().st_mtime_ns
    assert fit(config) == first and (tmp_path / "record.json").stat().st_mtime_ns == mtime
    assert [s["code"] for s in first["sessions"]] == [code_version()]
    assert first["environment"]["cpu"] and first["environment"]["device"] == f"cpu: {os.cpu_count()} cores"


def test_wandb_offline_run_holds_gate_curves_and_accuracy(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config(None, [*TINY, "model.pattern=p3c", "trainer.max_epochs=2", "trainer.gate_log_every_n_steps=2",
                                "logger=wandb", "name=wandb-test", f"run_dir={tmp_path}"])
    record = fit(config, axes={"model.pattern": "p3c", "seed": 0})
    records = list(wandb_records(tmp_path))
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    lam = [h["gate/stage2.block0.lambda"] for h in history if "gate/stage2.block0.lambda" in h]
    assert len(lam) >= 4 and lam[0] == pytest.approx(0.1, abs=0.01)  # a curve, starting near λ₀
    summary = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
               for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert summary["test_acc"] == pytest.approx(record["metrics"]["test_acc"])
    for key in ("best_val_acc", "train_images_per_s", "params", "flops"):  # the final metrics, for run tables
        assert summary[key] == pytest.approx(record["metrics"][key]), key
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_group == "wandb-test" and run.job_type == "p3c" and set(run.tags) >= {"se", "resnet20", "seed0"}
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["grid_axes"] == {"model.pattern": "p3c", "seed": 0}


def test_gpu_asked_for_on_a_cpu_machine_is_a_one_line_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["fit", *TINY, "trainer.accelerator=gpu", f"run_dir={tmp_path}"]) == 2
    assert "trainer.accelerator='gpu' but no CUDA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "record.json").exists()


@pytest.mark.slow
def test_readme_quickstart_config_trains(tmp_path, monkeypatch, shared_cifar):
    """The README's `attnplace fit configs/quickstart.yaml`, end to end (a few CPU minutes)."""
    monkeypatch.setenv("ATTNPLACE_CACHE", str(shared_cifar[1]))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the config's data path is relative to the repo
    assert main(["fit", "configs/quickstart.yaml", f"output_dir={tmp_path}", "trainer.progress_bar=false"]) == 0
    (record_file,) = tmp_path.glob("quickstart/runs/*/record.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "completed" and record["metrics"]["test_acc"] > 0.3


SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


def test_training_steps_make_no_host_sync(tmp_path, monkeypatch):
    """Between NaN checks and log steps, a training step reads nothing back from the device: no .item(),
    bool(), float(), ... on a tensor (each is a host-device sync on a GPU). Counted over whole steps
    1-7 of 12, Lightning's loop included; a NaN check every 2 steps adds exactly one bool() each."""
    import lightning as L

    from attnplace.train.fit import make_datamodule, make_trainer
    from attnplace.train.recorder import RunRecorder

    calls = []

    class Window(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            counting[0] = 1 <= batch_idx < 8

    counting = [False]
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if counting[0]:
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def count(every: int) -> list[str]:
        calls.clear()
        config = load_config(None, [*TINY, "model.pattern=p4", "trainer.max_epochs=1", "data.batch_size=40",
                                    f"trainer.nan_check_every_n_steps={every}", "trainer.gate_log_every_n_steps=1000",
                                    "data.val_size=0", f"run_dir={tmp_path / str(every)}"])
        data = make_datamodule(config)
        data.setup("fit")
        module = PlacementModule(config.to_dict(), data.num_classes, data.in_channels)
        trainer = make_trainer(config, config.resolved_run_dir(), RunRecorder(tmp_path / f"{every}.json", {}))
        trainer.callbacks.append(Window())
        trainer.fit(module, datamodule=data)
        counting[0] = False
        return list(calls)

    assert count(every=1000) == []
    assert count(every=2) == ["__bool__"] * 4  # after steps 2, 4, 6 and 8 (global_step + 1)


def test_diverged_run_stops_at_the_epoch_end_check_before_any_checkpoint(tmp_path):
    """With no check inside the epoch, the NaN is caught at its last step: the epoch never ends, so neither
    the history nor last.ckpt ever holds the NaN weights."""
    config = load_config(None, [*TINY, "model.pattern=p1", "optim.lr=1e30", "trainer.max_epochs=2",
                                "trainer.nan_check_every_n_steps=1000", f"run_dir={tmp_path}"])
    record = fit(config)
    assert record["status"] == "failed" and record["failed_epoch"] == 0 and record["history"] == []
    assert record["error"].startswith(("loss became nan at epoch 0", "loss became inf at epoch 0"))
    assert record["error"].endswith("(seen at step 9)")  # 500 training images / 50: steps 0..9
    assert not (tmp_path / "last.ckpt").exists()


def test_package_imports_and_fits_without_wandb_and_ray(tmp_path):
    """A bare GPU machine may lack the optional loggers and launchers: a CSV-logged fit must not need them."""
    script = ("import sys; sys.modules['wandb'] = None; sys.modules['ray'] = None\n"
              "import attnplace.cli, attnplace.grid.runner, attnplace.grid.worker, attnplace.report.build\n"
              "from attnplace.cli import main\n"
              f"sys.exit(main(['fit', *{TINY!r}, 'trainer.max_epochs=1', 'run_dir={tmp_path}']))\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "completed"


def test_records_name_the_code_that_trained_them(tmp_path):
    package = Path(attnplace.__file__).resolve().parent
    copy = shutil.copytree(package, tmp_path / "attnplace", ignore=shutil.ignore_patterns("__pycache__"))
    assert source_hash(copy) == code_version()["source_sha256"]  # the same code outside git: the same hash
    assert git_commit(copy) is None
    (copy / "models" / "blocks.py").write_text((copy / "models" / "blocks.py").read_text() + "# changed\n")
    assert source_hash(copy) != code_version()["source_sha256"]
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short=12", "HEAD"], check=False,
                          capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (CI's is): the record names the commit
        assert code_version()["git"].removesuffix("+dirty") == head.stdout.strip()
