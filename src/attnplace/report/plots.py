"""Result plots: accuracy per variant, validation accuracy over training, the all-pairs matrix, the factorial's
interaction plot, and gate and mask trajectories.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry to leak from a long grid process, no GUI backend, and safe off the main thread.
Rendering to PNG uses the Agg canvas.
"""

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .tables import metric_name

GATE_TITLES = {"gamma_s": r"$\gamma_s$", "gamma_r": r"$\gamma_r$", "lambda": r"$\lambda$"}
MASK_TITLES = {"channel_mean": "channel mask, mean", "spatial_mean": "spatial mask, mean",
               "gain": "gain ‖g(t)‖/‖t‖ of the gate (1: passes t unchanged)"}
MODULE_STYLES = {"attn": "-", "attn_s": "--", "attn_r": ":"}
LINESTYLES = ("-", "--", ":", "-.")


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (callers write them atomically)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def plot_accuracy(summary: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """The summary's metric per variant (%): each seed's run as a small dot, the mean with its 95% CI (clipped
    to [0, 100]) beside it; baselines marked, with a dashed line at the baseline mean of each group."""
    rows = summary[summary["n"] > 0].reset_index(drop=True)
    fig = Figure(figsize=(7, 1.2 + 0.4 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    y = -rows.index.to_numpy()  # first summary row on top
    mean, err = _mean_and_ci_bars(rows)
    base = rows["baseline"].to_numpy(dtype=bool)
    for mask, style in ((~base, dict(fmt="o", color="tab:blue", label="mean, 95% CI")),
                        (base, dict(fmt="D", color="tab:red", label="baseline"))):
        if mask.any():
            ax.errorbar(mean[mask], y[mask], xerr=[e[mask] for e in err], capsize=3, **style)
    done = runs[runs["status"] == "completed"]
    metric = summary["metric"].iloc[0]
    for row_y, variant in zip(y, rows["variant"]):
        accs = 100 * done.loc[done["variant"] == variant, metric].dropna()
        ax.scatter(accs, [row_y - 0.22] * len(accs), s=12, color="0.35", zorder=3, gid="seeds",
                   label="one seed" if row_y == y[0] else None)
    # Rows of one group are adjacent, so their segments join into one dashed line per baseline.
    ax.vlines(100 * rows["baseline_acc_mean"], y - 0.5, y + 0.5, colors="tab:red", linestyles="--", lw=1)
    ax.set_yticks(y, rows["variant"])
    epochs = ", ".join(dict.fromkeys(e for e in rows["epoch"] if e))
    ax.set_xlabel(f"{metric_name(summary)} (%){f' at epoch {epochs}' if epochs else ''}: seeds, mean and 95% CI")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def _mean_and_ci_bars(rows: pd.DataFrame) -> tuple[pd.Series, list[pd.Series]]:
    """The summary rows' mean (%) and the lengths of their 95% CI bars below and above it, the CI clipped to
    [0, 100]; a single run has no CI, so no bar rather than a misleading zero-width one."""
    mean = 100 * rows["acc_mean"]
    low, high = 100 * rows["ci_low"].clip(0, 1), 100 * rows["ci_high"].clip(0, 1)
    return mean, [(mean - low).fillna(0), (high - mean).fillna(0)]


def plot_gates(gates_mean: pd.DataFrame) -> Figure | None:
    """One panel per gate kind: mean over seeds per (variant, stage) with a ±1 std band.

    Colour is the variant, line style the stage. Returns None when no gates were recorded.
    """
    if gates_mean.empty:
        return None
    kinds = [k for k in GATE_TITLES if k in set(gates_mean["kind"])]
    kinds += sorted(set(gates_mean["kind"]) - set(kinds))
    variants = sorted(gates_mean["variant"].unique())
    stages = sorted(gates_mean["stage"].unique())
    fig = Figure(figsize=(4.5 * len(kinds), 3.6), layout="constrained")
    axes = fig.subplots(1, len(kinds), sharex=True, squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        for (variant, stage), curve in gates_mean[gates_mean["kind"] == kind].groupby(["variant", "stage"]):
            curve = curve.sort_values("epoch")
            color = f"C{variants.index(variant) % 10}"
            std = curve["std"].fillna(0)  # one seed: no spread to show
            ax.plot(curve["epoch"], curve["mean"], color=color,
                    ls=LINESTYLES[stages.index(stage) % len(LINESTYLES)], label=f"{variant} · {stage}")
            ax.fill_between(curve["epoch"], curve["mean"] - std, curve["mean"] + std, color=color, alpha=0.15)
        ax.set_title(GATE_TITLES.get(kind, kind))
        ax.set_xlabel("epochs trained (0 = initial value)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gate value (mean ± std over seeds)")
    # Panels hold different (variant, stage) curves, so the legend gathers all of them once.
    handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
    labels = sorted(handles)
    fig.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize="x-small")
    return fig


def plot_curves(curves: pd.DataFrame) -> Figure:
    """Per group (a row), validation accuracy over the epochs trained (mean over seeds) and each variant's Δ
    against the baseline with its 95% CI band (pointwise); colour is the variant, the same in both panels."""
    groups = list(dict.fromkeys(curves["group"]))
    variants = list(dict.fromkeys(curves["variant"]))
    fig = Figure(figsize=(11, 0.6 + 3.4 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 2, sharex=True, squeeze=False)
    for (acc_ax, gap_ax), group in zip(axes, groups):
        for variant, curve in curves[curves["group"] == group].groupby("variant", sort=False):
            curve, color = curve.sort_values("epoch"), f"C{variants.index(variant) % 10}"
            acc_ax.plot(curve["epoch"], 100 * curve["acc_mean"], color=color, label=variant,
                        ls="--" if curve["baseline"].iloc[0] else "-")
            if not curve["baseline"].iloc[0]:
                gap_ax.plot(curve["epoch"], 100 * curve["diff"], color=color, label=variant)
                gap_ax.fill_between(curve["epoch"], 100 * curve["diff_ci_low"], 100 * curve["diff_ci_high"],
                                    color=color, alpha=0.15)
        gap_ax.axhline(0, color="tab:red", ls="--", lw=1)
        acc_ax.set_ylabel(f"{group + chr(10) if group else ''}val acc (%), mean over seeds")
        gap_ax.set_ylabel("Δ val acc vs baseline (pp), 95% CI")
        for ax in (acc_ax, gap_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("epochs trained")
    handles = {h.get_label(): h for ax in axes[:, 0] for h in ax.get_lines()}
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="x-small")
    return fig

def plot_pairs(pairs: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Per group, the matrix of Δ = row − column (pp) as text on a diverging colour scale, variants in the
    summary's order; cells whose Holm p (over the group's pairs) is below 0.05 are bold and boxed."""
    groups = [(group, list(rows["variant"])) for group, rows in summary.groupby("group", sort=False) if len(rows) > 1]
    size = max((len(names) for _, names in groups), default=1)
    fig = Figure(figsize=(max(4.0, (0.7 * size + 2.2) * max(len(groups), 1)), 0.6 * size + 2.2), layout="constrained")
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "one variant: no pairs to compare", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (group, names) in zip(axes, groups):
        delta, significant = _pair_matrix(pairs[pairs["group"] == group], names)
        limit = np.nanmax(np.abs(delta)) if np.isfinite(delta).any() and np.nanmax(np.abs(delta)) > 0 else 1.0
        image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit)
        for i, j in zip(*np.nonzero(np.isfinite(delta))):
            ax.text(j, i, f"{delta[i, j]:+.2f}", ha="center", va="center", fontsize=max(5, 10 - size // 4),
                    color="white" if abs(delta[i, j]) > 0.6 * limit else "black",  # legible on the dark ends
                    fontweight="bold" if significant[i, j] else "normal", gid="pair")
            if significant[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black", gid="significant"))
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_title(group or "every variant against every other", fontsize="medium")
    fig.colorbar(image, ax=list(axes), label=f"Δ = row − column, pp of {metric_name(pairs)} (boxed: Holm p < 0.05)")
    return fig


def _pair_matrix(pairs: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Δ (pp, antisymmetric) and Holm significance as k × k matrices; the diagonal is blank."""
    at = {name: i for i, name in enumerate(names)}
    delta, significant = np.full((len(names),) * 2, np.nan), np.zeros((len(names),) * 2, dtype=bool)
    for pair in pairs.itertuples():
        i, j = at[pair.a], at[pair.b]
        delta[i, j], delta[j, i] = 100 * pair.diff, -100 * pair.diff
        significant[i, j] = significant[j, i] = pair.verdict == "different"
    return delta, significant


def plot_factorial(summary: pd.DataFrame, factors: tuple[str, ...]) -> Figure:
    """Per group, the interaction plot of a factorial: the mean metric (%, 95% CI) over the first factor's
    values, one line per combination of the others, and the baseline's mean as a dashed line. Parallel lines:
    no interaction; a gap between them: the other factors' main effect."""
    groups = [(group, rows) for group, rows in summary.groupby("group", sort=False)]
    fig = Figure(figsize=(5.5 * len(groups), 4), layout="constrained")
    for ax, (group, rows) in zip(fig.subplots(1, len(groups), squeeze=False)[0], groups):
        cells = rows[~rows["baseline"].astype(bool) & (rows["n"] > 0)]
        levels = list(dict.fromkeys(cells[factors[0]]))
        lines = cells.groupby([*factors[1:]], sort=False) if len(factors) > 1 else [((), cells)]
        for i, (key, line) in enumerate(lines):
            x = np.array([levels.index(v) for v in line[factors[0]]]) + 0.06 * (i - 0.5)  # offset: bars stay apart
            mean, err = _mean_and_ci_bars(line)
            name = ", ".join(f"{f.split('.')[-1]}={v}" for f, v in zip(factors[1:], np.atleast_1d(key)))
            ax.errorbar(x, mean, yerr=err, fmt="o", ls=LINESTYLES[i % len(LINESTYLES)], capsize=3, label=name or None)
        if rows["baseline"].astype(bool).any():
            ax.axhline(100 * rows["baseline_acc_mean"].iloc[0], color="tab:red", ls="--", lw=1, label="baseline")
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlabel(factors[0])
        ax.set_ylabel(f"{metric_name(summary)} (%): mean and 95% CI")
        ax.set_title(group or " × ".join(factors), fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return fig


def plot_masks(masks_mean: pd.DataFrame) -> Figure | None:
    """One row per variant, one panel per statistic (the mean channel mask, CBAM's mean spatial mask, the
    gain): mean over seeds per stage with a ±1 std band; colour is the stage, line style the module
    (attn; p4's attn_s on the skip, attn_r on the residual). Returns None when no masks were recorded."""
    shown = masks_mean[masks_mean["stat"].isin(list(MASK_TITLES))]
    if shown.empty:
        return None
    panels = [s for s in MASK_TITLES if s in set(shown["stat"])]
    variants, stages = sorted(shown["variant"].unique()), sorted(shown["stage"].unique())
    fig = Figure(figsize=(4.2 * len(panels), 0.8 + 2.3 * len(variants)), layout="constrained")
    axes = fig.subplots(len(variants), len(panels), sharex=True, squeeze=False)
    for (variant, stat), curves in shown.groupby(["variant", "stat"]):
        ax = axes[variants.index(variant), panels.index(stat)]
        for (stage, module), curve in curves.groupby(["stage", "module"]):
            curve = curve.sort_values("epoch")
            color, std = f"C{stages.index(stage) % 10}", curve["std"].fillna(0)  # one seed: no spread to show
            ax.plot(curve["epoch"], curve["mean"], color=color, ls=MODULE_STYLES.get(module, "-."), marker="o", ms=3,
                    label=f"{stage} · {module}")  # markers: a one-epoch curve is a point
            ax.fill_between(curve["epoch"], curve["mean"] - std, curve["mean"] + std, color=color, alpha=0.15)
        if stat == "gain":
            ax.axhline(1, color="0.5", lw=0.8, ls="--")
    for row, variant in enumerate(variants):
        axes[row, 0].set_ylabel(variant, fontsize="small")
        for col, stat in enumerate(panels):
            axes[row, col].grid(alpha=0.3)
            if row == 0:
                axes[row, col].set_title(MASK_TITLES[stat], fontsize="medium")
    for ax in axes[-1]:
        ax.set_xlabel("epochs trained")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
    labels = sorted(handles)
    fig.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize="x-small")
    return fig
