"""The notebooks in notebooks/ run top to bottom and are stored executed.

They are stored with their outputs (plots visible when browsing, rendered as
stored by the docs), written by `python -m tests.test_notebooks` from the
repository root, which executes each one as the tests below do and records a
hash of the code it ran. Each runs in a fresh Jupyter kernel (nbclient) with
this checkout on PYTHONPATH, so its install cell finds optfree and installs
nothing; one also runs in a fresh virtual environment where only its install
cell installs optfree, from the built wheel.

The repository is named in one place, pyproject.toml's ``project.urls``; the
"Open in Colab" badges and the install cells follow it. After changing it,
`python -m tests.test_notebooks --sync-source` rewrites them (the stored
outputs stay valid: the hash leaves out where the install cell installs from).

The claims the notebooks' text makes are tied to their stored outputs below,
as tests/test_docs.py ties README's numbers to the committed JSON.
"""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import nbformat
from nbclient import NotebookClient
import pytest

import optfree
from tests.test_packaging import distributions, fresh_venv, wheel  # noqa: F401  (fixtures)

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT_PER_CELL = 300
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_SOURCE = re.compile(r'^OPTFREE_SOURCE = "[^"\n]*"$', re.M)
_BADGE = re.compile(
    r"\(https://colab\.research\.google\.com/github/[^)\s]*/blob/main/"
    r"notebooks/(?P<name>[\w.]+\.ipynb)\)")


def repository() -> str:
  """pyproject.toml's project.urls Repository: where the notebooks install
  from and where their Colab badges point."""
  return re.search(r'^Repository = "(https://github\.com/[^"]+)"$',
                   (REPO / "pyproject.toml").read_text(), re.M).group(1)


def source_line() -> str:
  """The install cell's OPTFREE_SOURCE line for that repository."""
  return f'OPTFREE_SOURCE = "git+{repository()}@main"'


def badge_url(name: str) -> str:
  github = repository().removeprefix("https://github.com/")
  return (f"https://colab.research.google.com/github/{github}/blob/main/"
          f"notebooks/{name}")


def _code_cells(notebook):
  return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _source_hash(notebook) -> str:
  """What the stored outputs were produced from: the code, cell by cell.

  Where the install cell installs from is left out: the tests run it with
  optfree installed, when it installs nothing and prints nothing.
  """
  sources = json.dumps([_SOURCE.sub('OPTFREE_SOURCE = ...', cell.source)
                        for cell in _code_cells(notebook)])
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
def test_badge_install_cell_and_project_urls_agree(path):
  """The issue: the install cell's default, "optfree", asked PyPI, where
  optfree is not published. It installs from project.urls' repository."""
  notebook = nbformat.read(path, as_version=4)
  badge = ("[![Open In Colab](https://colab.research.google.com/assets/"
           f"colab-badge.svg)]({badge_url(path.name)})")
  assert badge in notebook.cells[0].source
  assert len(_BADGE.findall(notebook.cells[0].source)) == 1
  install = _code_cells(notebook)[0]
  assert _SOURCE.findall(install.source) == [source_line()]
  assert 'f"optfree[examples] @ {source}"' in install.source
  assert '"optfree"' not in install.source  # no PyPI release to fall back to
  # The check runs in another interpreter (see the fresh-venv test below).
  assert "find_spec" not in install.source


def test_project_urls_name_the_repository_once():
  pyproject = (REPO / "pyproject.toml").read_text()
  assert repository().startswith("https://github.com/")
  assert pyproject.count(repository()) == 1
  # Nothing else in the notebooks names a GitHub repository.
  for path in NOTEBOOKS:
    text = path.read_text()
    others = set(re.findall(r"github\.com/[\w.-]+/[\w.-]+", text)) - {
        repository().removeprefix("https://"),
        "github.com/OWNER/REPOSITORY"}  # the error message's placeholder
    assert not others, (path.name, others)


def _install_cell_with(source: str) -> str:
  install = _code_cells(nbformat.read(NOTEBOOKS[0], as_version=4))[0].source
  return _SOURCE.sub(f"OPTFREE_SOURCE = {source!r}", install)


def test_install_cell_that_cannot_install_says_what_to_set(
    fresh_venv, tmp_path):
  """Where the source is wrong (here a wheel that is not there), the cell
  stops with a message naming OPTFREE_SOURCE and the two forms it takes."""
  missing = tmp_path / "optfree-0.1.0-py3-none-any.whl"
  result = subprocess.run(
      [str(fresh_venv), "-c", _install_cell_with(str(missing))],
      cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env={"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"})
  assert result.returncode != 0
  message = result.stderr.split("RuntimeError: ", 1)[1]
  assert message.startswith(
      f"could not install optfree from OPTFREE_SOURCE = {str(missing)!r}; "
      "pip said:\n")
  assert "Set OPTFREE_SOURCE at the top of this cell to where optfree is" in (
      message)
  assert '"git+https://github.com/OWNER/REPOSITORY@BRANCH"' in message
  assert '"/content/optfree-0.1.0-py3-none-any.whl"' in message


