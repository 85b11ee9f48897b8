"""How an answer moves with the regime: for each where × how cell that the atlas holds in more than one regime,
its Δ against `none` with its CI, regime by regime. Pure computation: the atlas's frames in, one frame out
(`atlas_page.py` draws and writes it).

A regime is how close the training came to a real one: the backbone, the training images an epoch and the
epochs. An answer is keyed by (attention, cell, precision): a cell is compared with itself across regimes only in
one precision, since precision is no part of the regime but may change the answer (`bf16_cpu`). Regimes are
ordered by training budget, images × epochs, the converged regime last.
"""

import pandas as pd

KEY = ["attention", "cell", "precision"]
COLUMNS = [*KEY, "regime", "budget", "study", "delta_pp", "ci_low_pp", "ci_high_pp", "n_pairs", "verdict"]


def regime_label(row) -> str:
    """`resnet20, 10,000 images × 10 epochs`: what a row's training was."""
    images = str(row.images_per_epoch or row.train_subset)
    return f"{row.backbone}, {f'{int(images):,}' if images.isdigit() else images} images × {row.max_epochs} epochs"


def budget(row) -> float:
    """Training images seen in all (images an epoch × epochs); 0 where the row does not say."""
    try:
        return float(row.images_per_epoch or row.train_subset) * float(row.max_epochs)
    except (TypeError, ValueError):
        return 0.0


def regime_frame(rows: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One line per (attention, cell, precision) × regime, for the keys held in at least two regimes, ordered
    by key and then by budget (`COLUMNS`)."""
    if rows.empty or cells.empty:
        return pd.DataFrame(columns=COLUMNS)
    described = rows.assign(regime=[regime_label(r) for r in rows.itertuples(index=False)],
                            budget=[budget(r) for r in rows.itertuples(index=False)])
    joined = cells.merge(described[["row", "attention", "precision", "regime", "budget"]], on="row")
    joined = joined[joined.groupby(KEY)["regime"].transform("nunique") >= 2]
    return joined.sort_values([*KEY, "budget"], kind="stable")[COLUMNS].reset_index(drop=True)
