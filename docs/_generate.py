"""Sources the docs build writes before Sphinx reads anything.

- ``api/<module>.rst``: an autosummary listing of every name in the module's
  ``__all__``, so a name added to the API gets its page without an edit here.
- ``notebooks/*.ipynb``: copies of the repository's notebooks (rendered from
  their stored outputs).
- ``guides/_gallery.md`` and ``guides/_gallery/*.png``: each schedule plotted
  against the values ``torch.optim.lr_scheduler`` gave for the same spec
  (``tests/reference/schedules.npz``).

Every file written here is ignored by git (see .gitignore).
"""

from __future__ import annotations

import collections
import importlib
import inspect
import json
import pathlib
import shutil
import types

import numpy as np

# The modules whose public names the reference documents, in page order.
API_MODULES = ("optfree", "optfree.schedules", "optfree.flax")

# Short section titles on the API pages, in page order; a module not named
# here gets the first clause of its docstring, after these.
SECTIONS = {
    "optfree.schedule_free": "Schedule-Free",
    "optfree.schedule_free_plus": "ScheduleFree+ (learning-rate-free)",
    "optfree.adabound": "AdaBound, AMSBound, AdaBoundW",
    "optfree.lion": "Lion",
}

# Plots per row in the gallery (each schedule's cases share one figure).
GALLERY_COLUMNS = 3

# The torch counterpart named under each schedule's plots.
TORCH_NAMES = {
    "step_schedule": "StepLR",
    "multistep_schedule": "MultiStepLR",
    "exponential_schedule": "ExponentialLR",
    "constant_factor_schedule": "ConstantLR",
    "linear_factor_schedule": "LinearLR",
    "polynomial_decay_schedule": "PolynomialLR",
    "cosine_annealing_schedule": "CosineAnnealingLR",
    "cosine_warm_restarts_schedule": "CosineAnnealingWarmRestarts",
    "cyclic_schedule": "CyclicLR",
    "cyclic_momentum_schedule": "CyclicLR's momentum",
    "onecycle_schedule": "OneCycleLR",
    "onecycle_momentum_schedule": "OneCycleLR's momentum",
    "sequential_schedule": "SequentialLR",
    "per_epoch": "an epoch-stepped scheduler",
    "trapezoidal_schedule": "SequentialLR of LinearLR and ConstantLR",
    "warmup_stable_decay_schedule": "SequentialLR of torch schedulers",
}


def public_names(module: types.ModuleType) -> list[str]:
  """The module's ``__all__``, or the public names it defines itself."""
  if hasattr(module, "__all__"):
    return sorted(module.__all__)
  return sorted(
      name for name, value in vars(module).items()
      if not name.startswith("_")
      and getattr(value, "__module__", None) == module.__name__
  )


def documented_at(module_name: str, name: str) -> str:
  """The full name under which ``module_name.name`` has its page.

  A re-export (``optfree.step_schedule`` is ``optfree.schedules.
  step_schedule``) is documented once, under the listed module that holds it.
  """
  obj = getattr(importlib.import_module(module_name), name)
  for other in API_MODULES:
    if other == module_name or not other.startswith(module_name + "."):
      continue
    module = importlib.import_module(other)
    if name in public_names(module) and getattr(module, name) is obj:
      return f"{other}.{name}"
  return f"{module_name}.{name}"


def _heading(text: str, mark: str) -> str:
  return f"{text}\n{mark * len(text)}\n"


def _section_title(module_name: str) -> str:
  if module_name in SECTIONS:
    return SECTIONS[module_name]
  doc = inspect.getdoc(importlib.import_module(module_name)) or module_name
  return doc.split("\n\n", 1)[0].split(":", 1)[0].replace("\n", " ").rstrip(".")


def _section_order(module_name: str) -> tuple[int, str]:
  order = list(SECTIONS)
  return (order.index(module_name) if module_name in order else len(order),
          module_name)


