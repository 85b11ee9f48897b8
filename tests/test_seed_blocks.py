"""Seed blocks: block-major order, a study continued on other hardware (its own blocks and replacement seeds,
never a mixed block), failed runs completing a block, the run list that only grows, the preset fixed at a grid's
first call, and data that changed under the same path."""

import json
from pathlib import Path

import pytest
import yaml

from attnplace.cli import main
from attnplace.grid import runner
from attnplace.grid.seed_blocks import read_blocks, schedule
from attnplace.run.ledger import write_ledger
from attnplace.grid.spec import load_grid
from attnplace.run.environment import cpu_model
from attnplace.run.sections import TrainerConfig
from dataset_files import image_tree, write_tree
from grids import TINY_BASE, write_grid

ONE_EPOCH = {**TINY_BASE, "trainer": {**TINY_BASE["trainer"], "max_epochs": 1}}
HERE = cpu_model()
OTHER = "AMD EPYC, torch kernels AVX2" if "EPYC" not in HERE else "Intel Xeon, torch kernels AVX512"


def fake(run, status="completed", cpu=OTHER, failed_epoch=None) -> None:
    """A record of `run` as if it had trained on CPU model `cpu`: all that block scheduling reads."""
    folder = Path(run.config.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(json.dumps({"id": run.id, "status": status, "failed_epoch": failed_epoch,
                                                    "environment": {"device": "cpu: 2 cores", "cpu": cpu}}))


def ids(runs) -> list[tuple[int, str]]:
    return [(r.seed, r.axes["model.pattern"]) for r in runs]


def test_a_grid_trains_block_by_block_whatever_the_order_of_its_axes(tmp_path):
    """`model.pattern` is listed before `seed`, yet every run of seed 0 comes before any of seed 1: a grid
    stopped part-way leaves at most as many partial blocks as it had workers."""
    grid = load_grid(write_grid(tmp_path, {"model.pattern": ["none", "p1", "p4"], "seed": [0, 1]}))
    assert ids(runner.plan(grid)) == [(0, "none"), (0, "p1"), (0, "p4"), (1, "none"), (1, "p1"), (1, "p4")]
    fake(grid.runs[1], cpu=HERE)  # seed 0's p1 done here: the open block comes first, then the next
    assert ids(runner.plan(grid, here=[HERE])) == [(0, "none"), (0, "p4"), (1, "none"), (1, "p1"), (1, "p4")]


def test_a_grid_resumed_on_other_hardware_trains_only_its_own_blocks_and_replacement_seeds(tmp_path):
    """Seed 1's block completed on another CPU model, seed 0's stopped part-way there. Here the grid leaves
    seed 0 partial, starts seed 2 as its replacement, and stops once 2 blocks are complete; no block mixes two
    kinds of hardware, and grid.json keeps the replacement block for any later call."""
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0, 1]}, base=ONE_EPOCH)
    grid = load_grid(path)
    fake(grid.runs[0])  # seed 0: none
    fake(grid.runs[2])  # seed 1: none, p1
    fake(grid.runs[3])
    lines = []
    counts = runner.run_grid(grid, echo=lines.append)
    assert counts == {"runs": 6, "completed": 5, "failed": 0, "elsewhere": 0, "to_run": 2}
    assert lines[1:4] == ["blocks: 1 of 2 wanted complete: 1 (1 on " + OTHER + ")",
                          f"  partial: seed 0 (1 of 2 runs ended, on {OTHER}); stays partial: not this hardware",
                          "  to start here: seed 2 (replacement seed 2 for the blocks left partial)"]
    blocks = {b.seed: b for b in read_blocks(load_grid(path))}
    assert sorted(blocks) == [0, 1, 2]
    assert [(b.kinds, b.complete) for b in blocks.values()] == [({OTHER}, False), ({OTHER}, True), ({HERE}, True)]
    ledger = json.loads((tmp_path / "out" / "g" / "grid.json").read_text())
    assert ledger["blocks"] == {"wanted": 2, "seeds": {str(s): [r.id for r in b.runs] for s, b in blocks.items()},
                                "counted": [1, 2]}
    assert runner.plan(load_grid(path), here=[HERE]) == []  # 2 complete blocks: nothing more to train here
    assert ids(runner.plan(load_grid(path), here=[OTHER])) == [(0, "p1")]  # its hardware is back: it finishes


