"""A run's result as a grid worker reports it: the one shape that crosses from a worker to its grid, as a JSON line
on a local worker's stdout (grid/local.py) or as a Ray task's return value (grid/cluster.py)."""

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunResult:
    """What a grid needs of one run it handed out, to show its progress and to decide whether to stop.

    `status` is the record's (`completed`, `failed`, ...), or `busy` (another process trains the run) or
    `retrying` (its worker died; it is handed again, local.py), which finish nothing. `user_error`: it failed on
    a `UserError` (missing data, say), which the grid's other runs are likely to repeat; `cause` is what they
    would share. `unwritable`: that error was its folder's (a full disk), which every later run would repeat.
    """

    id: str
    status: str
    error: str | None = None
    cause: str | None = None
    metrics: dict = field(default_factory=dict)
    user_error: bool = False
    unwritable: bool = False

    @classmethod
    def failed(cls, run_id: str, error: str, **how) -> "RunResult":
        """A run that failed before or around training; `how` says whether on a `UserError` and of what cause."""
        return cls(run_id, "failed", error, **how)

    def to_json(self) -> str:
        """The line a worker writes on its stdout (worker.py `serve`)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> "RunResult":
        """A worker's line; a worker from before `cause` and `unwritable` were reported leaves them at their
        defaults, so a grid can read a worker still running older code."""
        return cls(**json.loads(line))
