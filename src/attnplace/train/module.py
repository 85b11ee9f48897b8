"""The LightningModule: any `build_model(...)` variant, trained with SGD+Nesterov (or AdamW) and logged gates."""

import math

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..models import build_network, gate_parameters, gate_values
from ..run.config import CanonicalConfig, Config, canonical
from ..run.config_io import from_dict


def accuracy(num_classes: int, top_k: int = 1) -> MulticlassAccuracy:
    """Micro accuracy without input validation, whose checks (`torch.unique`, ...) sync with the GPU."""
    return MulticlassAccuracy(num_classes, top_k=top_k, average="micro", validate_args=False)


class DivergedError(RuntimeError):
    """The training loss became NaN or inf; the run stops at the next check and is recorded as failed."""


class PlacementModule(L.LightningModule):
    """Trains without a host-device sync per step: the loss is checked for NaN/inf on the device and looked
    at on the host only every `nan_check_every_n_steps` steps, and per-step values are logged only at the
    steps Lightning writes them out (every `gate_log_every_n_steps`).

    `config` is the run's canonical config (`fit` passes it), or its dict as a checkpoint's hyper-parameters
    hold it: `PlacementModule.load_from_checkpoint(path)` rebuilds the trained network from the checkpoint alone,
    on a machine that need not have the data (reading a config never looks for it)."""

    def __init__(self, config: CanonicalConfig | dict, num_classes: int, in_channels: int):
        super().__init__()
        # A checkpoint's dict may be older than configs that hold the preset resolved (`auto`), so canonical
        # makes it concrete, as the run that wrote it did.
        if not isinstance(config, dict | CanonicalConfig):
            raise TypeError(f"PlacementModule takes a canonical config or a saved config's dict, not a {type(config)}")
        self.config = canonical(from_dict(Config, config)) if isinstance(config, dict) else config
        self.save_hyperparameters({"config": self.config.to_dict(), "num_classes": num_classes,
                                   "in_channels": in_channels})
        t = self.config.trainer
        self.model = build_network(self.config.model, num_classes, in_channels, self.config.seed)
        self.channels_last = t.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Smoothing shapes the training targets only: validation and test report the plain cross-entropy, which
        # compares across runs with and without it (as timm's validate does).
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.config.optim.label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()
        self.train_acc, self.val_acc, self.test_acc = (accuracy(num_classes) for _ in range(3))
        # Top-5 only means something with many classes (cifar100); with 10 it would be almost always 1.
        self.test_acc5 = accuracy(num_classes, top_k=5) if num_classes >= 100 else None
        self.compile_model, self._compiled = t.compile, False

    def configure_model(self):
        """Compile the network in place (`nn.Module.compile`), so that it is registered once and its
        state_dict keys, and so every checkpoint, are the same compiled or not: a run resumes or is evaluated
        with compile on or off. Here rather than in `__init__`, so that params and FLOPs are counted on the
        eager network and a module loaded to evaluate by hand stays eager. Lightning calls this hook at every
        `fit`/`test`, hence the flag."""
        if self.compile_model and not self._compiled:
            self.model.compile()
            self._compiled = True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints saved before the network was compiled in place hold it twice: under `model.*` and, as
        the very same tensors, under `forward_fn.*` (the attribute that held the maybe-compiled network).
        Dropping the copy lets such a run resume or be evaluated; a copy that differs is left to fail."""
        drop_copies(checkpoint["state_dict"], copy="forward_fn.", original="model.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_train_epoch_start(self):
        self._diverged = torch.zeros((), dtype=torch.bool, device=self.device)
        self._first_bad_loss = torch.zeros((), device=self.device)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        self.check_finite(loss.detach(), last_step=batch_idx + 1 == self.trainer.num_training_batches)
        self.train_acc.update(logits, y)
        # The progress bar shows the epoch mean: a per-step value there would cost a sync every step.
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        if (self.global_step + 1) % self.config.trainer.gate_log_every_n_steps == 0:  # Lightning writes logs now
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, batch_size=len(y))
            self.log_gates(on_step=True)
        return loss

    def check_finite(self, loss: torch.Tensor, last_step: bool) -> None:
        """Remember on the device whether (and as what) the loss became NaN/inf; raise `DivergedError` at the
        next check. Checking at the epoch's last step, before this step's update, means that no epoch
        ends, and no checkpoint is saved, after a step on a NaN/inf loss."""
        self._first_bad_loss = torch.where(self._diverged, self._first_bad_loss, loss)
        self._diverged |= ~torch.isfinite(loss)
        due = last_step or (self.global_step + 1) % self.config.trainer.nan_check_every_n_steps == 0
        if due and self._diverged:  # bool(): the one host sync, every nan_check_every_n_steps steps
            raise DivergedError(f"loss became {self._first_bad_loss.item()} at epoch {self.current_epoch} "
                                f"(seen at step {self.global_step})")

    def on_train_epoch_end(self):
        self.log_gates(on_step=False)

    def log_gates(self, on_step: bool) -> None:
        """γ_s, γ_r and λ as `gate/<stage>.<block>.<name>`, so every logger holds their trajectories."""
        gates = gate_values(self.model)
        if gates:
            self.log_dict({f"gate/{k}": v for k, v in gates.items()}, on_step=on_step, on_epoch=not on_step)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        logits = self._evaluate(batch, "test", self.test_acc)
        if self.test_acc5 is not None:
            self.test_acc5(logits, batch[1])
            self.log("test_acc5", self.test_acc5, batch_size=len(batch[1]))

    def _evaluate(self, batch, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        accuracy(logits, y)
        self.log(f"{stage}_loss", self.eval_criterion(logits, y), batch_size=len(y))
        self.log(f"{stage}_acc", accuracy, prog_bar=stage == "val", batch_size=len(y))
        return logits

    def configure_optimizers(self):
        opt = self.config.optim
        groups = param_groups(self.model, opt.lr, opt.weight_decay, opt.gate_lr_scale)
        if opt.name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
        else:
            optimizer = torch.optim.AdamW(groups, lr=opt.lr)
        total = self.trainer.estimated_stepping_batches
        warmup = round(opt.warmup_epochs * total / self.trainer.max_epochs)
        if opt.schedule == "onecycle":
            scheduler = one_cycle(optimizer, warmup, total, momentum=opt.momentum if opt.name == "sgd" else None)
        elif opt.schedule == "step":
            per_epoch = total / self.trainer.max_epochs
            scheduler = step_decay(optimizer, warmup, [round(m * per_epoch) for m in opt.milestones], opt.step_factor)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(opt.schedule, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def drop_copies(state: dict, copy: str, original: str) -> None:
    """Remove from `state` every `copy`-prefixed tensor equal to its `original`-prefixed twin."""
    for key in [k for k in state if k.startswith(copy)]:
        twin = state.get(original + key.removeprefix(copy))
        if twin is not None and torch.equal(twin, state[key]):
            del state[key]


def param_groups(model: nn.Module, lr: float, weight_decay: float, gate_lr_scale: float) -> list[dict]:
    """Conv/linear weights (decayed); norms and biases (not decayed); the gate scalars (not decayed, own lr).

    Decaying norms, biases or the gates γ/λ would pull them towards 0 and bias the very quantities the
    experiments measure. The gates get `lr · gate_lr_scale`: a scalar gate sees one gradient summed over a
    whole tensor, and λ's passes through sigmoid′ (≈ 0.09 at λ = 0.1), so the weights' lr barely moves it.
    The schedule multiplies every group's lr alike, so the ratio holds through training. Empty groups
    (no gates in `none`/p1-p3) are left out.
    """
    gates = gate_parameters(model)
    gate_ids = {id(p) for p in gates}
    rest = [p for p in model.parameters() if id(p) not in gate_ids]
    groups = [{"params": [p for p in rest if p.ndim > 1], "weight_decay": weight_decay, "lr": lr},
              {"params": [p for p in rest if p.ndim <= 1], "weight_decay": 0.0, "lr": lr},
              {"params": gates, "weight_decay": 0.0, "lr": lr * gate_lr_scale}]
    return [g for g in groups if g["params"]]


def lr_factor(schedule: str, warmup: int, total: int):
    """Multiplier of the base lr at a step: linear warm-up, then half a cosine to 0 (`cosine`) or 1 (`constant`)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor


