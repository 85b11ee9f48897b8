"""Checkpoints: the same keys compiled or not, loadable without the data, written whole, and a run that
resumes (or restarts) by itself when its `last.ckpt` cannot be read or its folder cannot be written."""

import errno
import json
import os
import shutil
import signal

import lightning as L
import pytest
import torch

from attnplace.cli import main
from attnplace.train import checkpoint as checkpoint_io
from attnplace.train import fit as fit_module
from attnplace.train import recorder as record_module
from attnplace.run.config import load_config
from attnplace.train.fit import fit, make_datamodule, make_trainer
from attnplace.train.module import PlacementModule
from attnplace.train.recorder import RunRecorder
from conftest import comparable, logged_rows
from dataset_files import image_tree, write_tree
from tiny import TINY

# 150 training images in batches of 50: 3 steps an epoch.
SMALL = [*TINY, "data.val_size=50", "data.synthetic={num_train: 200, num_test: 50, image_size: 16}",
         "trainer.max_epochs=2"]


def small(run_dir, *overrides):
    return load_config(None, [*SMALL, f"run_dir={run_dir}", *overrides])


def test_state_dict_keys_are_the_same_compiled_or_not():
    """Compiling in place registers the network once: no `forward_fn.*` copy, no `_orig_mod.` prefix."""
    eager = PlacementModule(small("unused", "trainer.compile=false").to_dict(), 10, 3)
    compiled = PlacementModule(small("unused", "trainer.compile=true").to_dict(), 10, 3)
    compiled.configure_model()  # what Trainer.fit/test call; compiles lazily, so no compiled forward runs here
    assert compiled.model._compiled_call_impl is not None and eager.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert all(k.startswith("model.") for k in eager.state_dict())
    compiled.load_state_dict(eager.state_dict())  # strict, both ways
    eager.load_state_dict(compiled.state_dict())


def test_checkpoint_of_earlier_code_with_its_forward_fn_copy_loads(tmp_path):
    """Code before in-place compiling registered the network twice, as `model` and `forward_fn`: such a
    checkpoint resumes and loads with the copy dropped; a copy that is not the same tensor still fails."""
    fit(small(tmp_path / "run", "trainer.max_epochs=1"))
    path = tmp_path / "run" / "last.ckpt"
    saved = torch.load(path, weights_only=False)
    state = saved["state_dict"]
    state.update({"forward_fn." + k.removeprefix("model."): v.clone() for k, v in list(state.items())})
    torch.save(saved, path)
    loaded = PlacementModule.load_from_checkpoint(path)
    assert loaded.state_dict().keys() == {k for k in state if k.startswith("model.")}
    trainer, _, restored = train(small(tmp_path / "run", "trainer.max_epochs=2"), ckpt_path=path)
    assert restored.epoch == 1 and trainer.current_epoch == 2

    state["forward_fn.stem.0.weight"] = state["forward_fn.stem.0.weight"] + 1
    torch.save(saved, path)
    with pytest.raises(RuntimeError, match="Unexpected key.*forward_fn.stem.0.weight"):
        PlacementModule.load_from_checkpoint(path)


class LoadedState(L.Callback):
    """The epoch and the weights a fit starts from, right after Lightning restored the checkpoint."""

    def on_train_start(self, trainer, module):
        self.epoch = trainer.current_epoch
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def train(config, ckpt_path=None) -> tuple[L.Trainer, RunRecorder, LoadedState]:
    data = make_datamodule(config)
    data.setup("fit")
    module = PlacementModule(config.to_dict(), data.num_classes, data.in_channels)
    recorder, loaded = RunRecorder.for_run(config.resolved_run_dir(), config), LoadedState()
    trainer = make_trainer(config, config.resolved_run_dir(), recorder)
    trainer.callbacks.append(loaded)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, recorder, loaded


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(True, False), (False, True)])
def test_a_compiled_run_resumes_eager_and_the_reverse(tmp_path, first, then):
    """torch.compile on a CPU takes about a minute here, hence slow."""
    train(small(tmp_path / "a", f"trainer.compile={str(first).lower()}", "trainer.max_epochs=1"))
    saved = torch.load(tmp_path / "a" / "last.ckpt", weights_only=False)
    trainer, recorder, loaded = train(small(tmp_path / "b", f"trainer.compile={str(then).lower()}"),
                                      ckpt_path=tmp_path / "a" / "last.ckpt")
    assert loaded.epoch == 1 and trainer.current_epoch == 2  # the epoch continued, then the next one ran
    assert loaded.state.keys() == saved["state_dict"].keys()
    assert all(torch.equal(loaded.state[k], saved["state_dict"][k]) for k in loaded.state)
    assert [h["epoch"] for h in recorder.history] == [0, 1]  # the saved epoch's history came along


