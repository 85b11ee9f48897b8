"""Result plots: accuracy per variant and gate trajectories.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry to leak from a long grid process, no GUI backend, and safe off the main thread.
Rendering to PNG uses the Agg canvas.
"""

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

GATE_TITLES = {"gamma_s": r"$\gamma_s$", "gamma_r": r"$\gamma_r$", "lambda": r"$\lambda$"}
LINESTYLES = ("-", "--", ":", "-.")


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (callers write them atomically)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def plot_accuracy(summary: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Test accuracy per variant (%): each seed's run as a small dot, the mean with its 95% CI (clipped to
    [0, 100]) beside it; baselines marked, with a dashed line at the baseline mean of each group."""
    rows = summary[summary["n"] > 0].reset_index(drop=True)
    fig = Figure(figsize=(7, 1.2 + 0.4 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    y = -rows.index.to_numpy()  # first summary row on top
    mean = 100 * rows["acc_mean"]
    # A single run has no CI; draw no bar rather than a misleading zero-width one.
    err = [(mean - 100 * rows["ci_low"].clip(0, 1)).fillna(0), (100 * rows["ci_high"].clip(0, 1) - mean).fillna(0)]
    base = rows["baseline"].to_numpy(dtype=bool)
    for mask, style in ((~base, dict(fmt="o", color="tab:blue", label="mean, 95% CI")),
                        (base, dict(fmt="D", color="tab:red", label="baseline (pattern none)"))):
        if mask.any():
            ax.errorbar(mean[mask], y[mask], xerr=[e[mask] for e in err], capsize=3, **style)
    done = runs[runs["status"] == "completed"]
    for row_y, variant in zip(y, rows["variant"]):
        accs = 100 * done.loc[done["variant"] == variant, "test_acc"]
        ax.scatter(accs, [row_y - 0.22] * len(accs), s=12, color="0.35", zorder=3, gid="seeds",
                   label="one seed" if row_y == y[0] else None)
    # Rows of one group are adjacent, so their segments join into one dashed line per baseline.
    ax.vlines(100 * rows["baseline_acc_mean"], y - 0.5, y + 0.5, colors="tab:red", linestyles="--", lw=1)
    ax.set_yticks(y, rows["variant"])
    ax.set_xlabel("test accuracy (%): seeds, and their mean with 95% CI")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


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
