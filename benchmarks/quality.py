"""Training-quality benchmark: how well each optimizer trains, on real data.

Two tasks, generated or read offline: a small CNN on MNIST-1D and a 2-layer
character-level transformer on the sources of a fixed list of Python
standard-library modules (``optfree._demo_models`` holds the data, models and
the vmapped training loop shared with ``python -m optfree demo``).

Protocol, per task and optimizer:
1. Learning-rate grid: one run per learning rate (seed 0, vmapped together).
   The best learning rate is the one with the lowest validation loss at the
   end (validation data is held out of training and apart from the test set).
   While it is the grid's smallest or largest value, the grid is widened on
   that side by as many half-decade steps as it had values (at most twice),
   so that a chosen learning rate at an edge is a flagged exception.
   An optimizer whose grid is one value is not tuned: ScheduleFree+ at its
   defaults (``optfree.schedule_free_plus()``, no argument) and Prodigy +
   warmup-cosine at Prodigy's learning rate 1 run once per seed, with no
   search and no widening (``"tuned": false`` in the JSON).
2. Seeds: the best learning rate with every seed (vmapped together); the test
   curves (loss, accuracy) are averaged over seeds. Seed 0 repeats a grid run,
   which checks that training is deterministic.
Schedule-Free AdamW runs with the settings that
benchmarks/schedule_free_study.py recommends
(``_demo_models.SF_ADAMW_SETTINGS``: b1=0.9, r=1, 5% warmup); the JSON
records them under
``schedule_free_settings`` and in each optimizer's label, with
ScheduleFree+'s defaults as this run found them.
Horizons: the optimizers that need their stopping time (AdamW, SGD and
Prodigy with warmup-cosine, ``HORIZON_BASELINES``) are tuned and run
separately for T/4, T/2 and T steps; AdamW's and Prodigy's also for
``LONG`` x T = 4T. The Schedule-Free runs are single runs evaluated at
``optfree.eval_params`` when they pass T/4, T/2 and T; ScheduleFree+'s and
Schedule-Free AdamW's one run goes on to 4T (Schedule-Free AdamW's learning
rate and warmup are those chosen at T: its 4T run is its T run continued).
Every optimizer's ``final`` is at T.
The zero-tuning goal (``untuned_goal`` in the JSON): at each stop, the one
untuned ScheduleFree+ run's mean test loss within 2% of AdamW + cosine tuned
for that stop, ``(sf_plus - cosine) / cosine <= 0.02``.

Writes benchmarks/results/quality-<task>.json, quality-<task>.png (curves) and
quality-<task>-horizons.png, and prints summary tables. ``--only`` runs some
optimizers and merges them into the JSON already in --out-dir (the same
protocol: data, model, T, seeds); the JSON's ``commands`` and each
optimizer's ``command`` say which command produced what. ``--docs`` rewrites
the generated ScheduleFree+ blocks of docs/guides/quality.md and README.md
from the JSONs (with benchmarks/torch_anchor.py's) and trains nothing.

  python benchmarks/quality.py            # the full run (see FULL below)
  python benchmarks/quality.py --quick    # a smoke run, a few minutes
  python benchmarks/quality.py --only sf_plus,prodigy_cosine,adamw_cosine,sf_adamw
  python benchmarks/quality.py --docs
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import json
import math
import pathlib
import platform
import re
import sys
import tempfile
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import optfree  # pylint: disable=wrong-import-position
from optfree import _demo_models  # pylint: disable=wrong-import-position

OPTIMIZERS = tuple(_demo_models.OPTIMIZERS)
# --quick compiles fewer programs: one per optimizer and horizon dominates.
QUICK_OPTIMIZERS = ("adamw_cosine", "sf_adamw", "lion", "adabound", "sf_plus",
                    "prodigy_cosine")
# Learning rates: a half-decade ladder (1, 3, 10, 30, ...). Grids are runs
# of it, widened along it while the best value sits at an edge.
LADDER = tuple(m * 10.0**e for e in range(-5, 3) for m in (1, 3))
MAX_WIDENINGS = 2
# Tuned (or, untuned, run) per horizon, since they know their stopping time,
# and the one-run Schedule-Free optimizers each is drawn with.
HORIZON_BASELINES = {"adamw_cosine": ("sf_adamw", "sf_plus"),
                     "sgd_cosine": ("sf_sgd",),
                     "prodigy_cosine": ("sf_plus",)}
# The long horizon, LONG x T, and who runs to it: the zero-tuning comparison.
LONG = 4
LONG_RUNS = ("adamw_cosine", "prodigy_cosine", "sf_adamw", "sf_plus")
# The zero-tuning goal: untuned ScheduleFree+ within 2% of the tuned cosine.
UNTUNED = "sf_plus"
UNTUNED_BASELINE = "adamw_cosine"
GOAL = 0.02

# Task settings: the full run and the --quick smoke run.
FULL = {
    "mnist1d": dict(steps=800, eval_every=40, model=dict(
        num_samples=10000, batch_size=128, features=32)),
    "charlm": dict(steps=400, eval_every=40, model=dict(
        context=64, width=32, batch_size=16)),
}
QUICK = {
    "mnist1d": dict(steps=120, eval_every=30, model=dict(
        num_samples=10000, batch_size=64, features=16)),
    "charlm": dict(steps=60, eval_every=15, model=dict(
        context=32, width=16, batch_size=8, max_chars=200_000,
        num_eval_windows=32)),
}
TASK_BUILDERS = {"mnist1d": _demo_models.mnist1d_task,
                 "charlm": _demo_models.charlm_task}


def _horizons(steps: int) -> list[int]:
  return [steps // 4, steps // 2, steps]


def stops(steps: int, long: bool) -> list[int]:
  """T/4, T/2, T, and 4T for the optimizers of ``LONG_RUNS``."""
  return _horizons(steps) + ([LONG * steps] if long else [])


def is_tuned(spec: _demo_models.OptimizerSpec) -> bool:
  return len(spec.lr_grid) > 1


class _MadeFor(NamedTuple):
  """``make`` of an optimizer set up for ``steps`` (its warmup), run longer.

  A tuple (hashable, equal by value): the compiled programs, cached per
  spec, are shared by every run of one setting.
  """
  make: Callable[[Any, int], Any]
  steps: int

  def __call__(self, learning_rate, total_steps):
    del total_steps
    return self.make(learning_rate, self.steps)


def train(task, spec, learning_rates, seeds, steps, record):
  """Trains vmapped runs; returns per-run metrics at every ``record`` step."""
  runs = _demo_models.Runs(task, spec, learning_rates, seeds, steps)
  points = {}
  for stop in sorted(record):
    runs.run_chunk(stop - runs.step)
    points[stop] = runs.evaluate()
  return points


def _mean_std(values: np.ndarray) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def tune(task, spec, grid, seeds, steps, eval_every,
         max_widenings: int = 0, run_steps: int | None = None,
         tuned: bool = True) -> dict[str, Any]:
  """The grid on seed 0, then the best learning rate on every seed.

  While the best learning rate (lowest validation loss at ``steps``) is the
  grid's smallest or largest, as many values as the grid had, past it on
  ``LADDER``, are run, at most ``max_widenings`` times. Every seed-0 batch is
  then as wide as the first, so it is one compiled program, and the seed-0
  run of the seed phase repeats it bit for bit when there are as many seeds
  as learning rates in the grid.

  Not ``tuned``: no grid run, the one learning rate on every seed. The seed
  runs last ``run_steps`` (default ``steps``) with the optimizer set up for
  ``steps`` (a Schedule-Free run continued past the horizon it was tuned
  at), evaluated every ``eval_every`` steps up to ``steps``, then every
  ``LONG * eval_every``, and at T/4, T/2, T and ``run_steps``.
  """
  run_steps = steps if run_steps is None else run_steps
  horizons = _horizons(steps) + ([run_steps] if run_steps != steps else [])
  final = {}
  grid = list(grid)
  best_lr = grid[0]
  if tuned:
    batch = list(grid)
    width = len(batch)
    for widening in range(max_widenings + 1):
      points = train(task, spec, batch, [seeds[0]] * len(batch), steps,
                     set(_horizons(steps)))[steps]
      for i, lr in enumerate(batch):
        final[lr] = {key: float(value[i]) for key, value in points.items()}
      grid = sorted(final)
      val_loss = {lr: metrics["val_loss"] if np.isfinite(metrics["val_loss"])
                  else np.inf for lr, metrics in final.items()}
      best_lr = min(grid, key=val_loss.get)
      if widening == max_widenings:
        break
      if best_lr == grid[0] and len(grid) > 1:
        direction = -1
      elif best_lr == grid[-1]:
        direction = +1
      else:
        break
      batch = [neighbour(best_lr, direction * (i + 1)) for i in range(width)]
      batch = [lr for lr in batch if lr is not None]
      if not batch:
        break
  best = grid.index(best_lr)
  record = (set(range(eval_every, steps + 1, eval_every))
            | set(range(steps, run_steps + 1, LONG * eval_every))
            | set(horizons))
  run_spec = spec if run_steps == steps else dataclasses.replace(
      spec, make=_MadeFor(spec.make, steps))
  seed_points = train(task, run_spec, [best_lr] * len(seeds), seeds,
                      run_steps, record)
  repeat_identical = None
  if tuned:
    # Bitwise equal when both vmaps have the same width (one compiled program).
    repeat_identical = bool(np.array_equal(
        seed_points[steps]["test_loss"][0], final[best_lr]["test_loss"]))
  steps_recorded = sorted(seed_points)
  curve = {"step": steps_recorded}
  for metric in ("test_loss", "test_accuracy"):
    stats = [_mean_std(seed_points[s][metric]) for s in steps_recorded]
    curve[f"{metric}_mean"] = [m for m, _ in stats]
    curve[f"{metric}_std"] = [s for _, s in stats]
  at_horizon = {}
  for h in horizons:
    entry = {}
    for metric in ("test_loss", "test_accuracy"):
      entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std(
          seed_points[h][metric])
    entry["val_loss_mean"] = _mean_std(seed_points[h]["val_loss"])[0]
    entry["test_loss_per_seed"] = [float(v)
                                   for v in seed_points[h]["test_loss"]]
    at_horizon[str(h)] = entry
  return {
      "label": spec.label,
      "schedule_free": spec.schedule_free,
      "tuned": tuned,
      "steps": steps,
      "run_steps": run_steps,
      "lr_grid": list(grid),
      "grid_seed0": {f"{lr:g}": final[lr] for lr in grid if lr in final},
      "best_lr": best_lr,
      "best_lr_at_grid_edge": tuned and best in (0, len(grid) - 1),
      "seeds": list(seeds),
      "seed0_repeat_identical": repeat_identical,
      "curve": curve,
      "at_horizon": at_horizon,
      "final": at_horizon[str(steps)],
  }


def _sf_plus_defaults() -> dict[str, Any]:
  """The defaults ``optfree.schedule_free_plus()`` ran with (they may change)."""
  return {name: parameter.default for name, parameter in
          inspect.signature(optfree.schedule_free_plus).parameters.items()
          if isinstance(parameter.default, (int, float, str, type(None)))}


def protocol(task: _demo_models.Task, settings: dict[str, Any],
             seeds: Sequence[int], quick: bool) -> dict[str, Any]:
  """What runs of one report share (``PROTOCOL_KEYS``)."""
  params = jax.eval_shape(task.model.init, jax.random.PRNGKey(0),
                          task.data.x_test[:1])
  return {"task": task.name, "description": task.data.description,
          "num_params": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
          "config": {"steps": settings["steps"],
                     "eval_every": settings["eval_every"],
                     "seeds": list(seeds), "quick": quick,
                     **settings["model"]}}


def run_task(name: str, settings: dict[str, Any], optimizers: Sequence[str],
             seeds: Sequence[int], quick: bool, progress,
             task: _demo_models.Task | None = None) -> dict[str, Any]:
  if task is None:
    task = TASK_BUILDERS[name](**settings["model"])
  steps, eval_every = settings["steps"], settings["eval_every"]
  params = jax.eval_shape(task.model.init, jax.random.PRNGKey(0),
                          task.data.x_test[:1])
  start = time.perf_counter()
  results = {}
  horizon_runs = {}
  widenings = 0 if quick else MAX_WIDENINGS
  for opt in optimizers:
    spec = _demo_models.OPTIMIZERS[opt]
    tuned = is_tuned(spec)
    grid = (spec.learning_rate,) if quick or not tuned else spec.lr_grid
    long = opt in LONG_RUNS
    one_run_long = long and opt not in HORIZON_BASELINES
    progress(f"{name}: {opt}" + (f" (one run of {LONG * steps} steps)"
                                 if one_run_long else ""))
    results[opt] = tune(task, spec, grid, seeds, steps, eval_every,
                        widenings if tuned else 0,
                        run_steps=LONG * steps if one_run_long else None,
                        tuned=tuned)
    results[opt].update(_demo_models.state_size(spec, params))
    if opt in HORIZON_BASELINES:
      horizon_runs[opt] = {str(steps): results[opt]}
      for h in stops(steps, long):
        if h == steps:
          continue
        progress(f"{name}: {opt} " + ("tuned" if tuned else "run")
                 + f" for {h} steps")
        # A 4T run's curve has as many points as a T run's.
        every = eval_every * max(1, h // steps)
        horizon_runs[opt][str(h)] = tune(task, spec, grid, seeds, h, every,
                                         widenings if tuned else 0,
                                         tuned=tuned)
  settings_used = {
      "sf_adamw": _demo_models.SF_ADAMW_SETTINGS,
      "sf_sgd": _demo_models.SF_SGD_SETTINGS}
  if UNTUNED in optimizers:
    settings_used[UNTUNED] = _sf_plus_defaults()
  report = {
      **protocol(task, settings, seeds, quick),
      "long_factor": LONG,
      "schedule_free_settings": settings_used,
      "optimizers": results,
      "horizon_runs": horizon_runs,
      "wall_s": time.perf_counter() - start,
      "versions": _versions(),
  }
  summarize(report)
  return report


def _versions() -> dict[str, str]:
  return {"python": platform.python_version(),
          "jax": jax.__version__,
          "optax": __import__("optax").__version__,
          "flax": __import__("flax").__version__,
          "optfree": optfree.__version__}


def summarize(report: dict[str, Any]) -> dict[str, Any]:
  """(Re)computes the report's ``horizons`` table and ``untuned_goal``."""
  steps = report["config"]["steps"]
  report["horizons"] = horizon_table(report["optimizers"],
                                     report["horizon_runs"], steps)
  report["untuned_goal"] = untuned_goal(report["horizons"])
  return report