def test_trained_model_loads_and_evaluates_without_its_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNPLACE_CACHE", str(tmp_path / "cache"))
    data = write_tree(tmp_path / "images", image_tree(classes=("ant", "bee", "cat"), per_class=12, size=(16, 16)))
    modules, train_run = [], fit_module.train

    def keeping_the_module(trainer, module, *args, **kwargs):
        modules.append(module)
        return train_run(trainer, module, *args, **kwargs)

    monkeypatch.setattr(fit_module, "train", keeping_the_module)
    overrides = ["data.name=imagefolder", f"data.path={data}", "data.val_size=6", "data.batch_size=10",
                 "trainer.max_epochs=1", "trainer.progress_bar=false", "optim.warmup_epochs=0"]
    assert fit(load_config(None, [*overrides, f"run_dir={tmp_path / 'run'}"]))["status"] == "completed"
    shutil.rmtree(data)
    shutil.rmtree(tmp_path / "cache")

    loaded = PlacementModule.load_from_checkpoint(tmp_path / "run" / "last.ckpt").eval()
    (trained,) = modules
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained.eval()(x))
    assert loaded.config.data.path == str(data)

    assert main(["fit", *overrides, f"run_dir={tmp_path / 'again'}"]) == 2  # training still needs the data
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data.path='{data}' is invalid; valid: an existing imagefolder" in err


class CtrlC(L.Callback):
    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_ctrl_c_ends_the_process_and_leaves_the_run_to_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # Lightning would ignore SIGINT from then on
    make = fit_module.make_trainer

    def pressing_ctrl_c(*args):
        trainer = make(*args)
        trainer.callbacks.insert(0, CtrlC())  # before the recorder: epoch 1 ends unrecorded, as on a real Ctrl-C
        return trainer

    monkeypatch.setattr(fit_module, "make_trainer", pressing_ctrl_c)
    with pytest.raises(SystemExit):
        fit(small(tmp_path / "run", "trainer.gate_log_every_n_steps=1"))
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "running" and [h["epoch"] for h in record["history"]] == [0]
    monkeypatch.setattr(fit_module, "make_trainer", make)
    again = fit(small(tmp_path / "run", "trainer.gate_log_every_n_steps=1"))
    assert again["status"] == "completed" and [s["from_epoch"] for s in again["sessions"]] == [0, 1]
    # metrics.csv keeps the first session's epoch 0 (Lightning's writer would delete it), and epoch 1 once.
    rows = logged_rows(tmp_path / "run")
    val = [(int(r["epoch"]), float(r["val_acc"])) for r in rows if r["val_acc"]]
    assert val == [(h["epoch"], pytest.approx(h["val_acc"])) for h in again["history"]]
    steps = [(int(r["epoch"]), int(r["step"])) for r in rows if r["train_loss_step"]]
    assert [s for _, s in steps] == sorted({s for _, s in steps}) and {e for e, _ in steps} == {0, 1}
    assert [r["test_acc"] for r in rows if r["test_acc"]] == [str(again["metrics"]["test_acc"])]
    assert not (tmp_path / "run" / "metrics.earlier.csv").exists()


class Killed(BaseException):
    """A kill, as the process sees it: nothing of fit's own runs after it (no record is written)."""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return fit(small(tmp_path_factory.mktemp("whole"), "trainer.test_on=best_val"))


