"""Train one variant end to end: data, model, loggers, checkpoints, resume, and the run record."""

import os
import re
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import WandbLogger

from ..atomic import folder_errors
from ..data import AttnDataModule
from ..errors import UserError
from ..models import count_flops, count_params, gate_values
from ..run.config import CanonicalConfig, Config
from ..run.environment import hardware_here
from ..run.record import error_line, read_record
from .checkpoint import RunFolderCheckpointIO, resume_point
from .compiling import (CacheFault, cache_fault, cache_identity, compile_cache_dir, compile_summary, forget_compiled,
                        start_counting, use_compile_cache)
from .csv_log import EarlierRows, csv_logger
from .module import DivergedError, PlacementModule
from .recorder import RunRecorder, environment
from .telemetry import MaskTelemetry


def fit(config: CanonicalConfig, *, grid: str | None = None, axes: dict | None = None) -> dict:
    """Run `config` in its run directory and return its record. A completed run is not repeated; an
    interrupted one resumes (`resume_checkpoint`); a diverged one is recorded as `failed`. The config is taken
    and passed down as it is: canonical (`load_config`, a grid's runs). A compile cache that cannot be read is
    moved aside, said in one line, and the run goes on, compiling afresh (`CacheFault`)."""
    if not isinstance(config, CanonicalConfig):
        raise TypeError(f"fit takes a canonical config (load_config, canonical), not a {type(config).__name__}")
    try:
        return fit_once(config, grid, axes, trust_cache=False)
    except CacheFault as fault:
        print(f"{config.resolved_run_dir()}: {fault}", file=sys.stderr, flush=True)
        forget_compiled()
        return fit_once(config, grid, axes, trust_cache=True, note=str(fault))


def fit_once(config: CanonicalConfig, grid: str | None, axes: dict | None, trust_cache: bool,
             note: str | None = None) -> dict:
    """`fit`, once: unless `trust_cache`, a compile failure with a cache found on disk raises `CacheFault`."""
    run_dir = config.resolved_run_dir()
    previous = read_record(run_dir / "record.json")
    if previous and previous.get("status") == "completed":
        return previous
    check_accelerator(config)
    # A run folder that cannot be written ends the run with one line. That is no failure of the run's own, so
    # no record is written over the last one, which stays whole (every write is atomic), as does every
    # completed record; once the folder can be written, the same command resumes the run.
    with folder_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        if config.trainer.threads:
            torch.set_num_threads(config.trainer.threads)
        L.seed_everything(config.seed, verbose=False)
        recorder = RunRecorder.for_run(run_dir, config, grid, axes, previous)
        if note:
            recorder.note("compile_cache_note", note)
        data, module = setup(config, recorder)
        cache = None
        if module.compile_model:
            cache = use_compile_cache(compile_cache_dir(config.output_dir, hardware_here(config.trainer.device())))
            start_counting()
        trainer = make_trainer(config, run_dir, recorder, axes)
        recorder.describe(gate_values(module.model), count_params(module.model),
                          count_flops(module.model, data.in_channels, data.image_size),
                          environment(trainer, config.trainer), data.fingerprint)
        found = cache_identity(cache) if cache and not trust_cache else None
        return train(trainer, module, data, recorder, run_dir, best_val=config.trainer.test_on == "best_val",
                     cache=(cache, found))


def check_accelerator(config: Config) -> None:
    if config.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={config.trainer.accelerator!r} but no CUDA GPU is visible; "
                        f"valid here: auto, cpu")


def setup(config: Config, recorder: RunRecorder) -> tuple[AttnDataModule, PlacementModule]:
    """The data, read, and the module. A failure here (data that cannot be read, say) is recorded and raised."""
    try:
        data = make_datamodule(config)
        data.prepare_data()
        data.setup("fit")
        return data, PlacementModule(config, data.num_classes, data.in_channels)
    except Exception as err:
        recorder.fail_before_training(err)
        raise


