"""``experiments/quickstart.ipynb`` runs top to bottom in a fresh kernel of this interpreter.

The kernel is ipykernel's own ``python3`` spec, which starts ``sys.executable``: a
``python3`` kernel spec installed elsewhere (``~/.local/share/jupyter``, another
environment) is ignored, so the notebook runs in the environment the tests run in (the
project's venv, or CI's fresh ``.venv-ci``).
"""

import math
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "experiments" / "quickstart.ipynb"


def outputs_text(cell):
    """The text a cell printed or displayed (streams and ``text/plain`` results)."""
    return "".join(
        out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in cell.outputs
    )


@pytest.mark.slow
def test_quickstart_notebook_runs_and_learns():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    kernel = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    client = NotebookClient(
        nb, km=kernel, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on any error, failed asserts included

    assert outputs_text(nb.cells[-1]).strip() == sys.executable
    code = [cell for cell in nb.cells[:-1] if cell.cell_type == "code"]
    printed = "".join(outputs_text(cell) for cell in code)
    assert "ppo: update" in printed  # progress=True displayed its reports
    assert "top 2 of 2 members" in printed
    assert sum("image/png" in out.get("data", {}) for c in code for out in c.outputs) == 2
    best_mean = float(outputs_text(code[-1]).splitlines()[-1])  # the last cell's value
    assert math.isfinite(best_mean) and best_mean > 100
