"""Notebook 01 runs headless, top to bottom: its cells assert the gate identities, so running it checks them.
It is committed with its outputs (issue: notebooks that show results) and executed here from scratch.

(Notebook 02 is executed in tests/test_report.py, against a fixture results directory.)
"""

from pathlib import Path

import pytest

PATTERNS_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_placement_patterns.ipynb"


def test_placement_patterns_notebook_runs_headless():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(PATTERNS_NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Committed with its outputs, for readers of the repo page, and small (no megabytes of images) ...
    assert any(cell.outputs for cell in code) and PATTERNS_NOTEBOOK.stat().st_size < 500_000
    for cell in code:  # ... but executed here from scratch, so no output of the committed run can pass for one
        cell.outputs, cell.execution_count = [], None

    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(PATTERNS_NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "272474" in text  # resnet20 `none` parameters, in the cost table
    assert "p4 extra = 2·3,060 + 2·9 = 6,138" in text