def _horizon_columns(results, horizon_runs) -> list[str]:
  """Each per-horizon optimizer followed by the one-run ones drawn with it."""
  columns = []
  for baseline, one_runs in HORIZON_BASELINES.items():
    for name in (baseline, *one_runs):
      if name not in columns and (name in horizon_runs or (
          name in results and results[name]["schedule_free"])):
        columns.append(name)
  columns += [name for name, r in results.items()
              if r["schedule_free"] and name not in columns]
  return columns


def horizon_table(results, horizon_runs, steps) -> list[dict[str, Any]]:
  """Test loss at T/4, T/2, T, 4T: each per-horizon optimizer tuned (or run)
  for that stop, each Schedule-Free optimizer read from its one run. A row
  holds the optimizers that reached its stop."""
  rows = []
  for h in stops(steps, long=True):
    row = {"steps": h}
    for name in _horizon_columns(results, horizon_runs):
      if name in horizon_runs:
        run = horizon_runs[name].get(str(h))
        if run is not None:
          row[name] = {"best_lr": run["best_lr"], **run["final"]}
      elif str(h) in results[name]["at_horizon"]:
        row[name] = {"best_lr": results[name]["best_lr"],
                     **results[name]["at_horizon"][str(h)]}
    if len(row) > 1:
      rows.append(row)
  return rows