def test_a_block_holding_a_failed_run_is_complete_and_one_that_failed_before_training_is_not(tmp_path):
    """A diverged run is a result; a run that never trained (its data was missing) is tried again."""
    grid = load_grid(write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0]}))
    fake(grid.runs[0], cpu=HERE)
    fake(grid.runs[1], status="failed", cpu=HERE, failed_epoch=2)
    plan = schedule(grid, [HERE])
    assert plan.todo == [] and plan.blocks[0].complete
    fake(grid.runs[1], status="failed", cpu=HERE, failed_epoch=None)
    assert ids(schedule(grid, [HERE]).todo) == [(0, "p1")]
    assert ids(schedule(grid, [HERE], retry_failed=True).todo) == [(0, "p1")]


def test_the_run_list_only_grows_until_the_grid_computes_something_else(tmp_path):
    path = write_grid(tmp_path, {"model.pattern": ["none"], "seed": [0, 1]})
    first = load_grid(path)
    write_ledger(first.results_dir, first.describe())
    fewer = load_grid(write_grid(tmp_path, {"model.pattern": ["none"], "seed": [0]}))
    assert fewer.describe().runs == first.describe().runs and fewer.seeds == [0, 1]
    other = load_grid(path, ["optim.lr=0.2"])  # another experiment under the same name: a run list of its own
    assert other.seeds == [0] and not set(other.describe().runs) & set(first.describe().runs)


def test_a_replacement_seed_skips_seeds_whose_runs_are_on_disk(tmp_path):
    """A grid.json that a changed grid file replaced forgot replacement seed 1, whose block another machine
    started; the next replacement is seed 2, not a block bound to other hardware that would never train here.
    The grid says that its grid.json was started afresh."""
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0]})
    first = load_grid(path)
    write_ledger(first.results_dir, first.describe())
    fake(first.runs[0])  # seed 0's block: partial, on other hardware
    forgotten = first.results_dir / "runs" / first.runs[0].id.replace("-s0-", "-s1-")
    forgotten.mkdir()
    (forgotten / "record.json").write_text(json.dumps({"status": "running", "environment": {"cpu": OTHER}}))
    changed = load_grid(write_grid(tmp_path, {"model.pattern": ["p1", "none"], "seed": [0]}))  # same runs
    assert changed.notes[0].startswith("grid.json describes another grid under the name 'g'")
    assert {run.seed for run in schedule(changed, [HERE]).todo} == {2}


def test_a_block_that_completes_during_a_call_never_swaps_in_for_the_counted_ones(tmp_path):
    """Seeds 1 and 2 are complete when the call starts: it freezes them as the 2 counted blocks. Seed 0's open
    block completes during the call; the call's last write of grid.json keeps [1, 2], not the first 2 complete
    in seed order, [0, 1]."""
    path = write_grid(tmp_path, {"model.pattern": ["none", "p1"], "seed": [0, 1, 2]}, base=ONE_EPOCH)
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "blocks": 2}))
    grid = load_grid(path)
    for run in grid.runs[:1] + grid.runs[2:]:  # all but seed 0's p1
        fake(run, cpu=HERE)
    runner.run_grid(grid, echo=lambda line: None)
    assert all(b.complete for b in read_blocks(load_grid(path)))
    assert json.loads((tmp_path / "out" / "g" / "grid.json").read_text())["blocks"]["counted"] == [1, 2]


def test_a_calls_last_write_keeps_the_replacement_seed_another_call_added_meanwhile(tmp_path):
    path = write_grid(tmp_path, {"model.pattern": ["none"], "seed": [0]})
    mine = load_grid(path)
    write_ledger(mine.results_dir, mine.describe())
    theirs = load_grid(path).with_seeds([1])  # another call, started later, added replacement seed 1
    write_ledger(theirs.results_dir, theirs.describe())
    final = runner.as_on_disk(mine).describe()
    assert list(final.seeds) == [0, 1] and final.runs == theirs.describe().runs


