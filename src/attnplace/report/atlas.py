"""The atlas: every study's where × how cells side by side, each study on its own report. Pure computation:
`Report`s in, frames out (`atlas_page.py` finds the studies, formats the page and writes it).

A row is one study's group (its variants that share every non-placement axis), split further by attention
type and by any other placement option its grid varies (`optim.gate_lr_scale`, `model.lambda_init`, ...), so
no cell ever averages two settings, and no row ever holds two studies. A column is a where × how cell: the
pattern's row of the where × how table, as its class declares it (`where`: `p1`–`p4`, `skip_only`; `p3c` is `p3`)
× the gate form (`mask`, `near_identity`, `mix`: the `model.gate` axis, else the run config's `model.gate`, else
the form the pattern's class gives it).

A cell is the study's own comparison with the row's `none` (the report's summary: Δ paired on the seeds both
completed, its 95% CI, p and TOST p on the study's metric), with Holm taken again over the row's cells and the
report's verdict rule on it: `different` (Holm p < 0.05), `equivalent within ±m` (TOST p < 0.05), else
`inconclusive`. A row names a best cell (the highest mean on the seeds every one of its variants completed) only
when Friedman's test over its cells and the baseline, on those seeds, has p < 0.05.

Differences are in percentage points (`*_pp`), means in percent (`*_pct`).
"""

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from ..models.blocks import PATTERNS, where_and_how
from ..models.gates import GATES
from . import anova, stats
from .regimes import budget
from .runs import BASELINE, PATTERN, PLACEMENT, isna, lookup, value_text
from .tuned import CONFIRM_METRIC

# The columns, in the order blocks.py and gates.py give them: each pattern's row of the where × how table (its
# class's `where`; a preset such as p3c shares its base's) × each gate form.
WHERE = tuple(dict.fromkeys(block.where for _, block in PATTERNS.registered() if block.where))
HOW = tuple(name for name, _ in GATES.registered())
CELLS = tuple(f"{where} × {how}" for where in WHERE for how in HOW)
GATE = "model.gate"
# Placement axes a cell or a row already says: any other splits the row.
OWN_AXES = {PATTERN, GATE, "model.attention", "model.p4_gate"}
SYNTHETIC = "synthetic"
ROW_COLUMNS = ["row", "study", "group", "attention", "options", "dataset", "backbone", "train_subset",
               "images_per_epoch", "max_epochs", "precision", "seed_blocks", "metric", "epoch", "equivalence_margin",
               "baseline", "baseline_mean_pct",
               "k", "n_seeds", "friedman_chi2", "friedman_df", "friedman_p", "differ", "best", "best_mean_pct", "notes"]
CELL_COLUMNS = ["row", "study", "cell", "where", "how", "variant", "delta_pp", "ci_low_pp", "ci_high_pp", "n_pairs",
                "test", "p_value", "p_holm", "tost_p", "equivalence_margin", "verdict", "mean_pct", "best"]


@dataclass
class Atlas:
    """`rows` (one per study × group × attention × other options), `cells` (one per row × where × how cell it
    holds), `columns` (the cells some row holds, in `CELLS` order), `left_out` (study, reason)."""

    rows: pd.DataFrame
    cells: pd.DataFrame
    columns: list[str]
    left_out: pd.DataFrame
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- which cell a variant is


def cell_of(variant: Mapping, model: Mapping) -> tuple[str, str] | None:
    """(where, how) of a variant (a summary row) whose run config's model section is `model`, as its pattern's
    class says (`blocks.where_and_how`), the `model.gate` axis value first; None when it is no where × how cell
    (the plain block, or a pattern the class table does not place)."""
    found = where_and_how(variant[PATTERN], model)
    axis_gate = variant.get(GATE)
    return found and (found[0], found[1] if isna(axis_gate) else axis_gate)


def cells_of(report) -> dict[str, str]:
    """variant -> its where × how cell (`p2 × mask`), for the report's variants that are one."""
    configs, cells = _configs(report), {}
    for v in report.summary.to_dict("records"):
        if found := cell_of(v, configs.get(v["variant"], {}).get("model") or {}):
            cells[v["variant"]] = " × ".join(found)
    return cells


def left_out_reason(report) -> str | None:
    """Why a study has no row: synthetic data (a pipeline check, not a result), or a baseline that is not the
    `none` pattern (its Δs are against another placement); None when it has rows."""
    if any(lookup(rec["config"], "data.name") == SYNTHETIC for rec in report.records):
        return "synthetic data: a pipeline check (smoke), not a result"
    baselines = report.summary.loc[report.summary["baseline"].astype(bool), PATTERN]
    if baselines.empty or not baselines.eq(BASELINE).all():
        return (f"its report baseline is {report.settings.baseline or 'missing'}, not the `none` pattern: its Δs are "
                f"against another placement")
    return None


# ---------------------------------------------------------------- one study


