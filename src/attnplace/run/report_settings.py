"""How a report reads its runs: a grid file's `report:` section (which travels in grid.json), or the flags of
`attnplace report` on top of it."""

from dataclasses import dataclass

import yaml

from ..errors import UserError
from .config_io import from_dict

REPORT_METRICS = ("test_acc", "val_acc")


@dataclass(frozen=True)
class ReportSettings:
    """How a report reads its runs: a grid file's `report:` section, or `attnplace report`'s flags.

    Exploratory grids choose among many variants, so they read `val_acc` (the final epoch's validation
    accuracy) and leave the test split for the confirmation; `test_acc` is read from the weights the run
    tested (`trainer.test_on`).
    """

    baseline: str | None = None  # a variant label (or its placement part, for every group); None: pattern `none`
    metric: str = "test_acc"  # test_acc | val_acc
    equivalence_margin: float = 0.5  # percentage points: |Δ| below it counts as no difference (TOST)
    # The one contrast named before the runs (a variant label, or its placement part, against its group's
    # baseline): the study's question, which the tables mark and the report states first. Its test is the
    # same as every other's (Holm over the group's comparisons, conservative); the rest are read by CI and TOST.
    primary: str | None = None
    # Placement axes (e.g. model.gate) within each of whose values the omnibus test runs again, on the variants
    # with that value and their group's baseline: "which placement is best, for each gate form?"
    within: tuple[str, ...] = ()
    # Placement axes that cross (every combination of their values was run), e.g. model.pattern and
    # model.gate: a factorial repeated-measures ANOVA over the variants other than the baseline separates
    # each axis's main effect from their interaction: "is it where the attention sits, or how it is gated?"
    factorial: tuple[str, ...] = ()
    # `AXIS=BEFORE,AFTER`, a non-placement axis and two of its values (optim.lr=0.1,0.2): each variant at AFTER
    # against itself at BEFORE, and each placement's gap to its baseline at AFTER against the gap at BEFORE,
    # paired by seed (report/contrast.py). Each value of such an axis is a group of its own, so the tables
    # above never compare across it.
    contrast: str | None = None
    # A non-placement axis (optim.lr) each variant gets its own value of: chosen by mean validation accuracy on
    # the `choose_on` seed blocks, then compared on test on the other blocks (report/tuned.py).
    tune: str | None = None
    choose_on: tuple[int, ...] = ()

    def __post_init__(self):
        if self.metric not in REPORT_METRICS:
            raise UserError(f"metric={self.metric!r} is invalid; valid: {', '.join(REPORT_METRICS)}")
        if not self.equivalence_margin > 0:
            raise UserError(f"equivalence_margin={self.equivalence_margin!r} is invalid; "
                            f"valid: > 0 (percentage points)")
        if self.contrast is not None:
            axis, _, values = str(self.contrast).partition("=")
            if not axis or len([v for v in values.split(",") if v.strip()]) != 2:
                raise UserError(f"contrast={self.contrast!r} is invalid; valid: AXIS=BEFORE,AFTER "
                                f"(e.g. optim.lr=0.1,0.2)")
        if self.tune is not None and not self.choose_on:
            raise UserError(f"tune={self.tune!r} needs choose_on: the seed blocks that choose, e.g. [0, 1, 2]")
        if self.choose_on and self.tune is None:
            raise UserError(f"choose_on={tuple(self.choose_on)!r} needs tune: the axis whose value each variant "
                            f"chooses, e.g. optim.lr")

    def contrast_values(self) -> tuple[str, object, object]:
        """`contrast` as (axis, before, after), each value read as a grid file reads it (`false` -> False)."""
        axis, _, values = self.contrast.partition("=")
        before, after = (yaml.safe_load(v.strip()) for v in values.split(","))
        return axis.strip(), before, after


def report_settings(section: object, where: str) -> ReportSettings:
    """The `report:` section of a grid file or grid.json, checked; mistakes name `where` and the key."""
    try:
        return from_dict(ReportSettings, section if section is not None else {}, "report.")
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