def _api_page(module_name: str) -> str:
  module = importlib.import_module(module_name)
  lines = [_heading(module_name, "="),
           f".. automodule:: {module_name}\n", f".. currentmodule:: {module_name}\n"]
  own = collections.defaultdict(list)  # defining module -> names
  elsewhere = collections.defaultdict(list)  # documenting module -> names
  submodules = []
  for name in public_names(module):
    value = getattr(module, name)
    if isinstance(value, types.ModuleType):
      submodules.append(value.__name__)
      continue
    full = documented_at(module_name, name)
    if full != f"{module_name}.{name}":
      elsewhere[full.rsplit(".", 1)[0]].append(full)
    else:
      defining = getattr(value, "__module__", None) or module_name
      if defining.startswith(module_name + "._"):
        defining = module_name  # a private part of this module
      own[defining].append(name)
  for defining in sorted(own, key=_section_order):
    if defining != module_name and len(own) > 1:
      lines.append(_heading(_section_title(defining), "-"))
    lines.append(".. autosummary::\n   :toctree: _autosummary\n   :nosignatures:\n")
    lines.extend(f"   {name}" for name in own[defining])
    lines.append("")
  for documenting, full_names in sorted(elsewhere.items()):
    lines.append(_heading(f"Re-exported from ``{documenting}``", "-"))
    lines.append(
        f"These names are importable from ``{module_name}`` too "
        f"(``{module_name}.{full_names[0].rsplit('.', 1)[1]}`` is "
        f"``{full_names[0]}``); each has its page under ``{documenting}``.\n")
    lines.append(".. autosummary::\n   :nosignatures:\n")
    # Relative to the page's module, as autosummary requires.
    lines.extend(f"   {full[len(module_name) + 1:]}" for full in full_names)
    lines.append("")
  if submodules:
    lines.append(_heading("Submodules", "-"))
    lines.extend(f"- :doc:`{sub}`" for sub in submodules)
    lines.append("")
  return "\n".join(lines)


def _write_if_changed(path: pathlib.Path, text: str) -> None:
  # An unchanged file keeps its mtime, so incremental builds stay incremental.
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def api_pages(docs: pathlib.Path) -> None:
  """Writes ``api/<module>.rst`` for every module of ``API_MODULES``."""
  out = docs / "api"
  out.mkdir(exist_ok=True)
  for module_name in API_MODULES:
    _write_if_changed(out / f"{module_name}.rst", _api_page(module_name))


def expected_pages() -> dict[str, str]:
  """Every public ``module.name`` and the full name its page is under."""
  pages = {}
  for module_name in API_MODULES:
    module = importlib.import_module(module_name)
    for name in public_names(module):
      if isinstance(getattr(module, name), types.ModuleType):
        continue
      pages[f"{module_name}.{name}"] = documented_at(module_name, name)
  return pages


def notebooks(docs: pathlib.Path) -> None:
  """Copies ``notebooks/*.ipynb`` into ``docs/notebooks/``."""
  out = docs / "notebooks"
  out.mkdir(exist_ok=True)
  sources = sorted((docs.parent / "notebooks").glob("*.ipynb"))
  for stale in set(out.glob("*.ipynb")) - {out / s.name for s in sources}:
    stale.unlink()
  for source in sources:
    target = out / source.name
    if not target.exists() or target.read_bytes() != source.read_bytes():
      shutil.copyfile(source, target)


def _build_schedule(spec: dict):
  from optfree import schedules  # pylint: disable=g-import-not-at-top
  kwargs = dict(spec["kwargs"])
  if spec["fn"] == "sequential_schedule":
    kwargs["schedules"] = [_build_schedule(s) for s in kwargs["schedules"]]
  if spec["fn"] == "per_epoch":
    kwargs["schedule"] = _build_schedule(kwargs["schedule"])
  return getattr(schedules, spec["fn"])(**kwargs)


def _describe(spec: dict) -> str:
  parts = []
  for key, value in spec["kwargs"].items():
    if isinstance(value, dict) and "fn" in value:
      value = _describe(value)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
      value = "[" + ", ".join(_describe(v) for v in value) + "]"
    else:
      value = repr(value)
    parts.append(f"{key}={value}")
  return f"{spec['fn']}({', '.join(parts)})"