def test_sync_source_follows_project_urls_without_invalidating_outputs(
    tmp_path, monkeypatch):
  copy = tmp_path / "notebooks"
  copy.mkdir()
  for path in NOTEBOOKS:
    (copy / path.name).write_bytes(path.read_bytes())
  monkeypatch.setattr(sys.modules[__name__], "repository",
                      lambda: "https://github.com/someone/optfree-fork")
  changed = sync_sources(sorted(copy.glob("*.ipynb")))
  assert [path.name for path in changed] == [path.name for path in NOTEBOOKS]
  for path, original in zip(sorted(copy.glob("*.ipynb")), NOTEBOOKS):
    notebook = nbformat.read(path, as_version=4)
    assert ("(https://colab.research.google.com/github/someone/optfree-fork/"
            f"blob/main/notebooks/{path.name})") in notebook.cells[0].source
    assert ('OPTFREE_SOURCE = "git+https://github.com/someone/optfree-fork@main"'
            in _code_cells(notebook)[0].source)
    assert notebook.metadata["executed_code_sha256"] == _source_hash(
        notebook) == _source_hash(nbformat.read(original, as_version=4))
  assert sync_sources(sorted(copy.glob("*.ipynb"))) == []


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
  install.source = _SOURCE.sub(f"OPTFREE_SOURCE = {str(wheel)!r}",
                               install.source)
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


def sync_sources(paths=NOTEBOOKS) -> list:
  """Points badges and install cells at project.urls' repository.

  Returns:
    The notebooks it changed.
  """
  changed = []
  for path in paths:
    notebook = nbformat.read(path, as_version=4)
    first, install = notebook.cells[0], _code_cells(notebook)[0]
    before = (first.source, install.source)
    first.source = _BADGE.sub(
        lambda match: f"({badge_url(match.group('name'))})", first.source)
    install.source = _SOURCE.sub(source_line(), install.source)
    if (first.source, install.source) != before:
      nbformat.write(notebook, path)
      changed.append(path)
  return changed


