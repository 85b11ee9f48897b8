"""Seed blocks: which runs a report's tables pair on, and how each block stands.

A block is one seed's runs of the whole grid, every variant of every group. The tables pair variants within a
seed, so they hold whole blocks only: a seed that one variant lacks would still count for the others, and which
seeds finish first is no random draw (a slow variant, a lost machine). A block is complete when each of its
runs has ended (`record.run_ended`: completed, or failed in training; a diverged run is a result, and leaving
out the blocks that hold one would favour the variants that never diverge). The tables count the first
`wanted` complete blocks in seed order, frozen in grid.json once reached (grid/blocks.py): a block that
completes later is reported beside them, never swapped in, so no one picks the answer by waiting for it.

A block's runs are those grid.json lists for its seed (`blocks.seeds`) and the recorded runs of that seed.
An older grid.json lists run ids without blocks: a run that never started belongs to the seed its id ends in
(`-s<seed>-<8 hex digits>`). Without a listing, a block lacks every variant found in the folder that has no
run of its seed. Pure functions of the runs frame and of what grid.json says; no files.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

BLOCK_COLUMNS = ["seed", "status", "hardware", "ended", "total"]
COUNTED, PARTIAL, EXTRA = "counted", "partial", "extra"
RUN_SEED = re.compile(r"-s(\d+)-[0-9a-f]{8}$")  # the tail of a run id (`train.config` run ids)


@dataclass(frozen=True)
class BlockPlan:
    """grid.json's `blocks`: the complete blocks the study wants, each seed's run ids in grid order, and the
    seeds of the blocks its tables count (None until `wanted` blocks are complete). Empty for an older
    grid.json, or none."""

    wanted: int | None = None
    seeds: dict[int, tuple[str, ...]] = field(default_factory=dict)
    counted: tuple[int, ...] | None = None


def read_plan(section: object) -> BlockPlan:
    """grid.json's `blocks` section checked; ValueError says what is wrong with it."""
    if section is None:
        return BlockPlan()
    if not isinstance(section, Mapping):
        raise ValueError("'blocks' must be an object with wanted, seeds and counted")
    wanted, seeds, counted = section.get("wanted"), section.get("seeds") or {}, section.get("counted")
    if wanted is not None and not (_is_int(wanted) and wanted >= 1):
        raise ValueError(f"'blocks.wanted' is {wanted!r}; valid: a number of blocks >= 1")
    if not (isinstance(seeds, Mapping) and all(str(s).isdigit() and isinstance(ids, list)
                                                and all(isinstance(i, str) for i in ids) for s, ids in seeds.items())):
        raise ValueError("'blocks.seeds' must map each seed to the list of its run ids")
    if counted is not None and not (isinstance(counted, list) and all(map(_is_int, counted))):
        raise ValueError(f"'blocks.counted' is {counted!r}; valid: null or a list of seeds")
    return BlockPlan(wanted, {int(s): tuple(ids) for s, ids in seeds.items()},
                     None if counted is None else tuple(counted))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def seed_blocks(runs: pd.DataFrame, plan: BlockPlan, pending: Iterable[str] = ()) -> pd.DataFrame:
    """One row per seed block, in seed order (grid.json's, then ascending): seed, status (`counted`, `partial`:
    not every run has ended, `extra`: complete but not counted), hardware (its runs' kinds, ` and `-joined; None
    where no run says), ended and total (its runs). `pending`: run ids listed in grid.json without a record."""
    listed = {seed: set(ids) for seed, ids in plan.seeds.items()}
    for run_id in pending:
        if match := RUN_SEED.search(run_id):
            listed.setdefault(int(match[1]), set()).add(run_id)
    seeds = list(dict.fromkeys([*plan.seeds, *sorted({*map(int, runs["seed"].dropna()), *listed})]))
    variants = runs["variant"].nunique()
    rows = []
    for seed in seeds:
        own = runs[runs["seed"] == seed]
        ids = listed.get(seed, set()) | set(own["id"])
        kinds = sorted(own["hardware"].dropna().astype(str).unique())
        rows.append({"seed": seed, "hardware": " and ".join(kinds) or None, "ended": int(own["ended"].sum()),
                     "total": len(ids) if seed in plan.seeds else max(len(ids), variants)})
    blocks = pd.DataFrame(rows, columns=[c for c in BLOCK_COLUMNS if c != "status"])
    complete = blocks["ended"].eq(blocks["total"])
    counted = plan.counted if plan.counted is not None else list(blocks.loc[complete, "seed"])[:plan.wanted]
    blocks.insert(1, "status", [COUNTED if seed in counted else EXTRA if whole else PARTIAL
                                for seed, whole in zip(blocks["seed"], complete)])
    return blocks


def in_counted_blocks(runs: pd.DataFrame, blocks: pd.DataFrame) -> pd.Series:
    """Which runs the tables hold: those of the counted blocks."""
    return runs["seed"].isin(blocks.loc[blocks["status"].eq(COUNTED), "seed"])


def block_kinds(runs: pd.DataFrame) -> pd.Series:
    """seed -> the hardware kind its block ran on, for the blocks of `runs` that name one kind (a block whose
    runs mixed kinds, allowed by --allow-mixed-environments, or that does not say, has none)."""
    kinds = runs.dropna(subset=["hardware"]).groupby("seed")["hardware"].agg(lambda k: set(k.astype(str)))
    return kinds[kinds.map(len).eq(1)].map(lambda k: next(iter(k))).rename("hardware")
