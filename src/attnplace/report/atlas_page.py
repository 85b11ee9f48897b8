"""The atlas page of a results root: every study (a subfolder with runs/) built with `build_report`, its cells
computed by `atlas.py`, written as atlas.md (the table, what was left out and why, each row's omnibus test) and
atlas.png (the same table as a heat map). Formatting and I/O only; the numbers are `atlas.build_atlas`'s.
"""

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..atomic import atomic_write, folder_errors, write_text
from ..errors import UserError
from .atlas import Atlas, build_atlas
from .regimes import KEY, regime_frame
from .build import build_report
from .plots import png_bytes
from .runs import isna

MINUS = "\u2212"
SYMBOL = {"different": "≠", "equivalent": "≈", "inconclusive": "?"}
BEST = "★"
READS = {"test_acc": "test split: confirms", "val_acc": "validation: explores"}


# ---------------------------------------------------------------- the studies


def study_folders(root: Path) -> list[Path]:
    """The subfolders of `root` that hold runs/, by name; others (benchmarks/) are no studies."""
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "runs").is_dir())


def load_atlas(root: str | os.PathLike) -> tuple[Atlas, list[str]]:
    """The atlas of every study under `root` (each report built, none written), and the subfolders that are no
    study. A study whose report cannot be built is left out with its one-line reason."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"results root {root} does not exist")
    folders = study_folders(root)
    if not folders:
        raise UserError(f"no study in {root}: a study is a subfolder with runs/ (a grid's output_dir/name)")
    reports = {}
    for folder in folders:
        try:
            reports[folder.name] = build_report(folder)
        except UserError as err:
            reports[folder.name] = err
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p not in folders and not p.name.startswith("."))
    return build_atlas(reports), others


def write_atlas(root: str | os.PathLike) -> tuple[Atlas, list[Path]]:
    """`load_atlas`, then write root/atlas.md, root/atlas.png and root/atlas_regimes.png atomically; a folder that
    cannot be written is one line (`UnwritableFolder`)."""
    root = Path(root)
    atlas, others = load_atlas(root)
    regimes = regime_frame(atlas.rows, atlas.cells)
    text = markdown(atlas, others) + regime_markdown(regimes)
    pngs = {"atlas.png": png_bytes(plot_atlas(atlas)), "atlas_regimes.png": png_bytes(plot_regimes(regimes))}
    with folder_errors(root, "results folder"):
        written = [write_text(root / "atlas.md", text)]
        written += [atomic_write(root / name, lambda tmp, png=png: tmp.write_bytes(png)) for name, png in pngs.items()]
    return atlas, written


# ---------------------------------------------------------------- text


def signed(x: float, digits: int = 2) -> str:
    """`+0.31`, `−6.48` (a true minus sign)."""
    return f"{x:+.{digits}f}".replace("-", MINUS)


def p_is(p: float) -> str:
    return "p undefined" if isna(p) else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def symbol(verdict: str) -> str:
    return next((s for key, s in SYMBOL.items() if verdict.startswith(key)), "")


def row_label(row) -> str:
    parts = [row.study, row.group, row.attention + (f" ({row.options})" if row.options else "")]
    return " · ".join(p for p in parts if p)


def delta_text(cell) -> str:
    """`−6.48 [−8.77, −4.20] ≠`; `+0.30 [CI undefined] untested` for a cell on one seed."""
    ci = "[CI undefined]" if isna(cell.ci_low_pp) else f"[{signed(cell.ci_low_pp)}, {signed(cell.ci_high_pp)}]"
    return f"{signed(cell.delta_pp)} {ci} {symbol(cell.verdict) or 'untested'}"


def cell_text(cell, seed_blocks: int) -> str:
    """`delta_text`, with `n=4` when the cell pairs on fewer seeds than the row's blocks."""
    extra = "" if cell.n_pairs == seed_blocks else f" n={cell.n_pairs}"
    extra += " (Welch)" if cell.test == "welch" else ""
    text = delta_text(cell) + extra
    return f"**{text} {BEST}**" if cell.best else text


def regime(row) -> str:
    subset = f"{int(row.train_subset):,} images" if row.train_subset.isdigit() else row.train_subset
    return f"{subset}, {row.max_epochs} epochs, {row.precision}"


