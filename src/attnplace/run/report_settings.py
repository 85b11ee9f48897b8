"""How a report reads its runs: a grid file's `report:` section (which travels in grid.json), or the flags of
`attnplace report` on top of it."""

from dataclasses import dataclass

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
    # Placement axes (e.g. model.gate) within each of whose values the omnibus test runs again, on the variants
    # with that value and their group's baseline: "which placement is best, for each gate form?"
    within: tuple[str, ...] = ()
    # Placement axes that cross (every combination of their values was run), e.g. model.pattern and
    # model.gate: a factorial repeated-measures ANOVA over the variants other than the baseline separates
    # each axis's main effect from their interaction: "is it where the attention sits, or how it is gated?"
    factorial: tuple[str, ...] = ()

    def __post_init__(self):
        if self.metric not in REPORT_METRICS:
            raise UserError(f"metric={self.metric!r} is invalid; valid: {', '.join(REPORT_METRICS)}")
        if not self.equivalence_margin > 0:
            raise UserError(f"equivalence_margin={self.equivalence_margin!r} is invalid; "
                            f"valid: > 0 (percentage points)")


def report_settings(section: object, where: str) -> ReportSettings:
    """The `report:` section of a grid file or grid.json, checked; mistakes name `where` and the key."""
    try:
        return from_dict(ReportSettings, section if section is not None else {}, "report.")
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