def _finite_or_none(value: float) -> float | None:
  return value if math.isfinite(value) else None


def untuned_goal(horizons: list[dict[str, Any]]) -> dict[str, Any]:
  """Per stop: untuned ScheduleFree+ against AdamW + cosine tuned for it."""
  rows = []
  for row in horizons:
    if UNTUNED not in row or UNTUNED_BASELINE not in row:
      continue
    ours = row[UNTUNED]["test_loss_mean"]
    cosine = row[UNTUNED_BASELINE]["test_loss_mean"]
    gap = (ours - cosine) / cosine
    rows.append({"steps": row["steps"],
                 UNTUNED: _finite_or_none(ours),
                 UNTUNED_BASELINE: _finite_or_none(cosine),
                 "ratio": _finite_or_none(ours / cosine),
                 "relative_gap": _finite_or_none(gap),
                 "within_goal": bool(math.isfinite(gap) and gap <= GOAL)})
  return {"what": (f"mean test loss over seeds: {UNTUNED} (one run, no "
                   f"tuning) against {UNTUNED_BASELINE} tuned for each stop; "
                   f"ratio = {UNTUNED} / {UNTUNED_BASELINE}, relative_gap = "
                   f"ratio - 1, goal: relative_gap <= {GOAL}"),
          "goal": GOAL, "rows": rows,
          "met_everywhere": bool(rows) and all(r["within_goal"] for r in rows)}