def _configs(report) -> dict[str, dict]:
    """variant -> the config of its first run (a variant's runs differ only in the seed)."""
    by_id = {rec["id"]: rec["config"] for rec in report.records}
    first = report.runs.drop_duplicates("variant")
    return {v: by_id.get(i, {}) for v, i in zip(first["variant"], first["id"])}


def _accuracies(report) -> pd.DataFrame:
    """variant × seed -> the report's metric, completed runs only."""
    runs, metric = report.runs, report.settings.metric
    done = runs[runs["status"].eq("completed") & runs[metric].notna()]
    return done.pivot(index="variant", columns="seed", values=metric)


def _one(values) -> str:
    """The distinct values, `/`-joined (one, in a well-formed row)."""
    return "/".join(dict.fromkeys("" if isna(v) else str(v) for v in values))


def _dataset(config: Mapping) -> str:
    name, path = lookup(config, "data.name"), lookup(config, "data.path")
    return f"{name} ({str(path).replace(chr(92), '/').rsplit('/', 1)[-1]})" if path else str(name)


def _describe_row(configs: list[dict], records: list[dict]) -> dict:
    precisions = [lookup(c, "trainer.precision") for c in configs]
    if all(isna(p) or p == "auto" for p in precisions):  # an older config: the environment says what ran
        precisions = [(r.get("environment") or {}).get("precision") for r in records]
    images = [h[0].get("train_images") for r in records if (h := r.get("history"))]
    return {"dataset": _one(_dataset(c) for c in configs),
            "images_per_epoch": _one(i for i in images if i),
            "backbone": _one(lookup(c, "model.backbone") for c in configs),
            "train_subset": _one(lookup(c, "data.train_subset") or "full" for c in configs),
            "max_epochs": _one(lookup(c, "trainer.max_epochs") for c in configs),
            "precision": _one(precisions)}


def study_frames(study: str, report) -> tuple[list[dict], list[dict], list[str]]:
    """The rows and cells of one study (dicts with the `ROW_COLUMNS`/`CELL_COLUMNS`; `row` numbers them within the
    study), and notes on what was kept out of the cells. A tuned comparison (`tuned.tune`) adds its rows after the
    study's own, labelled `tuned lr`: each variant at its own value, on the confirm blocks' test accuracy."""
    rows, cells, notes = _group_frames(study, report)
    if report.tuned is not None and len(report.tuned.summary):
        tuned = report.tuned
        view = dataclasses.replace(report, summary=tuned.summary, runs=tuned.runs, tuned=None,
                                   settings=dataclasses.replace(report.settings, metric=CONFIRM_METRIC))
        more_rows, more_cells, more_notes = _group_frames(study, view)
        name, offset = f"tuned {tuned.axis.rsplit('.', 1)[-1]}", len(rows)
        rows += [{**r, "row": r["row"] + offset, "group": ", ".join(filter(None, [name, r["group"]]))}
                 for r in more_rows]
        cells += [{**c, "row": c["row"] + offset} for c in more_cells]
        notes += more_notes
    return rows, cells, notes


def _group_frames(study: str, report) -> tuple[list[dict], list[dict], list[str]]:
    """`study_frames` of the report's own groups."""
    summary, settings = report.summary, report.settings
    configs, acc = _configs(report), _accuracies(report)
    ids_of = report.runs.groupby("variant")["id"].agg(set).to_dict()
    rows, cells, notes = [], [], []
    for group, members in summary.groupby("group", sort=False, dropna=False):
        group = "" if isna(group) else group
        is_base = members["baseline"].astype(bool)
        if not is_base.any():
            notes.append(f"{study}{f' · {group}' if group else ''}: no `none` variant, so no row")
            continue
        base = members[is_base].iloc[0]
        for (attention, options), variants in _split(study, members[~is_base], configs, notes).items():
            row, row_cells = _row(base, variants, acc, settings.equivalence_margin)
            names = [base["variant"], *(c["variant"] for c in row_cells)]
            ids = set().union(*(ids_of.get(n, set()) for n in names))
            row.update(_describe_row([configs.get(n, {}) for n in names],
                                     [r for r in report.records if r["id"] in ids]))
            kept_out = [f"{v['variant']} kept out: the same cell ({v['cell']}) as {first}"
                        for v, first in _collisions(variants)]
            row.update(row=len(rows), study=study, group=group, attention=attention, options=options,
                       metric=settings.metric, notes="; ".join(kept_out))
            cells += [{**c, "row": len(rows), "study": study} for c in row_cells]
            rows.append(row)
    return rows, cells, notes


def _split(study: str, variants: pd.DataFrame, configs: dict, notes: list[str]) -> dict[tuple, list[dict]]:
    """A group's non-baseline variants with their cell (`cell`, `where`, `how`), by (attention type, the other
    placement options the grid varies); a variant that is no where × how cell goes to `notes`."""
    others = [a for a in variants.columns if a in PLACEMENT and a not in OWN_AXES]
    split: dict[tuple, list[dict]] = {}
    for v in variants.to_dict("records"):
        model = configs.get(v["variant"], {}).get("model") or {}
        if (found := cell_of(v, model)) is None:
            notes.append(f"{study}: {v['variant']} is no where × how cell (pattern {v[PATTERN]})")
            continue
        where, how = found
        options = ", ".join(f"{a.rsplit('.', 1)[-1]}={value_text(v[a])}" for a in others if not isna(v[a]))
        attention = model.get("attention") or v.get("model.attention") or ""
        cell = {"cell": f"{where} × {how}", "where": where, "how": how}
        split.setdefault((attention, options), []).append({**v, **cell})
    return split


