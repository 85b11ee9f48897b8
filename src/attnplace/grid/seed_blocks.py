"""Seed blocks: a study's unit of evidence, and which of its runs a call trains.

A block is one seed's runs of the whole grid, every variant of every group: the report pairs variants within a
seed and never across seeds, so a block must be trained on one hardware kind (the same config computes other
numbers on another CPU or GPU model), while different blocks may train on different hardware. A block is
complete when each of its runs has ended, completed or failed in training (a diverged run is a result: keeping
only the seeds where every variant trained would bias the table).

A call trains block by block, the oldest open block first, whatever the order of the grid file's axes, so a
stopped grid leaves at most as many partial blocks as it had workers. On hardware other than a partial block's,
that block is left as it is (it finishes when its hardware comes back), and the call starts the next unused
seed as a replacement, until the study holds the number of complete blocks it asks for.
"""

from collections.abc import Collection
from dataclasses import dataclass

from ..run.config import seed_of_run_id
from ..run.environment import hardware_kind
from ..run.ledger import counted_seeds
from ..run.record import read_record, run_ended
from .spec import Grid, GridRun


@dataclass(frozen=True)
class Block:
    seed: int
    runs: tuple[GridRun, ...]
    records: tuple[dict, ...]  # each run's record, {} where it has none

    @property
    def kinds(self) -> set[str]:
        """The hardware kinds its runs trained on: one, or none before any run started training."""
        return {kind for r in self.records if (kind := hardware_kind(r.get("environment") or {}))}

    @property
    def ended(self) -> int:
        return sum(map(run_ended, self.records))

    @property
    def complete(self) -> bool:
        return self.ended == len(self.runs)

    def fits(self, here: Collection[str] | None) -> bool:
        """Whether it may train on `here` (hardware kinds; None: anywhere): it is unbound, or bound to one of them."""
        return here is None or not self.kinds or (len(self.kinds) == 1 and self.kinds <= set(here))

    def todo(self, retry_failed: bool) -> list[GridRun]:
        """Its runs without a result, and with `retry_failed` those that failed in training too."""
        return [run for run, record in zip(self.runs, self.records)
                if record.get("status") != "completed" and (retry_failed or not run_ended(record))]

    def describe(self) -> str:
        where = f", on {' and '.join(sorted(self.kinds))}" if self.kinds else ""
        return f"seed {self.seed} ({self.ended} of {len(self.runs)} runs ended{where})"


def read_blocks(grid: Grid) -> list[Block]:
    return [Block(seed, tuple(runs), tuple(read_record(r.config.resolved_run_dir() / "record.json") or {}
                                           for r in runs))
            for seed in grid.seeds if (runs := grid.block(seed))]


@dataclass(frozen=True)
class Schedule:
    """What a call does: its grid (with any replacement seeds), the blocks it finds, and the runs to train in
    order, each with the hardware kind its block is bound to."""

    grid: Grid
    blocks: list[Block]
    todo: list[GridRun]
    kind_of: dict[str, str | None]  # run id -> its block's hardware kind (None: the block is unbound)
    here: frozenset[str] | None

    def lines(self) -> list[str]:
        """What `--dry-run` and the grid's first lines say about its blocks."""
        complete = [b for b in self.blocks if b.complete]
        planned = {run.seed for run in self.todo}
        partial = [b for b in self.blocks if not b.complete and b.kinds]
        waiting = [b for b in self.blocks if not b.kinds and not b.complete]
        lines = [f"blocks: {len(complete)} of {self.grid.wanted} wanted complete"
                 + (f": {_seeds(complete)}" if complete else "")
                 + (f" ({_kinds(complete)})" if complete else "")]
        for block in partial:
            verdict = "training here" if block.seed in planned else (
                "stays partial: not this hardware" if not block.fits(self.here) else "not needed")
            lines.append(f"  partial: {block.describe()}; {verdict}")
        if starts := [b for b in waiting if b.seed in planned]:
            replacing = [b for b in starts if b.seed not in self._listed_seeds()]
            lines.append(f"  to start here: seed {_seeds(starts)}"
                         + (f" (replacement seed {_seeds(replacing)} for the blocks left partial)"
                            if replacing else ""))
        return lines

    def _listed_seeds(self) -> set[int]:
        return set(self.grid.axes.get("seed") or self.grid.seeds[:1])


def schedule(grid: Grid, here: Collection[str] | None, retry_failed: bool = False) -> Schedule:
    """The runs to train on hardware `here` (None: anywhere), block-major: first the open blocks bound to this
    hardware, oldest first, then unstarted blocks, then replacement seeds, as many as bring the study to
    `grid.wanted` complete blocks. Blocks bound to other hardware are left alone."""
    here = None if here is None else frozenset(here)
    blocks = read_blocks(grid)
    complete = [b for b in blocks if b.complete]
    open_here = [b for b in blocks if b.kinds and b.fits(here) and b.todo(retry_failed)]
    fresh = [b for b in blocks if not b.kinds and not b.complete]
    needed = max(0, grid.wanted - len(complete) - len([b for b in open_here if not b.complete]))
    if needed > len(fresh):
        grid = grid.with_seeds(replacement_seeds(grid, needed - len(fresh)))
        blocks = read_blocks(grid)
        fresh = [b for b in blocks if not b.kinds and not b.complete]
    chosen = open_here + fresh[:needed]
    todo = [run for block in sorted(chosen, key=blocks.index) for run in block.todo(retry_failed)]
    kinds = {run.id: next(iter(block.kinds), None) for block in chosen for run in block.runs}
    return Schedule(grid, blocks, todo, kinds, here)


def replacement_seeds(grid: Grid, count: int) -> list[int]:
    """The next `count` unused seeds, after the largest the grid knows or its results folder holds runs of: a
    grid.json that another definition of the grid replaced forgot its replacement seeds, whose blocks may be
    bound to other hardware."""
    on_disk = [seed_of_run_id(folder.name) for folder in (grid.results_dir / "runs").glob("*")]
    start = max([*grid.seeds, *(s for s in on_disk if s is not None)]) + 1
    return list(range(start, start + count))


def counted_blocks(grid: Grid, blocks: list[Block]) -> list[int] | None:
    """The seeds of the blocks the study's tables pair on, frozen once `grid.wanted` blocks are complete: the
    first complete blocks in seed order. A grid file that later asks for more adds the next complete blocks to
    them; a block that completes later never swaps in."""
    complete = [b.seed for b in blocks if b.complete]  # blocks come in the grid's seed order
    counted = counted_seeds(grid.ledger.counted, complete, grid.wanted)
    return counted if grid.ledger.counted is not None or len(counted) >= grid.wanted else None


def _seeds(blocks: list[Block]) -> str:
    return ", ".join(str(b.seed) for b in blocks)


def _kinds(blocks: list[Block]) -> str:
    counts: dict[str, int] = {}
    for block in blocks:
        key = " and ".join(sorted(block.kinds)) or "hardware not recorded"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{n} on {kind}" for kind, n in counts.items())