# The part of a report that --only must find unchanged in the JSON it merges
# into: the same data, model, length, evaluation points and seeds.
PROTOCOL_KEYS = ("task", "description", "num_params", "config")


def merge(existing: dict[str, Any], new: dict[str, Any],
          only: Sequence[str]) -> dict[str, Any]:
  """``new``'s optimizers (``only``) in place of or beside ``existing``'s.

  Refuses a JSON of another protocol (``PROTOCOL_KEYS``). Each optimizer and
  per-horizon run keeps the command that produced it; ``commands`` lists
  every command with the optimizers it ran, its time and its versions.
  """
  for key in PROTOCOL_KEYS:
    if existing.get(key) != new[key]:
      raise ValueError(
          f"--only: the existing JSON's {key!r} is {existing.get(key)!r}, this "
          f"run's is {new[key]!r}: another protocol, so rerun every optimizer "
          "(without --only) instead of merging")
  merged = dict(existing)
  commands = list(existing.get("commands") or [_first_command(existing)])
  first = commands[0]["command"]
  optimizers = {}
  for name, entry in existing["optimizers"].items():
    optimizers[name] = {"command": first, **entry}
  horizon_runs = {name: {h: {"command": first, **run} for h, run in
                         runs.items()}
                  for name, runs in existing["horizon_runs"].items()}
  for name in only:
    optimizers[name] = new["optimizers"][name]
    horizon_runs.pop(name, None)
    if name in new["horizon_runs"]:
      horizon_runs[name] = new["horizon_runs"][name]
  commands.append(new["commands"][0])
  merged.update(
      optimizers=optimizers, horizon_runs=horizon_runs, commands=commands,
      command=" ; ".join(c["command"] for c in commands),
      wall_s=sum(c["wall_s"] for c in commands),
      long_factor=new["long_factor"],
      schedule_free_settings={**existing.get("schedule_free_settings", {}),
                              **new["schedule_free_settings"]})
  return summarize(merged)


def _first_command(report: dict[str, Any]) -> dict[str, Any]:
  return {"command": report["command"], "optimizers": list(report["optimizers"]),
          "wall_s": report["wall_s"], "versions": report["versions"]}


def neighbour(lr: float, direction: int) -> float | None:
  """The value ``direction`` places from ``lr`` on ``LADDER`` (None past it)."""
  index = min(range(len(LADDER)), key=lambda i: abs(math.log(LADDER[i] / lr)))
  index += direction
  return LADDER[index] if 0 <= index < len(LADDER) else None


def _pm(entry: dict[str, Any], metric: str, digits: int = 3) -> str:
  return (f"{entry[metric + '_mean']:.{digits}f}"
          f"±{entry[metric + '_std']:.{digits}f}")


def _lr_text(r: dict[str, Any]) -> str:
  if not r.get("tuned", True):
    return "untuned"
  return f"{r['best_lr']:g}" + ("*" if r["best_lr_at_grid_edge"] else "")


