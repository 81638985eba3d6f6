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


# The porting table --------------------------------------------------------

_FUNC = re.compile(r"\{func\}`~?optfree\.(\w+)`")


def _porting_rows():
  """(optfree function, reference arguments, optfree cell) per table row."""
  text = (ROOT / "docs" / "guides" / "porting.md").read_text()
  rows, function = [], None
  for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if len(cells) != 4 or not line.startswith("|") or cells[0] == "---":
      continue
    if cells[1]:
      found = _FUNC.fullmatch(cells[1])
      if found is None:  # the header row
        continue
      function = found.group(1)
    rows.append((function, re.findall(r"`(\w+)`", cells[2]), cells[3]))
  return rows


def test_porting_table_names_real_arguments():
  import optfree  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  rows = _porting_rows()
  assert {function for function, _, _ in rows} >= {
      "schedule_free_sgd", "schedule_free_adamw", "schedule_free_radam",
      "schedule_free", "adabound", "amsbound", "adaboundw", "lion",
      "cosine_annealing_schedule", "onecycle_schedule"}
  for function, reference, cell in rows:
    parameters = inspect.signature(getattr(optfree, function)).parameters
    names = re.findall(r"`([\w.]+)`", cell)
    if cell.startswith("the same"):
      # Same name in both: each must be an argument of the optfree function.
      assert set(reference) <= set(parameters), (function, reference)
    elif cell.startswith("none"):
      assert not set(reference) & set(parameters), (function, reference)
    elif names[0].startswith("optfree."):
      other = inspect.signature(getattr(optfree, names[0][len("optfree."):]))
      assert all(name in other.parameters for name in names[1:]
                 if name.isidentifier() and name != "b1"), (function, cell)
    else:
      assert names[0] in parameters, (function, cell)


def test_porting_table_and_the_reference_name_errors_agree():
  """Each reference name the table renames gets the error that names
  optfree's (optfree._checks.REFERENCE_NAMES, applied by reference_names),
  and the error's optfree name is the table's."""
  from optfree import _checks  # pylint: disable=g-import-not-at-top
  table = {}
  for function, reference, cell in _porting_rows():
    if cell.startswith("the same") or not reference:
      continue
    names = re.findall(r"`([\w.]+)`", cell)
    for name in reference:
      table.setdefault(function, {})[name] = (
          None if cell.startswith("none") else names[0])
  assert set(_checks.REFERENCE_NAMES) <= set(table)
  for function, renames in _checks.REFERENCE_NAMES.items():
    assert set(renames) == set(table[function]), function
    for name, new in renames.items():
      expected = table[function][name]
      if expected is None:
        assert new is None, (function, name)
      else:
        first = re.match(r"\w+", new).group(0)
        assert first == expected.removeprefix("optfree."), (function, name,
                                                             new)


@pytest.mark.parametrize("call,expected", [
    ("cosine_annealing_schedule(0.1, T_max=100)",
     "cosine_annealing_schedule got T_max=100: optfree calls it t_max"),
    ("cosine_warm_restarts_schedule(0.1, T_0=10, T_mult=2)",
     "cosine_warm_restarts_schedule got T_0=10: optfree calls it t_0; "
     "T_mult=2: optfree calls it t_mult"),
    ("linear_factor_schedule(0.1, total_iters=5)",
     "linear_factor_schedule got total_iters=5: optfree calls it "
     "total_steps"),
    ("onecycle_schedule(0.1, total_steps=100, cycle_momentum=True)",
     "onecycle_schedule got cycle_momentum=True: optfree calls it "
     "onecycle_momentum_schedule, injected as b1"),
    ("step_schedule(0.1, 10, last_epoch=-1)",
     "step_schedule got last_epoch=-1: optfree has no counterpart"),
])
def test_torch_argument_names_get_optfree_s(call, expected):
  import optfree  # pylint: disable=g-import-not-at-top
  with pytest.raises(TypeError) as info:
    eval(f"optfree.{call}")  # pylint: disable=eval-used
  assert str(info.value).startswith(expected)
  assert str(info.value).endswith(
      "(see the porting table, docs/guides/porting.md)")


def _guide_block(page, heading):
  """The first ```python block under ``heading`` in docs/guides/``page``."""
  text = (ROOT / "docs" / "guides" / page).read_text()
  section = text.split(f"\n{heading}\n", 1)[1]
  return re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)