def test_blocks_must_be_a_positive_count(tmp_path):
    path = write_grid(tmp_path, {"model.pattern": ["none"]})
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "blocks": 0}))
    with pytest.raises(Exception, match="blocks=0: expected the number of complete seed blocks wanted, >= 1"):
        load_grid(path)


def test_an_unpinned_grid_keeps_the_precision_and_compile_of_its_first_call_on_another_machine(tmp_path):
    """The grid file leaves precision, memory format and compile to the machine: its first call fixes them in
    grid.json, and a later call on a machine whose preset differs keeps them (and so the run ids), saying so."""
    path = write_grid(tmp_path, {"model.pattern": ["none"]}, base=ONE_EPOCH)
    grid = load_grid(path)
    preset = TrainerConfig().resolved("cpu")
    assert runner.run_grid(grid, echo=lambda line: None)["completed"] == 1
    ledger = json.loads((tmp_path / "out" / "g" / "grid.json").read_text())
    assert ledger["preset"] == {"trainer.precision": preset.precision, "trainer.channels_last": True,
                                "trainer.compile": False}
    elsewhere = "bf16-mixed" if preset.precision == "32-true" else "32-true"  # as if the first call ran there
    ledger["preset"]["trainer.precision"] = elsewhere
    (tmp_path / "out" / "g" / "grid.json").write_text(json.dumps(ledger))
    moved = load_grid(path)
    assert moved.runs[0].config.trainer.precision == elsewhere and moved.runs[0].id != grid.runs[0].id
    assert moved.notes == (f"trainer.precision={elsewhere} as fixed at this grid's first call (grid.json); this "
                           f"machine's preset is {preset.precision}",)
    named = load_grid(path, [f"trainer.precision={preset.precision}"])  # named: the grid file's wins
    assert named.runs[0].id == grid.runs[0].id and not any("first call" in note for note in named.notes)
    del ledger["preset"]  # a grid.json older than presets: its first recorded run says what it resolved to
    (tmp_path / "out" / "g" / "grid.json").write_text(json.dumps(ledger))
    assert load_grid(path).runs[0].id == grid.runs[0].id


def test_data_replaced_at_the_same_path_is_refused_by_the_grid_in_one_line(tmp_path, monkeypatch, capsys):
    """The grid's first run read one set of images; the files at the same path are then replaced by others. The
    next run refuses them before it trains, naming both fingerprints, whatever the files' names and times."""
    monkeypatch.setenv("ATTNPLACE_CACHE", str(tmp_path / "cache"))
    images = write_tree(tmp_path / "images", image_tree(per_class=6, size=(8, 8)))
    base = {**ONE_EPOCH, "data": {"name": "imagefolder", "path": str(images), "val_size": 4, "batch_size": 4,
                                  "augment": "none"}}
    assert main(["grid", str(write_grid(tmp_path, {"model.pattern": ["none"]}, base=base))]) == 0
    (before,) = [json.loads(p.read_text())["data_fingerprint"] for p in (tmp_path / "out/g/runs").glob("*/record.json")]
    for name in image_tree(per_class=6, size=(8, 8)):  # other pixels under the same names
        (images / name).write_bytes(inverted(images / name))
    capsys.readouterr()
    assert main(["grid", str(write_grid(tmp_path, {"model.pattern": ["none", "p1"]}, base=base))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"(fingerprint {before})" in err[0] and "a table never pools two datasets" in err[0]
    assert err[0].startswith(f"attnplace: error: the data at {images} (fingerprint ")


def inverted(png: Path) -> bytes:
    """The image at `png` with its pixels inverted, as PNG bytes: the same size, other content."""
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(255 - np.array(Image.open(png))).save(out, "PNG")
    return out.getvalue()