def format_summary(report: dict[str, Any]) -> str:
  steps = report["config"]["steps"]
  quarter, long = str(steps // 4), str(LONG * steps)
  header = ("optimizer", "best lr", f"loss@{quarter}", f"loss@{steps}",
            f"acc@{steps}", f"loss@{long}", "state/params")
  rows = [header]
  for name, r in report["optimizers"].items():
    at_long = r["at_horizon"].get(long) or report["horizon_runs"].get(
        name, {}).get(long, {}).get("final")
    rows.append((name, _lr_text(r), _pm(r["at_horizon"][quarter], "test_loss"),
                 _pm(r["final"], "test_loss"), _pm(r["final"], "test_accuracy"),
                 _pm(at_long, "test_loss") if at_long else "-",
                 f"{r['state_per_param_bytes']:.2f}"))
  lines = [f"{report['task']}: {report['description']}",
           f"({report['num_params']} params; test mean±std over seeds "
           f"{report['config']['seeds']}; * = best lr at the grid's edge; "
           f"loss@{long}: the runs that go on to {LONG}T)"]
  lines += _columns(rows)
  if report["horizons"]:
    columns = []
    for row in report["horizons"]:
      columns += [key for key in row if key not in columns and key != "steps"]
    rows = [("stop at",) + tuple(f"{c} loss (lr)" for c in columns)]
    def cell(row, name):
      if name not in row:
        return "-"
      tuned = report["optimizers"][name].get("tuned", True)
      lr = f"{row[name]['best_lr']:g}" if tuned else "untuned"
      return f"{_pm(row[name], 'test_loss')} ({lr})"

    for row in report["horizons"]:
      rows.append((str(row["steps"]),)
                  + tuple(cell(row, c) for c in columns))
    lines.append(f"test loss when stopping at T/4, T/2, T, {LONG}T (cosine: "
                 "tuned and run for that stop; Schedule-Free: one run)")
    lines += _columns(rows)
  goal = report.get("untuned_goal", {}).get("rows")
  if goal:
    rows = [("stop at", UNTUNED, UNTUNED_BASELINE, "ratio",
             f"within {100 * GOAL:g}%")]
    for row in goal:
      rows.append((str(row["steps"]), _number(row[UNTUNED]),
                   _number(row[UNTUNED_BASELINE]), _number(row["ratio"]),
                   "yes" if row["within_goal"] else
                   f"no ({_gap_text(row['relative_gap'])})"))
    lines.append(f"the zero-tuning goal: {UNTUNED} untuned within "
                 f"{100 * GOAL:g}% of {UNTUNED_BASELINE} tuned for each stop "
                 "(mean test loss)")
    lines += _columns(rows)
  return "\n".join(lines)


def _number(value: float | None, digits: int = 3) -> str:
  return "nan" if value is None else f"{value:.{digits}f}"


def _gap_text(gap: float | None) -> str:
  """A relative gap as a percentage; from 10 (+1000%) on, as a ratio."""
  if gap is None:
    return "not finite"
  if gap >= 10:
    return f"{1 + gap:.2g}x the cosine's loss"
  return f"{100 * gap:+.1f}%"


def _columns(rows) -> list[str]:
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths)))
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  return lines


def _run_label(name: str, r: dict[str, Any]) -> str:
  return f"{name} (untuned)" if not r.get("tuned", True) else (
      f"{name} (lr {r['best_lr']:g})")


def plot(report: dict[str, Any], out_dir: pathlib.Path) -> list[pathlib.Path]:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  name = report["task"]
  steps = report["config"]["steps"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for opt, r in report["optimizers"].items():
    c = r["curve"]
    for ax, metric in zip(axes, ("test_loss", "test_accuracy")):
      mean = np.asarray(c[f"{metric}_mean"])
      std = np.asarray(c[f"{metric}_std"])
      line, = ax.plot(c["step"], mean, label=_run_label(opt, r))
      ax.fill_between(c["step"], mean - std, mean + std, alpha=0.15,
                      color=line.get_color())
  axes[0].set_ylabel("test loss")
  axes[1].set_ylabel("test accuracy")
  finals = [r["final"]["test_loss_mean"]
            for r in report["optimizers"].values()]
  # Early losses dwarf the differences at the end; diverged runs are cut off.
  axes[0].set_ylim(top=np.nanmedian(finals) * 1.5)
  for ax in axes:
    ax.set_xlabel(f"step (the runs to {LONG}T: the horizons figure)")
    ax.set_xlim(0, steps)
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=7)
  fig.suptitle(f"{name}: {report['description']}", fontsize=8)
  fig.tight_layout()
  curves = out_dir / f"quality-{name}.png"
  fig.savefig(curves, dpi=110)
  plt.close(fig)
  paths = [curves]

  if report["horizon_runs"]:
    panels = report["horizon_runs"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5),
                             squeeze=False)
    for ax, (baseline, by_horizon) in zip(axes[0], panels.items()):
      for h, r in sorted(by_horizon.items(), key=lambda kv: int(kv[0])):
        what = "tuned" if r.get("tuned", True) else "run"
        line, = ax.plot(r["curve"]["step"], r["curve"]["test_loss_mean"],
                        "--", label=f"{baseline} {what} for {h} steps"
                        + (f" (lr {r['best_lr']:g})" if what == "tuned"
                           else ""))
        ax.plot(int(h), r["final"]["test_loss_mean"], "o",
                color=line.get_color())
      shown = [baseline]
      for schedule_free, style in zip(HORIZON_BASELINES.get(baseline, ()),
                                      ("k", "m")):
        if schedule_free not in report["optimizers"]:
          continue
        shown.append(schedule_free)
        r = report["optimizers"][schedule_free]
        ax.plot(r["curve"]["step"], r["curve"]["test_loss_mean"], style + "-",
                label=f"{_run_label(schedule_free, r)}, one run")
        reached = [h for h in sorted(r["at_horizon"], key=int)]
        ax.plot([int(h) for h in reached],
                [r["at_horizon"][h]["test_loss_mean"] for h in reached],
                style + "o")
      values = [row[key]["test_loss_mean"] for row in report["horizons"]
                for key in shown if key in row]
      values = [v for v in values if np.isfinite(v)]
      if values:
        ax.set_ylim(top=max(values) * 1.25)
      ax.set_xlabel("step")
      ax.set_ylabel("test loss (mean over seeds)")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
    fig.suptitle(f"{name}: one Schedule-Free run against schedules run for "
                 "each stopping time", fontsize=9)
    fig.tight_layout()
    horizons = out_dir / f"quality-{name}-horizons.png"
    fig.savefig(horizons, dpi=110)
    plt.close(fig)
    paths.append(horizons)
  return paths


# ------------------------------------------------- generated documentation

TASK_TITLES = {"mnist1d": "MNIST-1D (a small 1-D CNN)",
               "charlm": "Character-level language model (2-layer transformer)"}