@pytest.mark.parametrize("test_on,resumed_from", [("best_val", 1), ("final", 0)])
def test_run_killed_while_writing_its_checkpoint_resumes_by_itself(tmp_path, monkeypatch, capsys, uninterrupted,
                                                                    test_on, resumed_from):
    """Killed while epoch 0's last.ckpt was written, the old way (in place): last.ckpt holds its first 1000
    bytes. The next run moves it aside, resumes from best.ckpt (epoch 0's end: it is saved before last.ckpt) if
    there is one, else starts over, and ends with the record of an uninterrupted run."""
    save = checkpoint_io.RunFolderCheckpointIO.save_checkpoint

    def killed_at_epoch_0(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path)
        if str(path).endswith("last.ckpt"):
            with open(path, "r+b") as f:
                f.truncate(1000)
            raise Killed
    config = small(tmp_path, f"trainer.test_on={test_on}")
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_io.RunFolderCheckpointIO, "save_checkpoint", killed_at_epoch_0)
        with pytest.raises(Killed):
            fit(config)
    assert json.loads((tmp_path / "record.json").read_text())["status"] == "running"
    capsys.readouterr()

    record = fit(config)
    assert record["status"] == "completed" and comparable(record["history"]) == comparable(uninterrupted["history"])
    if test_on == "best_val":
        assert record["metrics"]["test_acc"] == uninterrupted["metrics"]["test_acc"]
    assert (tmp_path / "last.ckpt.unreadable").stat().st_size == 1000
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 1
    session = record["sessions"][-1]
    assert session["from_epoch"] == resumed_from and len(record["sessions"]) == 2
    note = session["resume_note"]
    assert note.startswith("last.ckpt could not be read (RuntimeError: PytorchStreamReader failed reading zip")
    assert note.endswith("resuming from best.ckpt" if test_on == "best_val"
                         else "there is no best.ckpt; starting the run over")
    assert capsys.readouterr().err == f"{tmp_path}: {note}\n"


def fail_at_second_call(function, err: OSError):
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise err
        return function(*args, **kwargs)

    return failing


@pytest.mark.parametrize("where,err", [
    ("checkpoint", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
    ("record", OSError(errno.EROFS, os.strerror(errno.EROFS))),
])
def test_unwritable_run_folder_is_one_line_and_leaves_the_record(tmp_path, monkeypatch, capsys, uninterrupted,
                                                                 where, err):
    """A full disk (the 2nd checkpoint) or a read-only one (the 2nd record write): one line naming the folder
    and the OS error; the record as last written, still `running`; the same command then resumes the run."""
    command = ["fit", *SMALL, f"run_dir={tmp_path}"]
    module, name = (checkpoint_io, "write_synced") if where == "checkpoint" else (record_module, "write_json")
    with monkeypatch.context() as patch:
        patch.setattr(module, name, fail_at_second_call(getattr(module, name), err))
        assert main(command) == 2
    out = capsys.readouterr()
    assert out.err == f"attnplace: error: cannot write the run folder {tmp_path}: {err.strerror}\n"
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "running" and record["error"] is None
    assert len(record["history"]) == (2 if where == "checkpoint" else 1)  # the last write that went through
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind

    assert main(command) == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["status"] == "completed" and comparable(record["history"]) == comparable(uninterrupted["history"])
    assert record["sessions"][-1]["from_epoch"] == 1


def test_a_grid_worker_reports_an_unwritable_run_folder_and_the_cause_its_grid_shares(tmp_path, monkeypatch):
    """The worker's result names this run's folder; its cause names the folder's parent, where the grid's other
    run folders are, so that the grid sees its runs fail on one disk."""
    from attnplace.grid.worker import run_payload

    run_dir = tmp_path / "runs" / "a"
    config = load_config(None, [*SMALL, f"run_dir={run_dir}"])
    err = OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(record_module, "write_json", fail_at_second_call(record_module.write_json, err))
    monkeypatch.chdir(tmp_path)  # the worker moves to the payload's cwd; the test's own is restored after
    result = run_payload({"config": config.to_dict(), "grid": "g", "axes": {}, "cwd": str(tmp_path)})
    assert (result.status, result.user_error) == ("running", True)  # the record as last written
    assert result.error == f"cannot write the run folder {run_dir}: {err.strerror}"
    assert result.cause == f"cannot write the run folders in {tmp_path / 'runs'}: {err.strerror}"
    assert result.unwritable is True  # which stops a grid at this run, wherever it falls