def step_decay(optimizer: torch.optim.Optimizer, warmup: int, milestones: list[int], factor: float):
    """He et al.'s step schedule (`MultiStepLR`, stepped per batch): lr·factor^k after the k-th milestone step,
    after the same linear warm-up as `lr_factor`'s, (step + 1)/warmup, over the first `warmup` steps."""
    decay = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=factor)
    if warmup <= 1:  # a warm-up of one step starts at the full lr: none
        return decay
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1)
    return torch.optim.lr_scheduler.ChainedScheduler([rise, decay])


# Smith's momentum range, 0.95 at low lr down to 0.85 at the peak, as a ratio of the configured momentum.
ONE_CYCLE_MOMENTUM_DIP = 0.85 / 0.95


def one_cycle(optimizer: torch.optim.Optimizer, warmup: int, total: int, momentum: float | None):
    """Smith's one-cycle (`OneCycleLR`, stepped per batch): each group's lr rises along a half cosine from
    lr/25 to its own lr (so the gates keep `gate_lr_scale` times the weights' lr) over the warm-up, at least
    30% of training (its usual share), then falls along a half cosine to lr/25e4. Given a (SGD) `momentum`,
    the momentum moves the other way: from `momentum` down to `momentum · 0.85/0.95` at the peak and back.
    At least one step is left for the fall, which `OneCycleLR` divides by."""
    rise = min(max(warmup, 0.3 * total), total - 1)
    cycle = {"max_momentum": momentum, "base_momentum": momentum * ONE_CYCLE_MOMENTUM_DIP} if momentum else {}
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total, pct_start=rise / total,
        cycle_momentum=bool(momentum), **cycle)