DOC_FILES = {"docs": ROOT / "docs" / "guides" / "quality.md",
             "readme": ROOT / "README.md"}
BEGIN = ("<!-- untuned: begin; written by `python benchmarks/quality.py "
         "--docs` from benchmarks/results, do not edit -->")
END = "<!-- untuned: end -->"
ANCHOR_LABEL = "prodigy-plus-schedule-free 2.0.1 (torch, defaults)"
ONLY_COMMAND = ("python benchmarks/quality.py --only "
                "sf_plus,prodigy_cosine,adamw_cosine,sf_adamw")


def anchor_path(results_dir: pathlib.Path, task: str) -> pathlib.Path:
  return results_dir / f"quality-{task}-torch-anchor.json"


def load_results(results_dir: pathlib.Path) -> tuple[dict, dict]:
  """The quality and torch-anchor JSONs of every task (None where absent)."""
  reports, anchors = {}, {}
  for task in TASK_BUILDERS:
    path = results_dir / f"quality-{task}.json"
    reports[task] = json.loads(path.read_text()) if path.exists() else None
    path = anchor_path(results_dir, task)
    anchors[task] = json.loads(path.read_text()) if path.exists() else None
  return reports, anchors


def check_anchor_protocol(report: dict[str, Any], anchor: dict[str, Any]):
  """The torch anchor ran the quality run's data, length, batch and seeds."""
  config = report["config"]
  for key in ("steps", "eval_every", "seeds", "batch_size"):
    if anchor["config"][key] != config[key]:
      raise ValueError(f"{report['task']}: the torch anchor's {key} is "
                       f"{anchor['config'][key]!r}, quality.py's "
                       f"{config[key]!r}")
  if anchor["description"] != report["description"]:
    raise ValueError(f"{report['task']}: the torch anchor ran on other data "
                     f"({anchor['description']!r})")


def _stop_name(h: int, steps: int) -> str:
  names = {steps // 4: "T/4", steps // 2: "T/2", steps: "T",
           LONG * steps: f"{LONG}T"}
  return f"{names.get(h, h)} = {h}"


def _loss_cell(entry: dict[str, Any] | None, accuracy: bool) -> str:
  if entry is None:
    return "–"
  mean = entry["test_loss_mean"]
  if not math.isfinite(mean):
    return "diverged"
  if mean >= 1e3:  # diverged: the order of magnitude says enough
    text = f"{mean:.2g}"
  else:
    text = f"{mean:.3f} ± {entry['test_loss_std']:.3f}"
  if accuracy:
    text += f" ({100 * entry['test_accuracy_mean']:.1f}%)"
  return text


def _verdict(row: dict[str, Any]) -> str:
  gap = row["relative_gap"]
  if gap is None:
    return "no (not finite)"
  if row["within_goal"]:
    return f"yes ({_gap_text(gap)})"
  if gap >= 10:
    return f"no ({_gap_text(gap)})"
  return f"no ({_gap_text(gap)}: missed by {100 * (gap - GOAL):.1f} points)"


def untuned_section(task: str, report: dict[str, Any] | None,
                    anchor: dict[str, Any] | None) -> str:
  """The docs' table of one task: untuned ScheduleFree+ against the rest."""
  title = f"### {TASK_TITLES[task]}: untuned ScheduleFree+\n"
  if report is None or UNTUNED not in report["optimizers"]:
    return (f"{title}\nPending: `benchmarks/results/quality-{task}.json` has no "
            f"ScheduleFree+ run yet (`{ONLY_COMMAND} --tasks {task}` adds "
            "it).\n")
  if anchor is not None:
    check_anchor_protocol(report, anchor)
  steps = report["config"]["steps"]
  accuracy = task == "mnist1d"
  seeds = ", ".join(str(s) for s in report["config"]["seeds"])
  goal = {row["steps"]: row for row in report["untuned_goal"]["rows"]}
  by_stop = {row["steps"]: row for row in report["horizons"]}
  adamw_runs = report["horizon_runs"].get(UNTUNED_BASELINE, {})
  labels = [
      "ScheduleFree+, defaults, one run",
      "AdamW + warmup-cosine, tuned for the stop (lr)",
      "Schedule-Free AdamW, one run (lr tuned at T)",
      "Prodigy + warmup-cosine for the stop (lr 1)",
      f"{ANCHOR_LABEL}, one run",
      "ScheduleFree+ / cosine", f"within {100 * GOAL:g}%?"]
  lines = [
      title,
      f"Test loss (mean ± std over seeds {seeds}"
      + ("; mean accuracy in parentheses" if accuracy else "")
      + f"), T = {steps} steps.\n",
      "| stop at | " + " | ".join(labels) + " |",
      "|" + " --- |" * (len(labels) + 1)]
  for h in stops(steps, long=True):
    row = by_stop.get(h, {})
    cosine = row.get(UNTUNED_BASELINE)
    cosine_text = _loss_cell(cosine, accuracy)
    if cosine is not None and str(h) in adamw_runs:
      cosine_text += f", lr {cosine['best_lr']:g}"
    anchor_entry = None if anchor is None else anchor["at_horizon"].get(str(h))
    cells = [_loss_cell(row.get(UNTUNED), accuracy), cosine_text,
             _loss_cell(row.get("sf_adamw"), accuracy),
             _loss_cell(row.get("prodigy_cosine"), accuracy),
             "not run yet" if anchor is None else _loss_cell(anchor_entry,
                                                             accuracy)]
    if h in goal:
      ratio = goal[h]["ratio"]
      cells += [f"{ratio:.2g}" if ratio is not None and ratio >= 1e3
                else _number(ratio), _verdict(goal[h])]
    else:
      cells += ["–", "–"]
    lines.append(f"| {_stop_name(h, steps)} | " + " | ".join(cells) + " |")
  met = [h for h, row in goal.items() if row["within_goal"]]
  missed = [h for h, row in goal.items() if not row["within_goal"]]
  verdict = (f"\nThe goal, ScheduleFree+ within {100 * GOAL:g}% of the tuned "
             f"cosine's test loss, is met at {len(met)} of {len(goal)} stops")
  if missed:
    worst = max(missed, key=lambda h: (goal[h]["relative_gap"] is None,
                                       goal[h]["relative_gap"] or 0))
    gap = goal[worst]["relative_gap"]
    verdict += (", missed at " + ", ".join(
        _stop_name(h, steps).split(" =")[0] for h in missed)
        + (f"; the largest miss is at {_stop_name(worst, steps).split(' =')[0]}"
           f", {_gap_text(gap)}" + (
               f" (the goal's {100 * GOAL:g}% missed by "
               f"{100 * (gap - GOAL):.1f} points)" if gap < 10 else "")
           if gap is not None else
           "; ScheduleFree+ did not give a finite loss there"))
  lines.append(verdict + ".")
  beats = anchor_wins(report, anchor)
  if beats is not None:
    lines.append(f"\nAgainst the torch anchor, ScheduleFree+'s test loss is "
                 f"lower at {sum(beats.values())} of {len(beats)} stops"
                 + (" (" + ", ".join(
                     _stop_name(h, steps).split(" =")[0]
                     for h, won in beats.items() if won) + ")"
                    if any(beats.values()) else "") + ".")
  sources = [f"`{report['optimizers'][UNTUNED].get('command', report['command'])}`"]
  if anchor is not None:
    sources.append(f"`{anchor['command']}`")
  defaults = report["schedule_free_settings"].get(UNTUNED, {})
  shown = ", ".join(f"{k}={v}" for k, v in defaults.items()
                    if k not in ("mask", "state_dtype", "rounding", "seed"))
  lines.append(f"\nScheduleFree+ ran as `optfree.schedule_free_plus()`"
               + (f" ({shown})" if shown else "") + "; produced by "
               + " and ".join(sources) + ".\n")
  return "\n".join(lines)