def train(trainer: L.Trainer, module: PlacementModule, data: AttnDataModule, recorder: RunRecorder,
          run_dir: Path, best_val: bool, cache: tuple[Path | None, int | None] = (None, None)) -> dict:
    """Fit from where the run left off, test, and record how it ended. A compile failure with the compile cache
    `cache` (its folder, and its `cache_identity` when the run found it on disk) raises `CacheFault` unrecorded:
    the run is not over."""
    checkpoint = resume_checkpoint(run_dir, recorder)
    try:
        # Ctrl-C: Lightning ends the process (SystemExit, which no `except` below takes), so the record stays
        # `running` and the same command resumes the run.
        trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
        best = run_dir / "best.ckpt" if best_val else None
        # Testing from best.ckpt loads every callback's state from it too: without this the record's history
        # (and wall time) would end at the best epoch.
        trained = recorder.state_dict()
        tested = trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)[0]
        recorder.load_state_dict(trained)
        recorder.add_metrics(final_metrics(recorder.history, tested, best is not None))
        if module.compile_model:
            recorder.note("compile", compile_summary())
    except DivergedError as err:
        return recorder.write("failed", error=str(err), failed_epoch=trainer.current_epoch)
    except OSError:  # the run folder: `folder_errors` says so, and the record stays as last written
        raise
    except Exception as err:
        if fault := cache_fault(err, *cache):
            raise fault from err
        recorder.write("failed", error=error_line(err), failed_epoch=trainer.current_epoch)
        raise
    finally:
        finish_wandb(trainer, recorder.metrics)
    return recorder.write("completed")


def resume_checkpoint(run_dir: Path, recorder: RunRecorder) -> Path | None:
    """The checkpoint `resume_point` picks. What it did instead of resuming from an unusable `last.ckpt` is
    printed as one line and noted in this session of the record."""
    checkpoint, note = resume_point(run_dir)
    if note:
        print(f"{run_dir}: {note}", file=sys.stderr, flush=True)
        recorder.note("resume_note", note)
    return checkpoint


def final_metrics(history: list[dict], tested: dict, best_val: bool) -> dict:
    val = [h["val_acc"] for h in history if h["val_acc"] is not None]
    metrics = {"test_acc": tested["test_acc"], "val_acc": val[-1] if val else None,
               "best_val_acc": max(val) if val else None, "tested_epoch": tested_epoch(history, best_val)}
    if "test_acc5" in tested:
        metrics["test_acc5"] = tested["test_acc5"]
    return metrics


def tested_epoch(history: list[dict], best_val: bool) -> int:
    """The epoch whose weights the test split saw: the last, or the first with the best validation accuracy
    (the best checkpoint is replaced only on a strict improvement)."""
    if not best_val:
        return history[-1]["epoch"]
    return max(history, key=lambda h: (h["val_acc"] if h["val_acc"] is not None else -1, -h["epoch"]))["epoch"]


def make_datamodule(config: Config) -> AttnDataModule:
    d = config.data
    return AttnDataModule(d.name, path=d.path, val_size=d.val_size, train_subset=d.train_subset, augment=d.augment,
                          batch_size=d.batch_size, eval_batch_size=d.eval_batch_size, seed=config.seed,
                          synthetic=d.synthetic)


