"""The committed notebooks run headless, top to bottom, from scratch.

Each is committed with its outputs, for readers of the repo page, and kept small (no megabytes of images); here
every output is cleared first, so no output of the committed run can pass for one of this run.
Notebook 01's cells assert the gate identities, so running it checks them; notebook 02 reads a fixture results
directory through the package's own report functions.
"""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def executed(path: Path, max_bytes: int, timeout: int) -> tuple[list[dict], list[dict]]:
    """The committed notebook's outputs, and those of running it afresh (checked: some committed, no errors)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    committed = [o for cell in code for o in cell.outputs]
    assert committed and path.stat().st_size < max_bytes
    for cell in code:
        cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    fresh = [o for cell in code for o in cell.outputs]
    assert not [o for o in fresh if o.output_type == "error"]
    return committed, fresh


def has_image(outputs: list[dict]) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs)


def test_placement_patterns_notebook_runs_headless():
    _, outputs = executed(NOTEBOOKS / "01_placement_patterns.ipynb", max_bytes=500_000, timeout=300)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "272474" in text  # resnet20 `none` parameters, in the cost table
    assert "p4 extra = 2·3,060 + 2·9 = 6,138" in text


def test_results_notebook_runs_headless(results, monkeypatch):
    monkeypatch.setenv("ATTNPLACE_RESULTS", str(results))  # the kernel inherits this environment
    committed, fresh = executed(NOTEBOOKS / "02_results.ipynb", max_bytes=1_000_000, timeout=120)
    assert has_image(committed) and has_image(fresh)
