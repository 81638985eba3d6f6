"""The documentation site builds without a warning and documents the whole API.

The site is built once (shared by the xdist workers) with the command README
gives, into a temporary folder.
"""

import contextlib
import fcntl
import io
import importlib
import json
import pathlib
import re
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = ("optfree", "optfree.schedules", "optfree.flax")


@pytest.fixture(scope="module")
def site(tmp_path_factory, worker_id):
  # Under xdist every worker has the fixture; the first builds, the others
  # wait on the lock and read its result.
  shared = tmp_path_factory.getbasetemp()
  if worker_id != "master":
    shared = shared.parent
  html = shared / "docs-html"
  with open(shared / "docs-build.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    log = shared / "docs-build.log"
    if not log.exists():
      run = subprocess.run(
          [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q",
           "-b", "html", "-d", str(shared / "docs-doctrees"),
           str(ROOT / "docs"), str(html)],
          cwd=ROOT, capture_output=True, text=True, check=False)
      log.write_text(json.dumps(
          {"returncode": run.returncode, "output": run.stdout + run.stderr}))
    result = json.loads(log.read_text())
  return html, result


def test_the_site_builds_with_warnings_as_errors(site):
  _, result = site
  assert result["returncode"] == 0, result["output"]


def _public_names(module):
  if hasattr(module, "__all__"):
    return list(module.__all__)
  return [name for name, value in vars(module).items()
          if not name.startswith("_")
          and getattr(value, "__module__", None) == module.__name__]


def _pages(html):
  """Object name -> the built page that describes it."""
  pages = {}
  for page in (html / "api" / "_autosummary").glob("*.html"):
    for name in re.findall(r'<dt class="sig sig-object py" id="([\w.]+)"',
                           page.read_text()):
      pages.setdefault(name, page)
  return pages


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_page_of_its_own(site, module_name):
  html, _ = site
  pages = _pages(html)
  module = importlib.import_module(module_name)
  missing = []
  for name in _public_names(module):
    obj = getattr(module, name)
    if isinstance(obj, types.ModuleType):
      assert (html / "api" / f"{obj.__name__}.html").exists(), name
      continue
    # A re-export (optfree.step_schedule) may be described under the module
    # that holds it (optfree.schedules.step_schedule), once.
    names = {f"{module_name}.{name}"} | {
        f"{other}.{name}" for other in MODULES
        if getattr(importlib.import_module(other), name, None) is obj}
    found = [pages[n] for n in names if n in pages]
    if not found or not any(p.stem in names for p in found):
      missing.append(f"{module_name}.{name}")
  assert not missing, f"no API page for {missing}"


def test_api_pages_render_math_and_the_example(site):
  html, _ = site
  page = (html / "api" / "_autosummary" /
          "optfree.schedule_free_sgd.html").read_text()
  assert '<div class="math' in page and "mathjax" in page.lower()
  assert ">Example<" in page and "&gt;&gt;&gt;" in page


def test_every_notebook_is_rendered_with_its_stored_outputs(site):
  html, _ = site
  notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
  assert notebooks
  for notebook in notebooks:
    page = html / "notebooks" / f"{notebook.stem}.html"
    assert page.exists(), notebook.name
    images = sum(
        "image/png" in output.get("data", {})
        for cell in json.loads(notebook.read_text())["cells"]
        for output in cell.get("outputs", []))
    # myst-nb writes each stored PNG output into _images/, shown by an <img>.
    sources = re.findall(r'<img [^>]*src="\.\./(_images/[^"]+)"', page.read_text())
    assert len(sources) == images, notebook
    assert all((html / source).is_file() for source in sources)


def test_schedule_gallery_plots_every_schedule_against_torch(site):
  html, _ = site
  from optfree import schedules  # pylint: disable=g-import-not-at-top
  page = (html / "guides" / "schedules.html").read_text()
  for name in schedules.__all__:
    if name != "plot":
      assert f'alt="{name} against torch"' in page, name


PAGES_WITH_CODE = sorted(
    str(path.relative_to(ROOT / "docs"))
    for path in (ROOT / "docs").rglob("*.md")
    if "_build" not in path.parts and path.name != "index.md"
    and "```python" in path.read_text())


@pytest.mark.parametrize("page", PAGES_WITH_CODE)
def test_python_blocks_on_the_page_run_in_order(page, monkeypatch, tmp_path):
  # Plain ```python blocks are meant to be run as written; an illustration
  # that cannot run here (several hosts) uses a {code-block} instead.
  monkeypatch.chdir(tmp_path)
  text = (ROOT / "docs" / page).read_text()
  namespace = {"__name__": f"docs_{page}"}
  for block in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M):
    with contextlib.redirect_stdout(io.StringIO()):
      exec(compile(block, page, "exec"), namespace)  # pylint: disable=exec-used


def test_landing_page_quickstart_converges():
  text = (ROOT / "docs" / "index.md").read_text()
  block, = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    exec(compile(block, "index.md", "exec"), {})  # pylint: disable=exec-used
  # The target is exactly linear: x must have found it.
  assert float(output.getvalue().split(":")[1]) < 1e-4


def test_readme_quality_figures_are_the_committed_results():
  results = {
      task: json.loads((ROOT / "benchmarks" / "results" /
                        f"quality-{task}.json").read_text())["optimizers"]
      for task in ("charlm", "mnist1d")}
  final = lambda task, name, key: results[task][name]["final"][key]
  readme = " ".join((ROOT / "README.md").read_text().split())
  assert (f"(test loss {final('charlm', 'sf_adamw', 'test_loss_mean'):.2f} "
          f"against {final('charlm', 'adamw_cosine', 'test_loss_mean'):.2f} "
          "at the end)") in readme
  assert (f"({100 * final('mnist1d', 'sf_adamw', 'test_accuracy_mean'):.1f}% "
          f"against "
          f"{100 * final('mnist1d', 'adamw_cosine', 'test_accuracy_mean'):.1f}% "
          "accuracy)") in readme