def make_trainer(config: Config, run_dir: Path, recorder: RunRecorder, axes: dict | None = None) -> L.Trainer:
    t = config.trainer
    # `last.ckpt`, overwritten at every epoch end (no monitor: top-1 = the newest), after the recorder has
    # appended that epoch to the history it carries. (Lightning's `save_last` alone only saves alongside a
    # top-k save.) `best.ckpt` is saved at the epoch end too, so it is a state to resume from when `last.ckpt`
    # cannot be read (`resume_point`). `RunFolderCheckpointIO` writes both whole or not at all.
    # Mask telemetry logs at validation end; the recorder, at the epoch end after it, puts it in the history.
    # `best` before `last`: Lightning runs them in this order, and `last.ckpt` carries `best`'s state (its best
    # score so far), which must include this epoch, or a resumed run compares the next epoch with a stale best.
    best = [ModelCheckpoint(dirpath=run_dir, filename="best", monitor="val_acc", mode="max", save_top_k=1,
                            save_on_train_epoch_end=True, enable_version_counter=False)
            ] if t.test_on == "best_val" else []
    callbacks = [*([MaskTelemetry()] if t.mask_telemetry else []), recorder, *best,
                 ModelCheckpoint(dirpath=run_dir, filename="last", save_top_k=1, save_on_train_epoch_end=True,
                                 enable_version_counter=False)]
    if t.progress_bar:
        callbacks.append(TrainingProgressBar())
    loggers = make_loggers(config, run_dir, axes)
    callbacks.append(EarlierRows(loggers[0]))
    return L.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=1, precision=t.precision,
        deterministic=t.deterministic, logger=loggers, callbacks=callbacks,
        log_every_n_steps=t.gate_log_every_n_steps, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run_dir,
        # no_grad, not inference_mode, for validation and test: a compiled graph guards on the tensors' dispatch
        # keys, and inference tensors lack autograd's, so the test would compile the eval graph a second time.
        inference_mode=not t.compile,
        plugins=[RunFolderCheckpointIO()],
    )


class TrainingProgressBar(TQDMProgressBar):
    """The training bar with its epoch's loss and validation accuracy; no bar of its own for each validation
    and the test, which would print a line per evaluation around the lines that matter."""

    def init_validation_tqdm(self):
        return Tqdm(disable=True)  # disabled from the start: tqdm draws itself once when it is built

    def init_test_tqdm(self):
        return Tqdm(disable=True)


def make_loggers(config: Config, run_dir: Path, axes: dict | None = None) -> list:
    loggers = [csv_logger(run_dir)]
    if config.logger == "wandb":
        m = config.model
        loggers.append(WandbLogger(
            project=config.wandb.project, name=config.run_id, id=wandb_id(config), group=config.name,
            job_type=m.pattern, tags=[m.attention, m.backbone, f"seed{config.seed}"],
            config={**config.to_dict(), "grid_axes": axes or {}},  # axes as plain keys, to group and plot by
            save_dir=str(run_dir), offline=wandb_mode(config.wandb.mode) == "offline", resume="allow",
        ))
    return loggers


def wandb_id(config: Config) -> str:
    """Unique per experiment and run, and stable, so a resumed run continues the same W&B run."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{config.name}-{config.run_id}")[:128]


def wandb_mode(mode: str) -> str:
    """`auto` goes online only when the user has set W&B up (an API key or a netrc login); else offline."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "offline"
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return "online" if logged_in else "offline"


def finish_wandb(trainer: L.Trainer, metrics: dict) -> None:
    """Put the run's final metrics (test and best-val accuracy, images/s, params, FLOPs) in its W&B summary,
    where W&B's run tables, grouping and parallel coordinates read them, then close the run."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({k: v for k, v in metrics.items() if v is not None})
            logger.experiment.finish()


def summary_line(record: dict) -> str:
    m = record["metrics"]
    where = Path(record["run_dir"]) / "record.json"
    if record["status"] != "completed":
        return f"{record['id']}: {record['status']} ({record['error']}); record: {where}"
    best = f", best val {m['best_val_acc']:.2%}" if m.get("best_val_acc") is not None else ""
    speed = f", {m['train_images_per_s']:.0f} img/s" if m.get("train_images_per_s") else ""
    compiled = (record.get("sessions") or [{}])[-1].get("compile")
    compiled = f", compiled in {compiled['seconds']:.0f} s ({compiled['cache']} cache)" if compiled else ""
    return (f"{record['id']}: test acc {m['test_acc']:.2%}{best}, {m['duration_s']:.0f} s{speed}{compiled}; "
            f"record: {where}")
