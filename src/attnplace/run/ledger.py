"""`grid.json`: what a results folder's grid has planned, so that a study can go on from any machine.

    {"name": ..., "axes": ..., "report": ...,
     "runs": [every run id a call has planned, in the order first planned],
     "blocks": {"wanted": 5, "seeds": {"0": [the run ids of seed 0's block], ...}, "counted": [0, 1, 2, 3, 5]},
     "preset": {"trainer.precision": "32-true", "trainer.channels_last": true, "trainer.compile": false},
     "definition": "a hash of what the grid computes, but its seeds"}

The run list only grows: a call on machine B keeps the blocks machine A planned, replacement seeds included.
`counted` is null until the study first holds `wanted` complete blocks; then it is frozen, and those are the
blocks its tables pair on (a block that completes later is reported beside them). `preset` fixes, at the
grid's first call, the trainer settings the grid file leaves to the machine. This module alone writes and reads
the file's shape (`Ledger`): the grid writes what `Grid.describe` gives (grid/spec.py), and the grid and the
report (report/records.py) read it back.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import folder_errors, write_json
from ..errors import UserError
from .record import read_record

GRID_JSON = "grid.json"
# The trainer settings a machine's preset decides (`TrainerConfig.resolved`); each changes the numbers a run computes.
PRESET_KEYS = ("trainer.precision", "trainer.channels_last", "trainer.compile")


@dataclass(frozen=True)
class Ledger:
    """What grid.json says (all empty for a results folder without one). A grid.json older than blocks, presets
    or definitions leaves those empty, and an older report's grid.json may list no runs (`runs` None: the report
    then reads every run folder)."""

    name: str | None = None
    axes: dict[str, list] = field(default_factory=dict)
    runs: tuple[str, ...] | None = None
    report: dict = field(default_factory=dict)  # the grid file's `report:` section, as written
    wanted: int | None = None  # how many complete seed blocks the study wants
    seeds: dict[int, tuple[str, ...]] = field(default_factory=dict)  # each block's run ids, replacement seeds included
    counted: tuple[int, ...] | None = None
    preset: dict | None = None
    definition: str | None = None  # None: a grid.json older than definitions, taken as this grid's

    def preset_of_records(self, results_dir: Path) -> dict | None:
        """For a grid.json older than `preset`: the trainer settings its first recorded run resolved to."""
        for run_id in self.runs or ():
            record = read_record(results_dir / "runs" / run_id / "record.json")
            if record and isinstance(record.get("config"), dict):
                trainer = record["config"].get("trainer") or {}
                return {key: trainer.get(key.split(".")[1]) for key in PRESET_KEYS}
        return None

    def content(self) -> dict:
        """grid.json's content, its keys in the order they have always been written, so that an unchanged grid
        rewrites its committed grid.json byte for byte."""
        return {"name": self.name, "axes": self.axes, "runs": _maybe(list, self.runs), "report": self.report,
                "blocks": {"wanted": self.wanted, "seeds": {str(seed): list(ids) for seed, ids in self.seeds.items()},
                           "counted": _maybe(list, self.counted)},
                "preset": self.preset, "definition": self.definition}


def counted_seeds(frozen: tuple[int, ...] | None, complete: list[int], wanted: int | None) -> list[int]:
    """The seeds of the blocks a study's tables pair on: those frozen in grid.json, then, while fewer than
    `wanted`, the next complete blocks in seed order (`complete`; all of them while fewer are). So a study that
    asks for more blocks grows by the next ones, and a block that completes after the counted ones never swaps
    in for one of them: no one picks the answer by waiting for it."""
    kept = list(frozen or ())
    later = [seed for seed in complete if seed not in kept]
    room = len(later) if wanted is None else max(wanted - len(kept), 0)
    return kept + later[:room]


def read_ledger(results_dir: Path) -> Ledger:
    """The grid.json of `results_dir`; one that cannot be read or trusted stops the caller with one line, since
    guessing would lose the runs and blocks of earlier calls."""
    path = results_dir / GRID_JSON
    if not path.exists():
        return Ledger()
    try:
        return ledger_of(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}: {err}); it lists the runs of every earlier "
                        f"call: restore it from version control, or move it away to start the grid afresh") from None


def ledger_of(data: object) -> Ledger:
    """grid.json's parsed content checked, so that neither the grid nor the report trips over a hand-edited file
    later; ValueError says what is wrong with it."""
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    axes, runs, blocks = data.get("axes") or {}, data.get("runs"), data.get("blocks") or {}
    if not (isinstance(axes, Mapping) and all(isinstance(v, list) for v in axes.values())):
        raise ValueError("'axes' must map dotted config keys to value lists")
    if runs is not None and not _all(runs, str):
        raise ValueError("'runs' must be a list of run ids")
    if not isinstance(blocks, Mapping):
        raise ValueError("'blocks' must be an object with wanted, seeds and counted")
    wanted, seeds, counted = blocks.get("wanted"), blocks.get("seeds") or {}, blocks.get("counted")
    if wanted is not None and not (_is_int(wanted) and wanted >= 1):
        raise ValueError(f"'blocks.wanted' is {wanted!r}; valid: a number of blocks >= 1")
    if not (isinstance(seeds, Mapping) and all(str(s).isdigit() and _all(ids, str) for s, ids in seeds.items())):
        raise ValueError("'blocks.seeds' must map each seed to the list of its run ids")
    if counted is not None and not (isinstance(counted, list) and all(map(_is_int, counted))):
        raise ValueError(f"'blocks.counted' is {counted!r}; valid: null or a list of seeds")
    return Ledger(name=data.get("name"), axes=dict(axes), runs=_maybe(tuple, runs), report=data.get("report") or {},
                  wanted=wanted, seeds={int(s): tuple(ids) for s, ids in seeds.items()}, counted=_maybe(tuple, counted),
                  preset=data.get("preset"), definition=data.get("definition"))


def write_ledger(results_dir: Path, ledger: Ledger) -> None:
    with folder_errors(results_dir, "results folder"):  # a full disk: one line, not a traceback
        results_dir.mkdir(parents=True, exist_ok=True)
        write_json(results_dir / GRID_JSON, ledger.content())


def _all(values: object, kind: type) -> bool:
    return isinstance(values, list) and all(isinstance(v, kind) for v in values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _maybe(kind: type, values):
    """`values` as a `kind` (list, tuple), or None as None."""
    return None if values is None else kind(values)