def anchor_wins(report: dict[str, Any],
                anchor: dict[str, Any] | None) -> dict[int, bool] | None:
  """Per stop: ScheduleFree+'s mean test loss below the torch anchor's."""
  if anchor is None or UNTUNED not in report["optimizers"]:
    return None
  ours = report["optimizers"][UNTUNED]["at_horizon"]
  return {int(h): bool(ours[h]["test_loss_mean"]
                       < anchor["at_horizon"][h]["test_loss_mean"])
          for h in sorted(ours, key=int) if h in anchor["at_horizon"]}


def readme_summary(reports: dict, anchors: dict) -> str:
  """The README's sentence: per task and stop, ScheduleFree+ against cosine."""
  parts = []
  total = met = 0
  beaten = compared = 0
  for task, report in reports.items():
    if report is None or UNTUNED not in report["optimizers"]:
      parts.append(f"{task}: pending")
      continue
    wins = anchor_wins(report, anchors.get(task))
    if wins is not None:
      beaten += sum(wins.values())
      compared += len(wins)
    steps = report["config"]["steps"]
    rows = report["untuned_goal"]["rows"]
    total += len(rows)
    met += sum(row["within_goal"] for row in rows)
    gaps = ", ".join(
        f"{_gap_text(row['relative_gap'])} at "
        f"{_stop_name(row['steps'], steps).split(' =')[0]}" for row in rows)
    parts.append(f"{task} {gaps}")
  if not total:
    return ("ScheduleFree+ at its defaults against AdamW + cosine tuned for "
            "each stopping time: pending (`benchmarks/quality.py`, "
            "[one untuned run](docs/guides/quality.md#one-untuned-run)).")
  return ("ScheduleFree+ with no arguments, one run and no tuning at all, "
          "against AdamW + cosine tuned for each stopping time (test loss, "
          f"`benchmarks/quality.py`, {LONG}T the longest stop; "
          "[one untuned run](docs/guides/quality.md#one-untuned-run)): "
          + "; ".join(parts) + f". The goal, within {100 * GOAL:g}%, is met at "
          f"{met} of {total} stops." + (
              f" It beats the PyTorch anchor, {ANCHOR_LABEL}, at {beaten} of "
              f"{compared} stops." if compared else ""))


def docs_blocks(results_dir: pathlib.Path) -> dict[str, str]:
  """What goes between ``BEGIN`` and ``END`` in each of ``DOC_FILES``."""
  reports, anchors = load_results(results_dir)
  docs = "\n".join(untuned_section(task, reports[task], anchors[task])
                   for task in TASK_BUILDERS)
  return {"docs": docs, "readme": readme_summary(reports, anchors)}


def block_in(text: str) -> str:
  """The generated block of a file's text (between ``BEGIN`` and ``END``)."""
  match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text,
                    re.S)
  if match is None:
    raise ValueError("no generated block (BEGIN ... END markers)")
  return match.group(1)


def with_block(text: str, block: str) -> str:
  block_in(text)  # the markers must be there
  return re.sub(re.escape(BEGIN) + r"\n.*?\n" + re.escape(END),
                lambda _: f"{BEGIN}\n{block}\n{END}", text, flags=re.S)