def omnibus_line(row) -> str:
    cells = f"{row.k - 1} cell{'s' if row.k != 2 else ''}"
    seeds = f"{row.n_seeds} seed{'s' if row.n_seeds != 1 else ''}"
    where = f"{row_label(row)}: {row.k} variants ({cells} and `none`) on the {seeds} every one completed"
    if isna(row.friedman_p):  # one seed, or every seed ties: a row that was not tested says nothing either way
        return f"{where}: not tested (Friedman's test needs 2 seeds that rank the variants); no best cell."
    if not row.differ:
        test = p_is(row.friedman_p).replace("p ", "Friedman p ", 1)
        return f"{where}: no placement differs ({test}); no best cell."
    line = (f"{where}: they differ (Friedman χ²({row.friedman_df:.0f}) = {row.friedman_chi2:.2f}, "
            f"{p_is(row.friedman_p)}); best cell {row.best} {BEST}, mean {row.best_mean_pct:.2f} % on those seeds")
    below = row.baseline_mean_pct > row.best_mean_pct
    return line + (f", below `none`'s {row.baseline_mean_pct:.2f} %." if below else
                   f" (`none`: {row.baseline_mean_pct:.2f} %).")


def markdown(atlas: Atlas, others: list[str] = ()) -> str:
    margins = ", ".join(f"±{m:g}" for m in dict.fromkeys(atlas.rows["equivalence_margin"])) or "—"
    lines = [
        "# Atlas: where × how, every study", "",
        "A row is one study's group (the variants that share every non-placement axis), split by attention type and "
        "by any other placement option its grid varies; a column is a pattern × gate form (p3c is p3 × mix). A cell "
        "holds Δ = the cell − the row's `none`, in percentage points of the row's metric, paired on the seeds both "
        "completed, with its 95% CI and its verdict: `≠` different (Holm p < 0.05, Holm over the row's cells), "
        f"`≈` equivalent within ±m (TOST p < 0.05; m is the study's margin, in the metric column: {margins} pp), "
        "`?` inconclusive. `n=k`: the cell pairs on k seeds, fewer than the row's seed blocks (the seeds of its "
        "`none`). A cell never pools two studies: each study is read on its own report's settings.", "",
        f"**Bold {BEST}**: the row's best cell (the highest mean on the seeds all its variants completed), marked only "
        "when Friedman's test over the row's cells and `none` has p < 0.05 (per-row lines below). The metric is "
        "named per row: `test_acc` reads the test split (confirms), `val_acc` the validation split (explores).", ""]
    header = ["study", "group", "attention", "dataset", "backbone", "regime", "seed blocks", "metric", *atlas.columns]
    table = []
    for row in atlas.rows.itertuples(index=False):
        cells = {c.cell: cell_text(c, row.seed_blocks)
                 for c in atlas.cells[atlas.cells["row"] == row.row].itertuples(index=False)}
        metric = (f"{row.metric}, epoch {row.epoch or 'not recorded'} ({READS.get(row.metric, '')}); "
                  f"m = ±{row.equivalence_margin:g} pp")
        table.append([row.study, row.group or "—", row.attention + (f" ({row.options})" if row.options else ""),
                      row.dataset, row.backbone, regime(row), str(row.seed_blocks), metric,
                      *(cells.get(c, "") for c in atlas.columns)])
    lines += _table(header, table) if table else ["No study has a where × how cell."]
    lines += ["", "## Left out", ""]
    lines += [f"- {r.study}: {r.reason}." for r in atlas.left_out.itertuples(index=False)] or ["- none"]
    if others:
        lines.append(f"- not studies (no runs/): {', '.join(others)}.")
    lines += ["", "## Do a row's placements differ? (Friedman, on the seeds every variant completed)", ""]
    lines += [f"- {omnibus_line(row)}" for row in atlas.rows.itertuples(index=False)]
    notes = atlas.notes + [f"{row_label(r)}: {r.notes}" for r in atlas.rows.itertuples(index=False) if r.notes]
    if notes:
        lines += ["", "## Kept out of the cells", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    return [line(header), line(["---"] * 8 + ["---:"] * (len(header) - 8)), *(line(r) for r in rows)]


# ---------------------------------------------------------------- the heat map


def plot_atlas(atlas: Atlas) -> Figure:
    """Rows × cells, colour = Δ (pp) on a diverging map centred on 0; each cell's text says Δ and its verdict's
    symbol (so the verdict does not rest on colour), the best cell boxed with a star."""
    rows, columns = atlas.rows, atlas.columns
    fig = Figure(figsize=(3.5 + 1.25 * max(len(columns), 1), 1.6 + 0.55 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    if rows.empty:
        ax.text(0.5, 0.5, "no study has a where × how cell", ha="center", va="center")
        ax.set_axis_off()
        return fig
    delta = np.full((len(rows), len(columns)), np.nan)
    at = {c: j for j, c in enumerate(columns)}
    for cell in atlas.cells.itertuples(index=False):
        delta[cell.row, at[cell.cell]] = cell.delta_pp
    finite = delta[np.isfinite(delta)]
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, 1.0)
    cmap = _cmap()
    image = ax.imshow(np.ma.masked_invalid(delta), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for cell in atlas.cells.itertuples(index=False):
        i, j = cell.row, at[cell.cell]
        text = f"{signed(cell.delta_pp)} {symbol(cell.verdict) or '·'}" + (f" {BEST}" if cell.best else "")
        ax.text(j, i, text, ha="center", va="center", fontsize=9, gid="cell",
                color="white" if not math.isnan(delta[i, j]) and abs(delta[i, j]) > 0.6 * limit else "black",
                fontweight="bold" if cell.best else "normal")
        if cell.best:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="black", gid="best", zorder=3))
    for i in np.flatnonzero(rows["study"].to_numpy()[1:] != rows["study"].to_numpy()[:-1]):
        ax.axhline(i + 0.5, color="white", lw=3, zorder=2)  # between studies: no row pools two
    labels = [f"{row_label(r)}\n{r.metric} ep {r.epoch}, {r.seed_blocks} block{'s' if r.seed_blocks != 1 else ''}, "
              f"{'Friedman ' + p_is(r.friedman_p)}" for r in rows.itertuples(index=False)]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xticks(range(len(columns)), [c.replace(" × ", " ×\n") for c in columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_title("Δ vs the row's none (pp): ≠ different (Holm), ≈ equivalent within ±m (TOST), ? inconclusive, "
                 f"· untested (one seed pair); {BEST} boxed: best cell (Friedman p < 0.05); grey: not run", fontsize=9)
    fig.colorbar(image, ax=ax, label="Δ vs none, percentage points", shrink=0.8)
    return fig


# ---------------------------------------------------------------- across regimes


def regime_markdown(regimes) -> str:
    """The section of atlas.md that says how each answer moves with the regime (`regimes.regime_frame`)."""
    lines = ["", "## How an answer moves with the regime", "",
             "Each cell held in more than one regime, keyed by (attention, cell, precision): its Δ against its own "
             "row's `none`, regime by regime, the smallest training budget first (`atlas_regimes.png`). Studies are "
             "never pooled: two studies in one regime are two lines.", ""]
    if regimes.empty:
        return "\n".join(lines + ["No cell is held in more than one regime yet."]) + "\n"
    table = [[r.attention, r.cell, r.precision, r.regime, r.study, str(r.n_pairs), delta_text(r)]
             for r in regimes.itertuples(index=False)]
    header = ["attention", "cell", "precision", "regime", "study", "n", "Δ vs none (pp) [95% CI]"]
    rule = "|" + "---|" * (len(header) - 2) + "---:|---:|"
    rows = ["| " + " | ".join(cells) + " |" for cells in table]
    return "\n".join(lines + ["| " + " | ".join(header) + " |", rule, *rows]) + "\n"


def plot_regimes(regimes) -> Figure:
    """One panel per (attention, cell): Δ against none with its CI, one point per study and regime, regimes on x
    by training budget, precision by marker and colour; the zero line is `none`."""
    panels = list(dict.fromkeys(zip(regimes["attention"], regimes["cell"])))
    columns = min(3, max(len(panels), 1))
    rows = max(math.ceil(len(panels) / columns), 1)
    fig = Figure(figsize=(5.2 * columns, 3.6 * rows), layout="constrained")
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no cell is held in more than one regime yet", ha="center", va="center")
        ax.set_axis_off()
        return fig
    styles = {p: (m, f"C{i}") for i, (p, m) in enumerate(zip(dict.fromkeys(regimes["precision"]), "osD^v"))}
    for i, (attention, cell) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        part = regimes[(regimes["attention"] == attention) & (regimes["cell"] == cell)]
        order = list(dict.fromkeys(part.sort_values("budget", kind="stable")["regime"]))
        for k, r in enumerate(part.itertuples(index=False)):
            x = order.index(r.regime) + 0.08 * (k % 5 - 2)  # studies in one regime side by side
            marker, color = styles[r.precision]
            ax.errorbar(x, r.delta_pp, yerr=[[r.delta_pp - r.ci_low_pp], [r.ci_high_pp - r.delta_pp]],
                        fmt=marker, color=color, capsize=3, gid="answer", label=r.precision)
        ax.axhline(0, color="0.5", lw=1)
        ax.set_xticks(range(len(order)), [o.replace(", ", "\n", 1).replace(" × ", "\n× ") for o in order], fontsize=7)
        ax.set_title(f"{attention} · {cell}", fontsize=9)
        ax.set_ylabel("Δ vs none, pp (95% CI)", fontsize=8)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
    return fig


def _cmap():
    from matplotlib import colormaps

    return colormaps["RdBu"].with_extremes(bad="0.92")  # grey: a cell the row does not hold

