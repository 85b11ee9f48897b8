"""Optimizer and learning-rate schedules: `optim.gate_lr_scale` changes only the gates' lr, and keeps its ratio
through training; `onecycle` follows Smith's formula, and `step` divides the lr at its milestones, which must
increase and which split run ids only where the step schedule reads them."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from attnplace.errors import UserError
from attnplace.run.config import identity, load_config
from attnplace.train.fit import fit
from attnplace.train.module import PlacementModule
from tiny import TINY


def test_gate_lr_scale_changes_only_the_gates_lr():
    from attnplace.train.module import param_groups

    def lrs(config):
        module = PlacementModule(config.to_dict(), 10, 3)
        return {name: group["lr"] for group in param_groups(module.model, config.optim.lr, 5e-4,
                                                              config.optim.gate_lr_scale)
                for name, p in module.model.named_parameters() if any(p is q for q in group["params"])}

    base = lrs(load_config(None, ["model.pattern=p4", "optim.lr=0.1"]))
    scaled = lrs(load_config(None, ["model.pattern=p4", "optim.lr=0.1", "optim.gate_lr_scale=50"]))
    assert base.keys() == scaled.keys() and len(base) == len(dict(PlacementModule(
        load_config(None, ["model.pattern=p4"]).to_dict(), 10, 3).model.named_parameters()))
    gates = {k for k in base if k.endswith((".gate_s.gamma", ".gate_r.gamma"))}
    assert len(gates) == 18
    assert all(scaled[k] == pytest.approx(5.0) and base[k] == pytest.approx(0.1) for k in gates)
    assert all(scaled[k] == base[k] == pytest.approx(0.1) for k in base.keys() - gates)


def test_optimizer_keeps_the_gate_lr_ratio_through_the_schedule(tmp_path):
    config = load_config(None, [*TINY, "model.pattern=p3c", "trainer.max_epochs=2", "optim.gate_lr_scale=10",
                                "optim.lr=0.02", f"run_dir={tmp_path}"])
    record = fit(config)
    assert record["status"] == "completed"
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    gate_group = next(g for g in groups if len(g["params"]) == 9)  # the 9 λ logits of resnet20
    other = next(g for g in groups if g is not gate_group)
    assert gate_group["lr"] == pytest.approx(10 * other["lr"]) and gate_group["weight_decay"] == 0
    assert gate_group["initial_lr"] == pytest.approx(0.2)


@pytest.mark.parametrize("name,warmup_epochs,peak", [("sgd", 0, 29), ("sgd", 5, 49), ("adamw", 0, 29)])
def test_onecycle_follows_smiths_formula(name, warmup_epochs, peak):
    """`optim.schedule=onecycle` over 100 steps, each group's lr and the momentum against the formula: a half
    cosine from lr/25 up to lr (and, with SGD, from the momentum m down to m·0.85/0.95) until the peak, after
    the warm-up or 30% of training, whichever is longer; then a half cosine down to lr/25e4 (and back up to m).
    The gates keep their 10x lr all along."""
    config = load_config(None, ["model.pattern=p3c", "optim.schedule=onecycle", f"optim.name={name}", "optim.lr=0.1",
                                "optim.momentum=0.9", "optim.gate_lr_scale=10", f"optim.warmup_epochs={warmup_epochs}"])
    module = PlacementModule(config.to_dict(), 10, 3)
    module.trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10)
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    assert [g["initial_lr"] * 25 for g in optimizer.param_groups] == pytest.approx([0.1, 0.1, 1.0])

    def half_cosine(start, end, t):
        return end + (start - end) * (1 + math.cos(math.pi * t)) / 2

    for step in range(100):
        rising, t = step <= peak, step / peak if step <= peak else (step - peak) / (99 - peak)
        for group, top in zip(optimizer.param_groups, (0.1, 0.1, 1.0), strict=True):
            low = top / 25
            lr = half_cosine(low, top, t) if rising else half_cosine(top, low / 1e4, t)
            assert group["lr"] == pytest.approx(lr, rel=1e-9), step
            if name == "sgd":
                dip = 0.9 * 0.85 / 0.95
                momentum = half_cosine(0.9, dip, t) if rising else half_cosine(dip, 0.9, t)
                assert group["momentum"] == pytest.approx(momentum, rel=1e-9), step
            else:
                assert group["betas"] == (0.9, 0.999)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("warmup_epochs", [0, 1])
def test_step_schedule_divides_the_lr_at_its_milestones(warmup_epochs):
    """`optim.schedule=step` (He et al.'s): over 10 epochs of 10 steps, milestones at epochs 4.5 and 7 are steps
    45 and 70; every group's lr is its base lr until step 45, a tenth of it until step 70, a hundredth after,
    with the linear warm-up (step + 1)/10 over the first epoch when there is one. The gates keep their ratio."""
    config = load_config(None, ["model.pattern=p3c", "optim.schedule=step", "optim.milestones=[4.5, 7]",
                                "optim.lr=0.1", "optim.gate_lr_scale=10", f"optim.warmup_epochs={warmup_epochs}"])
    module = PlacementModule(config.to_dict(), 10, 3)
    module.trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10)
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    for step in range(100):
        factor = 1.0 if step < 45 else 0.1 if step < 70 else 0.01
        if warmup_epochs and step < 10:
            factor *= (step + 1) / 10
        for group, base in zip(optimizer.param_groups, (0.1, 0.1, 1.0), strict=True):
            assert group["lr"] == pytest.approx(base * factor, rel=1e-9), step
        optimizer.step()
        scheduler.step()


def test_step_schedule_options_split_ids_only_where_read():
    """milestones and step_factor are reset by every other schedule, and older configs keep their ids."""
    cosine = load_config(None, ["model.pattern=none"])
    assert load_config(None, ["model.pattern=none", "optim.step_factor=0.5"]).run_id == cosine.run_id
    step = ["model.pattern=none", "optim.schedule=step", "optim.milestones=[91, 136]"]
    assert load_config(None, step).run_id != load_config(None, [*step, "optim.step_factor=0.2"]).run_id
    assert "milestones" not in json.dumps(identity(cosine))


@pytest.mark.parametrize("milestones", ["null", "[]", "[5, 3]", "[0, 3]"])
def test_step_schedule_needs_increasing_milestones(milestones):
    with pytest.raises(UserError, match=r"optim\.milestones.*increasing epochs"):
        load_config(None, ["optim.schedule=step", f"optim.milestones={milestones}"])
