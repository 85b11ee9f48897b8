"""Hand-written `record.json`s with known numbers, for the report, atlas and record-loading tests, and a
hand-ranked accuracy table for the statistics tests."""

import json
from pathlib import Path

import pandas as pd


def record(pattern, seed, acc, *, attention="se", backbone="resnet20", status="completed",
           history=None, axes=("model.pattern", "model.attention", "seed"), val_acc=None, **extra):
    """A record.json as the training code writes it; `axes` picks which config keys are grid axes."""
    config = {"seed": seed, "model": {"backbone": backbone, "pattern": pattern, "attention": attention}}
    values = {"model.pattern": pattern, "model.attention": attention, "model.backbone": backbone, "seed": seed}
    metrics = None if acc is None else {
        "test_acc": acc, "val_acc": acc if val_acc is None else val_acc, "best_val_acc": acc, "params": 1000 + seed,
        "flops": 2e6, "train_images_per_s": 500.0, "duration_s": 10.0}
    return {"id": f"{backbone}-{pattern}-{attention}-s{seed}", "grid": "g", "status": status,
            "error": "loss is NaN" if status == "failed" else None,
            "failed_epoch": 3 if status == "failed" else None,
            "axes": {k: values[k] for k in axes}, "config": config, "metrics": metrics,
            "history": history or [], "environment": {}, **extra}


def write_runs(root: Path, records, grid_axes=None) -> Path:
    for rec in records:
        path = root / "runs" / rec["id"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rec if isinstance(rec, str) else json.dumps(rec))
    if grid_axes:
        (root / "grid.json").write_text(json.dumps({"name": "g", "axes": grid_axes}))
    return root


def write_raw(root: Path, run_id: str, text: str) -> Path:
    path = root / "runs" / run_id / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def environment(precision="32-true", device="cpu: 2 cores", compile=False, cpu="AMD EPYC, torch kernels AVX2"):
    """A record's `environment` as fit.py writes it, with the fields a report compares."""
    return {"device": device, "precision": precision, "channels_last": False, "compile": compile, "torch_threads": 1,
            "cpu": cpu}


TARBALL = "../shared/data/cifar10-jpeg.tar.gz"


def study_record(pattern, seed, acc, *, gate=None, attention="se", precision="32-true", data="imagefolder",
                 axes=("model.pattern", "seed"), epochs=10):
    """A record of one run of a study, for the atlas tests: its data (the CIFAR-10 tarball unless `data` is
    synthetic), gate, attention, precision and epochs set, and `axes` the config keys that are grid axes."""
    rec = record(pattern, seed, acc, attention=attention, axes=())
    model = rec["config"]["model"]
    if gate is not None:
        model["gate"] = gate
    rec["config"]["data"] = {"name": data, "path": TARBALL if data != "synthetic" else None, "train_subset": 10000}
    rec["config"]["trainer"] = {"max_epochs": epochs, "precision": precision}
    rec["environment"] = environment(precision)
    values = {"model.pattern": pattern, "model.gate": gate, "model.attention": attention,
              "trainer.precision": precision, "seed": seed}
    rec["axes"] = {a: values[a] for a in axes}
    rec["id"] = f"{pattern}-{gate}-{attention}-{precision}-s{seed}"
    return rec


def masks(channel_mean, gain, module="attn", blocks=("stage2.block0", "stage2.block1")):
    """One epoch's mask statistics: every block of stage 2 with the same channel mean and gain."""
    return {f"{b}.{module}.{stat}": value for b in blocks
            for stat, value in (("channel_mean", channel_mean), ("channel_low", 0.1), ("gain", gain))}


def gates(*values):
    """Gate dict for one epoch: two stage-2 γ_s blocks and one stage-3 λ."""
    return dict(zip(["stage2.block0.gamma_s", "stage2.block1.gamma_s", "stage3.block0.lambda"], values))


P1_HISTORY = {0: [{"epoch": 0, "gates": gates(0.1, 0.3, 0.5)}, {"epoch": 1, "gates": gates(0.2, 0.4, 0.6)}],
              1: [{"epoch": 0, "gates": gates(0.3, 0.5, 0.7)}, {"epoch": 1, "gates": gates(0.4, 0.6, None)}],
              2: [{"epoch": 0}]}
BASE = [0.90, 0.91, 0.93]
P1 = [0.90, 0.92, 0.94]


def write_results(root: Path) -> Path:
    """A small grid: baseline and p1 on seeds 0-2, p2 with one failure, p3 one completed seed (two failed), p4
    all failed (failed runs end their blocks: seeds 0-2 are complete), seed 3's block with one run stopped
    mid-training (partial: left out of the tables), a corrupt and a partial record."""
    recs = [record("none", s, a) for s, a in enumerate(BASE)]
    recs += [record("p1", s, a, history=P1_HISTORY[s]) for s, a in enumerate(P1)]
    recs += [record("p2", 0, 0.95), record("p2", 1, 0.93),
             record("p2", 2, None, status="failed", history=[{"epoch": 0, "gates": gates(9, 9, 9)}])]
    recs += [record("p3", 0, 0.91), *(record("p3", s, None, status="failed") for s in (1, 2))]
    recs += [*(record("p4", s, None, status="failed") for s in range(3)), record("p3", 3, None, status="running")]
    write_runs(root, recs, {"model.pattern": ["none", "p1", "p2", "p3", "p4"],
                                "model.attention": ["se"], "seed": [0, 1, 2]})
    write_raw(root, "corrupt", '{"id": "corrupt", "status": ')
    partial = record("p1", 5, 0.5)
    del partial["metrics"]
    write_raw(root, "partial", json.dumps(partial))
    return root


def row(summary: pd.DataFrame, variant: str) -> pd.Series:
    (match,) = summary.index[summary["variant"] == variant]
    return summary.loc[match]


# variant × seed. Ranks per seed (1 = best): s0 a b c; s1 b a c; s2 a = c (1.5 each), b; s3 a b c.
ACC = pd.DataFrame([[0.90, 0.91, 0.92, 0.93], [0.88, 0.92, 0.90, 0.91], [0.85, 0.86, 0.92, 0.89]],
                   index=["a", "b", "c"], columns=[0, 1, 2, 3])


def lr_records(accs: dict, val: dict | None = None) -> list[dict]:
    """Records of a grid over model.pattern × optim.lr × seed: `accs[(pattern, lr)]` lists test accuracies by seed,
    `val[(pattern, lr)]` validation accuracies (default: the test ones)."""
    recs = []
    for (pattern, lr), values in accs.items():
        for seed, acc in enumerate(values):
            if acc is None:
                continue
            rec = record(pattern, seed, acc, axes=("model.pattern", "seed"),
                         val_acc=(val or {}).get((pattern, lr), values)[seed])
            rec["axes"]["optim.lr"] = lr
            rec["config"]["optim"] = {"lr": lr}
            rec["id"] += f"-lr{lr}"
            recs.append(rec)
    return recs


def lr_grid(lrs) -> dict:
    return {"seed": [], "model.pattern": ["none", "p1", "p2"], "optim.lr": list(lrs)}