def _store_executed_notebooks() -> None:
  """Executes every notebook with this checkout and stores its outputs."""
  os.environ["PYTHONPATH"] = os.pathsep.join(
      filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  os.environ["MPLBACKEND"] = INLINE_BACKEND
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  paths = [pathlib.Path(arg).resolve() for arg in sys.argv[1:]] or NOTEBOOKS
  for path in sync_sources(paths):
    print(f"{path.relative_to(REPO)}: badge and install cell follow "
          "project.urls")
  for path in paths:
    notebook = nbformat.read(path, as_version=4)
    execute(notebook, path.parent)
    notebook.metadata["executed_code_sha256"] = _source_hash(notebook)
    nbformat.write(notebook, path)
    print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
  if sys.argv[1:] == ["--sync-source"]:
    for synced in sync_sources():
      print(f"{synced.relative_to(REPO)}: badge and install cell follow "
            "project.urls")
  else:
    _store_executed_notebooks()


# The notebooks' claims, tied to their stored outputs ------------------------


def _printed(path) -> str:
  notebook = nbformat.read(path, as_version=4)
  return "".join(o.get("text", "") for o in _outputs(notebook)
                 if o.output_type == "stream")


def _prose(path) -> str:
  notebook = nbformat.read(path, as_version=4)
  return " ".join(" ".join(cell.source for cell in notebook.cells
                           if cell.cell_type == "markdown").split())


def _accuracy_table(printed: str, header: str) -> dict:
  """{label: {step: accuracy}} from a printed table of test accuracies."""
  lines = printed[printed.index(header):].splitlines()
  steps = [int(step) for step in lines[0][len(header):].replace(":", " ")
           .split()]
  table = {}
  for line in lines[1:]:
    match = re.fullmatch(r"\s*(.+?):?((?:\s+\d\.\d{3})+)\s*", line)
    if not match:
      break
    values = [float(value) for value in match.group(2).split()]
    assert len(values) == len(steps), line
    table[match.group(1).strip()] = dict(zip(steps, values))
  return table


def test_03_text_says_what_its_stored_run_shows():
  """The issue: 03 said "the cosine run is only good at its planned end"
  while its own plot had cosine at 0.61 by step 200, and its final numbers
  had recomputed statistics below stale ones."""
  path = REPO / "notebooks" / "03_schedule_free_flax.ipynb"
  table = _accuracy_table(_printed(path), "test accuracy   step:")
  cosine, fresh, stale = (table["cosine"], table["SF recomputed"],
                          table["SF stale"])
  text = _prose(path)
  f = "{:.3f}".format
  assert "only good at its planned end" not in text
  # Early, Schedule-Free at x leads.
  assert (f"{f(fresh[50])} against the cosine's {f(cosine[50])} at step 50, "
          f"{f(fresh[100])} against {f(cosine[100])} at step 100") in text
  assert fresh[50] > cosine[50] and fresh[100] > cosine[100]
  # The cosine run is good from half its schedule on; Schedule-Free catches
  # up only at the end.
  assert f"it is at {f(cosine[200])} by step 200" in text
  assert "stays between 0.61 and 0.63 from there" in text
  assert all(0.61 <= cosine[step] <= 0.63 for step in cosine if step >= 200)
  assert all(fresh[step] < cosine[step] for step in (200, 250, 300))
  assert (f"catches up only at the end ({f(fresh[400])} against "
          f"{f(cosine[400])} at step 400)") in text
  assert fresh[400] >= cosine[400]
  # Stale statistics: costly early, not at the end.
  assert (f"{f(stale[100])} against {f(fresh[100])} with recomputed "
          f"statistics at step 100, and {f(stale[200])} against "
          f"{f(fresh[200])} at step 200") in text
  assert all(fresh[step] - stale[step] > 0.1 for step in (50, 100, 200))
  assert f"{f(stale[300])} against {f(fresh[300])} at step 300" in text
  assert 0 < fresh[300] - stale[300] < 0.02
  assert (f"even slightly better ({f(stale[400])} against {f(fresh[400])})"
          in text)
  assert stale[400] > fresh[400]


def _linen_batch_norm_net():
  """What the linen hint of 03 assumes: a model with BatchNorm and train."""
  from flax import linen as nn  # pylint: disable=g-import-not-at-top

  class Net(nn.Module):

    @nn.compact
    def __call__(self, inputs, train: bool = False):
      hidden = nn.Dense(8)(inputs)
      hidden = nn.BatchNorm(use_running_average=not train)(hidden)
      return nn.Dense(2)(nn.relu(hidden))

  return Net()


def test_03_linen_hint_runs_with_a_train_state_that_keeps_batch_stats():
  """The issue: 03's hint used state.batch_stats, which a plain TrainState
  lacks. The hint's block runs as written."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optfree.flax  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top
  notebook = nbformat.read(REPO / "notebooks" / "03_schedule_free_flax.ipynb",
                           as_version=4)
  block, = re.findall(r"```python\n(.*?)```", notebook.cells[-1].source, re.S)
  assert not hasattr(train_state.TrainState, "batch_stats")
  model = _linen_batch_norm_net()
  inputs = jax.random.normal(jax.random.key(0), (64, 4)) * 3.0 + 1.0
  variables = model.init(jax.random.key(1), inputs[:16])
  namespace = {"optfree": optfree, "model": model, "variables": variables,
               "batches": [inputs[:32], inputs[32:]]}
  exec(block, namespace)  # pylint: disable=exec-used
  assert isinstance(namespace["state"], train_state.TrainState)
  stats = namespace["batch_stats"]["BatchNorm_0"]
  hidden = namespace["x"]["Dense_0"]
  pre = [b @ hidden["kernel"] + hidden["bias"] for b in (inputs[:32],
                                                         inputs[32:])]
  np.testing.assert_allclose(stats["mean"], np.mean([p.mean(0) for p in pre],
                                                    0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], np.mean([p.var(0) for p in pre], 0),
                             rtol=1e-4, atol=1e-5)
  assert not np.allclose(stats["mean"], jnp.zeros_like(stats["mean"]))


def test_04_text_says_what_its_stored_run_shows():
  """The issue: 04's accuracies (0.41-0.66) sat beside a demo that reaches
  95%, unexplained."""
  path = REPO / "notebooks" / "04_comparison.ipynb"
  table = _accuracy_table(_printed(path), "test accuracy at step")
  final = {name: curve[max(curve)] for name, curve in table.items()}
  text = _prose(path)
  assert (f"every optimizer is between {min(final.values()):.2f} and "
          f"{max(final.values()):.2f}") in text
  assert "a small MLP tops out near 68% on MNIST-1D" in text
  assert "the demo's CNN (`python -m optfree demo`) reaches 95%" in text
  # The ranking as the text gives it, each with its stored number, in the
  # order of the stored finals.
  claims = [
      ("SGD with momentum and a cosine schedule ends best ({})",
       ["optax sgd momentum + cosine"]),
      ("the AdaBound family next ({})", ["adabound", "amsbound", "adaboundw"]),
      ("then Schedule-Free SGD ({})", ["schedule_free_sgd"]),
      ("AdamW + cosine ({})", ["optax adamw + cosine"]),
      ("Schedule-Free AdamW ({})", ["schedule_free_adamw"]),
      ("Lion ({}) is still climbing at step 500", ["lion"]),
      ("Schedule-Free RAdam is the slowest by far ({})",
       ["schedule_free_radam"]),
  ]
  order = []
  for sentence, names in claims:
    values = sorted(final[name] for name in names)
    shown = (f"{values[0]:.3f}" if len(values) == 1
             else f"{values[0]:.3f}-{values[-1]:.3f}")
    assert sentence.format(shown) in text, sentence
    order += sorted(names, key=lambda name: -final[name])
  assert order == sorted(final, key=lambda name: -final[name])
  assert set(order) == set(final)
  assert table["lion"][500] > table["lion"][400]
