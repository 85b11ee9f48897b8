"""`grid.json`: what a results folder's grid has planned, so that a study can go on from any machine.

    {"name": ..., "axes": ..., "report": ...,
     "runs": [every run id a call has planned, in the order first planned],
     "blocks": {"wanted": 5, "seeds": {"0": [the run ids of seed 0's block], ...}, "counted": [0, 1, 2, 3, 5]},
     "preset": {"trainer.precision": "32-true", "trainer.channels_last": true, "trainer.compile": false},
     "definition": "a hash of what the grid computes, but its seeds"}

The run list only grows: a call on machine B keeps the blocks machine A planned, replacement seeds included.
`counted` is null until the study first holds `wanted` complete blocks; then it is frozen, and those are the
blocks its tables pair on (a block that completes later is reported beside them). `preset` fixes, at the
grid's first call, the trainer settings the grid file leaves to the machine. The report reads this file too
(report/records.py).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic import folder_errors, write_json
from ..errors import UserError
from ..train.record import read_record

GRID_JSON = "grid.json"
# The trainer settings a machine's preset decides (`TrainerConfig.resolved`); each changes the numbers a run computes.
PRESET_KEYS = ("trainer.precision", "trainer.channels_last", "trainer.compile")


@dataclass(frozen=True)
class Ledger:
    """What grid.json said before this call (empty for a new results folder)."""

    runs: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()  # the blocks' seeds, replacement seeds included
    counted: tuple[int, ...] | None = None
    preset: dict | None = None
    definition: str | None = None  # None: a grid.json older than definitions, taken as this grid's

    def preset_of_records(self, results_dir: Path) -> dict | None:
        """For a grid.json older than `preset`: the trainer settings its first recorded run resolved to."""
        for run_id in self.runs:
            record = read_record(results_dir / "runs" / run_id / "record.json")
            if record and isinstance(record.get("config"), dict):
                trainer = record["config"].get("trainer") or {}
                return {key: trainer.get(key.split(".")[1]) for key in PRESET_KEYS}
        return None


def read_ledger(results_dir: Path) -> Ledger:
    path = results_dir / GRID_JSON
    if not path.exists():
        return Ledger()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        blocks = data.get("blocks") or {}
        counted = blocks.get("counted")
        return Ledger(tuple(data.get("runs") or ()), tuple(int(s) for s in blocks.get("seeds") or {}),
                      None if counted is None else tuple(int(s) for s in counted), data.get("preset"),
                      data.get("definition"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}: {err}); it lists the runs of every earlier "
                        f"call: restore it from version control, or move it away to start the grid afresh") from None


def write_ledger(results_dir: Path, content: dict) -> None:
    with folder_errors(results_dir, "results folder"):  # a full disk: one line, not a traceback
        results_dir.mkdir(parents=True, exist_ok=True)
        write_json(results_dir / GRID_JSON, content)
