"""The notebooks in notebooks/ run top to bottom and are stored without outputs.

Each runs in a fresh Jupyter kernel (nbclient) with this checkout on
PYTHONPATH, so their first cell finds optfree and installs nothing.
"""

import os
import pathlib

import nbformat
from nbclient import NotebookClient
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT_PER_CELL = 300


def test_the_four_notebooks_are_there():
  assert [path.stem for path in NOTEBOOKS] == [
      "01_quickstart", "02_schedules", "03_schedule_free_flax", "04_comparison"
  ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_without_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source
  first_code = next(c for c in notebook.cells if c.cell_type == "code")
  assert 'find_spec("optfree") is None' in first_code.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  notebook = nbformat.read(path, as_version=4)
  client = NotebookClient(
      notebook, timeout=TIMEOUT_PER_CELL, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError on the first failing cell

  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert figures, "the notebook drew no figure"
  first_code = next(c for c in notebook.cells if c.cell_type == "code")
  assert first_code.outputs == [], "the install cell did something"
