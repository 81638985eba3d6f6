"""The notebooks in notebooks/ run top to bottom and are stored executed.

They are stored with their outputs (plots visible when browsing, rendered as
stored by the docs), written by `python -m tests.test_notebooks` from the
repository root, which executes each one as the tests below do and records a
hash of the code it ran. Each runs in a fresh Jupyter kernel (nbclient) with
this checkout on PYTHONPATH, so its install cell finds optfree and installs
nothing; one also runs in a fresh virtual environment where only its install
cell installs optfree, from the built wheel.
"""

import hashlib
import json
import os
import pathlib
import re
import sys

import nbformat
from nbclient import NotebookClient
import pytest

import optfree
from tests.test_packaging import distributions, fresh_venv, wheel  # noqa: F401  (fixtures)

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT_PER_CELL = 300
SOURCE_LINE = 'OPTFREE_SOURCE = "optfree"'
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _code_cells(notebook):
  return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _source_hash(notebook) -> str:
  """What the stored outputs were produced from: the code, cell by cell."""
  sources = json.dumps([cell.source for cell in _code_cells(notebook)])
  return hashlib.sha256(sources.encode()).hexdigest()


def _outputs(notebook):
  return [o for cell in _code_cells(notebook) for o in cell.outputs]


def _figures(notebook):
  return [o for o in _outputs(notebook) if "image/png" in o.get("data", {})]


def execute(notebook, cwd: pathlib.Path, kernel_name: str = "python3"):
  """Runs a notebook in a new kernel; raises CellExecutionError on a failure."""
  client = NotebookClient(
      notebook, timeout=TIMEOUT_PER_CELL, kernel_name=kernel_name,
      record_timing=False, resources={"metadata": {"path": str(cwd)}},
  )
  client.execute()
  return notebook


def test_the_four_notebooks_are_there():
  assert [path.stem for path in NOTEBOOKS] == [
      "01_quickstart", "02_schedules", "03_schedule_free_flax", "04_comparison"
  ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_executed_from_its_current_code(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  assert notebook.metadata.get("executed_code_sha256") == _source_hash(notebook), (
      "the stored outputs are not those of the code: run "
      "`python -m tests.test_notebooks`")
  counts = [cell.execution_count for cell in _code_cells(notebook)]
  assert counts == list(range(1, len(counts) + 1))  # in order, in one kernel
  assert not [o for o in _outputs(notebook) if o.output_type == "error"]
  assert _figures(notebook)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_opens_in_colab_and_installs_from_one_named_source(path):
  notebook = nbformat.read(path, as_version=4)
  github = re.search(
      r'^Repository = "https://github.com/(.+)"$',
      (REPO / "pyproject.toml").read_text(), re.M).group(1)
  badge = (
      "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
      f"(https://colab.research.google.com/github/{github}/blob/main/"
      f"notebooks/{path.name})")
  assert badge in notebook.cells[0].source
  install = _code_cells(notebook)[0]
  assert install.source.count("OPTFREE_SOURCE =") == 1
  assert SOURCE_LINE in install.source
  # The check runs in another interpreter (see the fresh-venv test below).
  assert "find_spec" not in install.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
  monkeypatch.setenv("MPLBACKEND", INLINE_BACKEND)
  notebook = execute(nbformat.read(path, as_version=4), tmp_path)

  assert not [o for o in _outputs(notebook) if o.output_type == "error"]
  assert _figures(notebook), "the notebook drew no figure"
  assert _code_cells(notebook)[0].outputs == [], "the install cell did something"


def _kernel_of(python: pathlib.Path, jupyter_path: pathlib.Path) -> str:
  """Declares a Jupyter kernel that runs in the given interpreter."""
  name = "optfree-fresh-venv"
  spec = jupyter_path / "kernels" / name
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [str(python), "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": name, "language": "python",
  }))
  return name


def test_install_cell_installs_optfree_from_a_wheel_in_a_fresh_venv(
    wheel, fresh_venv, tmp_path, monkeypatch):
  """The quickstart in a kernel where optfree is not installed.

  The working directory holds a clone-like folder named optfree, which an
  in-kernel check (find_spec) takes for the installed package.
  """
  notebook = nbformat.read(REPO / "notebooks" / "01_quickstart.ipynb", as_version=4)
  install = _code_cells(notebook)[0]
  install.source = install.source.replace(
      SOURCE_LINE, f"OPTFREE_SOURCE = {str(wheel)!r}")
  notebook.cells.append(nbformat.v4.new_code_cell(
      "import optfree, importlib.metadata\n"
      "print(optfree.__file__, importlib.metadata.version('optfree'))"))
  work = tmp_path / "work"
  (work / "optfree" / "optfree").mkdir(parents=True)
  (work / "optfree" / "README.md").write_text("a clone of the repository\n")
  (work / "optfree" / "optfree" / "__init__.py").write_text(
      "raise ImportError('the source folder was imported')\n")
  monkeypatch.delenv("PYTHONPATH", raising=False)
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("MPLBACKEND", INLINE_BACKEND)
  # pip resolves optfree's dependencies from what the venv already sees.
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  kernel = _kernel_of(fresh_venv, tmp_path / "jupyter")

  execute(notebook, work, kernel_name=kernel)

  assert not [o for o in _outputs(notebook) if o.output_type == "error"]
  assert _figures(notebook)
  where, version = notebook.cells[-1].outputs[0].text.split()
  assert pathlib.Path(where).is_relative_to(fresh_venv.parent.parent)
  assert version == optfree.__version__


def _store_executed_notebooks() -> None:
  """Executes every notebook with this checkout and stores its outputs."""
  os.environ["PYTHONPATH"] = os.pathsep.join(
      filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  os.environ["MPLBACKEND"] = INLINE_BACKEND
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  paths = [pathlib.Path(arg).resolve() for arg in sys.argv[1:]] or NOTEBOOKS
  for path in paths:
    notebook = nbformat.read(path, as_version=4)
    execute(notebook, path.parent)
    notebook.metadata["executed_code_sha256"] = _source_hash(notebook)
    nbformat.write(notebook, path)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
  _store_executed_notebooks()