def schedule_gallery(docs: pathlib.Path) -> None:
  """Plots each golden case: optfree's values (line) and torch's (dots)."""
  import jax  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  golden = np.load(docs.parent / "tests" / "reference" / "schedules.npz")
  cases = json.loads(str(golden["cases"]))
  by_fn = collections.defaultdict(list)
  for name, spec in cases.items():
    by_fn[spec["fn"]].append(name)
  out = docs / "guides" / "_gallery"
  out.mkdir(exist_ok=True)
  sections = [
      f"Golden values: `tests/reference/schedules.npz` ({golden['meta']}).\n"
  ]
  with jax.enable_x64(True):
    for fn in sorted(by_fn):
      names = by_fn[fn]
      # Every figure is as wide as the page, so all plots have one size.
      num_rows = -(-len(names) // GALLERY_COLUMNS)
      figure, axes = plt.subplots(
          num_rows, GALLERY_COLUMNS,
          figsize=(3.6 * GALLERY_COLUMNS, 2.6 * num_rows), squeeze=False)
      rows = []
      for ax, name in zip(axes.flat, names):
        torch_values = golden[name]
        counts = np.arange(len(torch_values))
        # One compiled call per case; eager evaluation dispatches (and
        # compiles) every operation separately, several times slower.
        ours = np.asarray(jax.jit(_build_schedule(cases[name]))(counts))
        error = np.max(np.abs(ours - torch_values)
                       / np.maximum(np.abs(torch_values), 1e-300))
        ax.plot(counts, ours, color="C0", lw=1.5, label="optfree")
        # Dots at most every few counts, so that the line stays visible; the
        # table below compares every count.
        ax.plot(counts, torch_values, ".", color="C3", ms=4, label="torch",
                markevery=max(1, len(counts) // 60))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("count", fontsize=9)
        ax.tick_params(labelsize=8)
        arguments = _describe(cases[name]).split("(", 1)[1][:-1]
        rows.append(f"| `{name}` | `{arguments}` | {error:.0e} |")
      for ax in axes.flat[len(names):]:
        ax.set_visible(False)
      axes.flat[0].legend(fontsize=8)
      figure.tight_layout()
      figure.savefig(out / f"{fn}.png", dpi=90)
      plt.close(figure)
      sections.append("\n".join([
          f"## {fn}\n",
          f"{{func}}`optfree.schedules.{fn}` against torch's "
          f"{TORCH_NAMES.get(fn, 'scheduler')}.\n",
          f"![{fn} against torch](_gallery/{fn}.png)\n",
          "| case | arguments | max. rel. difference |",
          "| --- | --- | --- |",
          *rows,
          "",
      ]))
  _write_if_changed(docs / "guides" / "_gallery.md", "\n".join(sections))


TASK_TITLES = {"mnist1d": "MNIST-1D (a small 1-D CNN)",
               "charlm": "Character-level language model (2-layer transformer)"}


def _quality_section(result: dict) -> str:
  with_accuracy = result["task"] == "mnist1d"
  lines = [
      f"### {TASK_TITLES.get(result['task'], result['task'])}\n",
      f"{result['description']}. {result['num_params']:,} params, {result['config']['steps']} steps; "
      f"`{result['command']}` ({result['wall_s'] / 60:.0f} min).\n",
      "| optimizer | chosen lr | test loss at T | "
      + ("test accuracy | " if with_accuracy else "") + "state / params (bytes) |",
      "| --- | --- | --- | " + ("--- | " if with_accuracy else "") + "--- |",
  ]
  for entry in result["optimizers"].values():
    final = entry["final"]
    edge = "\\*" if entry["best_lr_at_grid_edge"] else ""
    row = (f"| {entry['label']} | {entry['best_lr']:g}{edge} | "
           f"{final['test_loss_mean']:.3f} ± {final['test_loss_std']:.3f} | ")
    if with_accuracy:
      row += (f"{100 * final['test_accuracy_mean']:.1f}% ± "
              f"{100 * final['test_accuracy_std']:.1f} | ")
    lines.append(row + f"{entry['state_per_param_bytes']:.2f} |")
  names = [n for n in result["horizons"][0] if n != "steps"]
  lines += [
      "",
      "Tuned for each stopping time (the schedules rerun per horizon, "
      "Schedule-Free read from its one run), test loss:\n",
      "| stop at | " + " | ".join(result["optimizers"][n]["label"]
                                 for n in names) + " |",
      "| --- | " + " | ".join("---" for _ in names) + " |",
  ]
  for horizon in result["horizons"]:
    lines.append(f"| {horizon['steps']} | " + " | ".join(
        f"{horizon[n]['test_loss_mean']:.3f}" for n in names) + " |")
  return "\n".join(lines) + "\n"


def quality_tables(docs: pathlib.Path) -> None:
  """Writes ``guides/_quality.md`` from benchmarks/results/quality-*.json."""
  results = sorted((docs.parent / "benchmarks" / "results").glob("quality-*.json"))
  sections = [_quality_section(json.loads(path.read_text())) for path in results]
  _write_if_changed(docs / "guides" / "_quality.md", "\n".join(sections))