def write_docs(results_dir: pathlib.Path,
               files: dict[str, pathlib.Path] | None = None) -> None:
  files = DOC_FILES if files is None else files
  for key, block in docs_blocks(results_dir).items():
    path = files[key]
    path.write_text(with_block(path.read_text(), block))
    print(f"wrote the generated block of {path}")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny models, few steps, one lr, one seed")
  parser.add_argument("--tasks", default="mnist1d,charlm")
  parser.add_argument("--optimizers", default=None,
                      help=f"default all: {','.join(OPTIMIZERS)}; with "
                           f"--quick {','.join(QUICK_OPTIMIZERS)}")
  parser.add_argument("--only", default=None,
                      help="run only these optimizers and merge them into "
                           "the JSON already in --out-dir (same protocol)")
  parser.add_argument("--seeds", type=int, default=None,
                      help="number of seeds (default 3, or 1 with --quick)")
  parser.add_argument("--steps", type=int, default=None,
                      help="override the training steps T of every task")
  parser.add_argument("--eval-every", type=int, default=None)
  parser.add_argument("--replot", action="store_true",
                      help="only redraw the plots and tables from the JSON "
                           "files already in --out-dir")
  parser.add_argument("--docs", action="store_true",
                      help="only rewrite the generated ScheduleFree+ blocks "
                           "of docs/guides/quality.md and README.md from the "
                           "JSON files in --out-dir")
  parser.add_argument("--out-dir", default=None,
                      help="default benchmarks/results, or a temporary "
                           "folder with --quick")
  return parser


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  parser = build_parser()
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  if args.only is not None and args.optimizers is not None:
    parser.error("give --optimizers or --only, not both")
  chosen = args.only or args.optimizers
  optimizers = (chosen.split(",") if chosen else
                QUICK_OPTIMIZERS if args.quick else OPTIMIZERS)
  optimizers = [o for o in optimizers if o]
  for value, known, what in ((tasks, TASK_BUILDERS, "tasks"),
                             (optimizers, OPTIMIZERS, "optimizers")):
    unknown = [v for v in value if v not in known]
    if unknown or not value:
      parser.error(f"unknown {what} {unknown}; choose among {list(known)}")
  seeds = list(range(args.seeds or (1 if args.quick else 3)))
  settings = QUICK if args.quick else FULL
  if args.out_dir is not None:
    out_dir = pathlib.Path(args.out_dir)
  elif args.quick:
    out_dir = pathlib.Path(tempfile.gettempdir()) / "optfree-quality-quick"
  else:
    out_dir = ROOT / "benchmarks" / "results"
  out_dir.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  progress = lambda message: print(
      f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)
  reports = {}
  if args.docs:
    write_docs(out_dir)
    return reports
  if args.replot:
    for name in tasks:
      reports[name] = json.loads(
          (out_dir / f"quality-{name}.json").read_text())
      plot(reports[name], out_dir)
      print(format_summary(reports[name]))
    return reports
  existing = {}
  if args.only is not None:
    for name in tasks:
      path = out_dir / f"quality-{name}.json"
      if not path.exists():
        parser.error(f"--only merges into {path}, which does not exist")
      existing[name] = json.loads(path.read_text())
  command = " ".join(["python", "benchmarks/quality.py",
                      *(argv if argv is not None else sys.argv[1:])])
  task_settings = {}
  for name in tasks:
    task_settings[name] = dict(settings[name])
    if args.steps is not None:
      task_settings[name]["steps"] = args.steps
    if args.eval_every is not None:
      task_settings[name]["eval_every"] = args.eval_every
  built = {}
  for name in existing:
    # Before any training: a merge needs the protocol of the existing JSON.
    built[name] = TASK_BUILDERS[name](**task_settings[name]["model"])
    ours = protocol(built[name], task_settings[name], seeds, args.quick)
    for key in PROTOCOL_KEYS:
      if existing[name].get(key) != ours[key]:
        parser.error(
            f"--only: {name}'s JSON has {key} {existing[name].get(key)!r}, "
            f"this run would have {ours[key]!r}: another protocol, so rerun "
            "every optimizer (without --only) instead of merging")
  for name in tasks:
    report = run_task(name, task_settings[name], optimizers, seeds,
                      args.quick, progress, built.get(name))
    report["command"] = command
    for entry in report["optimizers"].values():
      entry["command"] = command
    for runs in report["horizon_runs"].values():
      for entry in runs.values():
        entry["command"] = command
    report["commands"] = [{
        "command": command, "optimizers": list(optimizers),
        "wall_s": report["wall_s"], "versions": report["versions"],
        "date": datetime.date.today().isoformat()}]
    if name in existing:
      try:
        report = merge(existing[name], report, optimizers)
      except ValueError as error:
        parser.error(str(error))
      ours = report["commands"][-1]["versions"]
      for earlier in report["commands"][:-1]:
        differ = sorted(key for key in set(ours) & set(earlier["versions"])
                        if ours[key] != earlier["versions"][key])
        if differ:
          print(f"note: {name}'s JSON now holds runs of other {differ} "
                f"versions ({earlier['command']}: {earlier['versions']})",
                flush=True)
    path = out_dir / f"quality-{name}.json"
    path.write_text(json.dumps(report, indent=1))
    written = [path, *plot(report, out_dir)]
    print(format_summary(report))
    print("wrote " + ", ".join(str(p) for p in written), flush=True)
    reports[name] = report
  progress("done")
  return reports


if __name__ == "__main__":
  main()
