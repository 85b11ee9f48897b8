"""Seed blocks: which runs a report's tables pair on, and how each block stands.

A block is one seed's runs of the whole grid, every variant of every group. The tables pair variants within a
seed, so they hold whole blocks only: a seed that one variant lacks would still count for the others, and which
seeds finish first is no random draw (a slow variant, a lost machine). A block is complete when each of its
runs has ended (`record.run_ended`: completed, or failed in training; a diverged run is a result, and leaving
out the blocks that hold one would favour the variants that never diverge). The tables count the first
`wanted` complete blocks in seed order, frozen in grid.json once reached (grid/seed_blocks.py): a block that
completes later is reported beside them, never swapped in, so no one picks the answer by waiting for it.

A block's runs are those grid.json lists for its seed (`blocks.seeds`) and the recorded runs of that seed.
An older grid.json lists run ids without blocks: a run that never started belongs to the seed its id ends in
(`-s<seed>-<8 hex digits>`). Without a listing, a block lacks every variant found in the folder that has no
run of its seed. Pure functions of the runs frame and of what grid.json says; no files.
"""

import re
from collections.abc import Iterable

import pandas as pd

from ..run.ledger import Ledger, counted_seeds

BLOCK_COLUMNS = ["seed", "status", "hardware", "ended", "total"]
COUNTED, PARTIAL, EXTRA = "counted", "partial", "extra"
RUN_SEED = re.compile(r"-s(\d+)-[0-9a-f]{8}$")  # the tail of a run id (`run.config` run ids)


def seed_blocks(runs: pd.DataFrame, plan: Ledger, pending: Iterable[str] = ()) -> pd.DataFrame:
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
    counted = counted_seeds(plan.counted, list(blocks.loc[complete, "seed"]), plan.wanted)
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