def test_schedule_free_guide_gives_x_of_each_group_of_a_multi_transform():
  """The issue's eval_params over a multi_transform of two Schedule-Free
  optimizers: the guide's route gives each group's x, the x of that group's
  optimizer run on its own."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import optfree  # pylint: disable=g-import-not-at-top
  namespace = {}
  with contextlib.redirect_stdout(io.StringIO()) as printed:
    exec(compile(  # pylint: disable=exec-used
        _guide_block("schedule_free.md", "### Several Schedule-Free optimizers:"
                     " `optax.multi_transform`"), "schedule_free.md", "exec"),
         namespace)
  loss_y, loss_x = map(float, re.findall(r"\d\.\d+e[-+]\d+", printed.getvalue()))
  assert loss_x < 1e-3 and loss_y < 1e-3
  with pytest.raises(ValueError, match="ambiguous"):
    optfree.eval_params(namespace["opt_state"], namespace["params"])
  by_group = namespace["eval_params_by_group"]

  # The same run with one optimizer per group, side by side.
  a = optfree.schedule_free_adamw(0.05, warmup_steps=3)
  b = optfree.schedule_free_sgd(0.1, b1=0.8)
  params = {"a": jnp.linspace(-1.0, 1.0, 6), "b": {"u": jnp.ones(3)},
            "c": jnp.ones(2)}
  tx = optax.multi_transform({"a": a, "b": b, "c": optax.sgd(0.1)},
                             {"a": "a", "b": {"u": "b"}, "c": "c"})
  loss = lambda p: (jnp.sum(jnp.sin(p["a"]) ** 2) * jnp.sum(p["b"]["u"])  # noqa: E731
                    + jnp.sum(p["c"] ** 2))
  state = tx.init(params)
  alone = {"a": a.init(params["a"]), "b": b.init(params["b"])}
  split = dict(params)
  for _ in range(20):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for key, opt in (("a", a), ("b", b)):
      step, alone[key] = opt.update(grads[key], alone[key], split[key])
      split[key] = optax.apply_updates(split[key], step)
  x = by_group(state, params, ["a", "b"])
  np.testing.assert_allclose(x["a"], optfree.eval_params(alone["a"],
                                                         split["a"]),
                             rtol=1e-6)
  np.testing.assert_allclose(x["b"]["u"], optfree.eval_params(
      alone["b"], split["b"])["u"], rtol=1e-6)
  np.testing.assert_array_equal(x["c"], params["c"])  # not Schedule-Free
  assert not np.allclose(x["a"], params["a"])


# The site's look: what a headless browser showed (issue 23, item 9) -------


def _built_pages(html):
  return [page for page in html.rglob("*.html")
          if "_static" not in page.parts and "_modules" not in page.parts
          and page.name not in ("search.html", "genindex.html")]


def test_every_page_has_one_search_box(site):
  """pydata-sphinx-theme 0.20 put a second search box in a header bar."""
  html, _ = site
  pages = _built_pages(html)
  assert len(pages) > 30
  for page in pages:
    text = page.read_text()
    assert text.count('class="btn search-button-field') == 1, page
    assert 'class="navbar-persistent--mobile"' not in text, page


def _css_rules(html):
  css = (html / "_static" / "custom.css").read_text()
  css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
  rules = {}
  for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css):
    declarations = dict(
        (key.strip(), value.strip()) for key, value in
        (item.split(":", 1) for item in body.split(";") if ":" in item))
    for selector in selectors.split(","):
      rules.setdefault(" ".join(selector.split()), {}).update(declarations)
  return rules


def test_notebook_cells_wrap_inside_their_box(site):
  html, _ = site
  page = (html / "notebooks" / "02_schedules.html").read_text()
  assert "_static/custom.css" in page
  # The cell markup the rules select (myst-nb's), around the longest line of
  # the notebooks (02's panels, over 150 characters).
  assert re.search(r'<div class="cell_input docutils container">\s*<div '
                   r'class="highlight-ipython3 notranslate">', page)
  rules = _css_rules(html)
  for selector in ("div.cell div.cell_input pre", "div.cell div.cell_output pre"):
    assert rules[selector]["white-space"] == "pre-wrap", selector
    assert rules[selector]["overflow-wrap"] == "anywhere", selector


def test_right_hand_contents_breaks_long_names(site):
  html, _ = site
  page = (html / "guides" / "schedules.html").read_text()
  assert 'class="bd-sidebar-secondary' in page
  # The longest entry of its contents, an unbreakable 28-character name.
  assert ('nav-link" href="#warmup-stable-decay-schedule">'
          "warmup_stable_decay_schedule") in page
  rules = _css_rules(html)
  assert rules[".bd-sidebar-secondary"]["overflow-x"] == "hidden"
  assert rules[".bd-sidebar-secondary .nav-link"]["overflow-wrap"] == "anywhere"