def _collisions(variants: list[dict]) -> list[tuple[dict, str]]:
    """The variants that fall in a cell an earlier variant of the row holds, each with that variant's label."""
    first: dict[str, str] = {}
    return [(v, first[v["cell"]]) for v in variants if first.setdefault(v["cell"], v["variant"]) != v["variant"]]


def _row(base: pd.Series, variants: list[dict], acc: pd.DataFrame, margin: float) -> tuple[dict, list[dict]]:
    """A row's cells against its baseline (Holm over the row's cells), its Friedman test and best cell; a cell
    holds one variant (never an average: a second variant of the same cell is left out, `_collisions`)."""
    kept = {v["cell"]: v for v in reversed(variants)}  # the first variant of each cell
    variants = [v for v in variants if kept[v["cell"]] is v]
    p_holm = stats.holm([v["p_value"] for v in variants])
    table = anova.blocks(acc.reindex([base["variant"], *(v["variant"] for v in variants)]))
    means = 100 * table.mean(axis=1)
    friedman = anova.friedman(table)
    differ = bool(friedman["friedman_p"] < stats.ALPHA)
    cells = [{"cell": v["cell"], "where": v["where"], "how": v["how"], "variant": v["variant"],
              "delta_pp": 100 * v["diff"], "ci_low_pp": 100 * v["diff_ci_low"], "ci_high_pp": 100 * v["diff_ci_high"],
              "n_pairs": v["n_pairs"], "test": v["test"], "p_value": v["p_value"], "p_holm": holm,
              "tost_p": v["tost_p"], "equivalence_margin": margin,
              "verdict": stats.verdict(holm, v["tost_p"], margin / 100),
              "mean_pct": means.get(v["variant"], math.nan), "best": False} for v, holm in zip(variants, p_holm)]
    scored = [c for c in cells if not isna(c["mean_pct"])]
    if differ and scored:
        max(scored, key=lambda c: c["mean_pct"])["best"] = True
    best = next((c for c in cells if c["best"]), None)
    epochs = [x for x in [base["epoch"], *(v["epoch"] for v in variants)] if not isna(x) and x != ""]
    row = {"seed_blocks": int(base["n"]), "epoch": _one(epochs), "equivalence_margin": margin,
           "baseline": base["variant"], "baseline_mean_pct": means.get(base["variant"], math.nan),
           "k": table.shape[0], "n_seeds": table.shape[1], **friedman, "differ": differ,
           "best": best["cell"] if best else "", "best_mean_pct": best["mean_pct"] if best else math.nan}
    return row, cells


# ---------------------------------------------------------------- every study


def converged_first(rows: pd.DataFrame, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows by training budget, the largest (the closest to a converged regime) first, studies otherwise in
    their order; rows renumbered in that order, in both frames."""
    order = sorted(range(len(rows)), key=lambda i: -budget(rows.iloc[i]))
    number = {old: new for new, old in enumerate(rows["row"].iloc[order])}
    rows = rows.iloc[order].assign(row=lambda f: f["row"].map(number)).reset_index(drop=True)
    return rows, cells.assign(row=cells["row"].map(number))


def build_atlas(reports: Mapping[str, object]) -> Atlas:
    """The atlas of `reports`: study name -> its `Report`, or the exception that kept it from being built (a
    `UserError`: the study is left out with that line). Studies keep the mapping's order."""
    rows, cells, left_out, notes = [], [], [], []
    for study, report in reports.items():
        if isinstance(report, Exception):
            left_out.append({"study": study, "reason": f"its report cannot be built: {report}"})
            continue
        if reason := left_out_reason(report):
            left_out.append({"study": study, "reason": reason})
            continue
        study_rows, study_cells, study_notes = study_frames(study, report)
        notes += study_notes
        if not study_cells:
            left_out.append({"study": study, "reason": "no where × how cell: no variant with p1–p4 and a gate form"})
            continue
        offset = len(rows)  # every row holds a cell: a group's baseline alone makes none
        rows += [{**r, "row": r["row"] + offset} for r in study_rows]
        cells += [{**c, "row": c["row"] + offset} for c in study_cells]
    rows_frame, cells_frame = converged_first(pd.DataFrame(rows, columns=ROW_COLUMNS),
                                              pd.DataFrame(cells, columns=CELL_COLUMNS))
    present = set(cells_frame["cell"])
    return Atlas(rows_frame, cells_frame, [c for c in CELLS if c in present],
                 pd.DataFrame(left_out, columns=["study", "reason"]), notes)
