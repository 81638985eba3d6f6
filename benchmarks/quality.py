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
2. Seeds: the best learning rate with every seed (vmapped together); the test
   curves (loss, accuracy) are averaged over seeds. Seed 0 repeats a grid run,
   which checks that training is deterministic.
Schedule-Free AdamW runs with the settings that
benchmarks/schedule_free_study.py recommends
(``_demo_models.SF_ADAMW_SETTINGS``: b1=0.9, r=1, 5% warmup); the JSON
records them under
``schedule_free_settings`` and in each optimizer's label.
Horizons: AdamW + warmup-cosine and SGD + warmup-cosine are tuned and run
separately for T/4, T/2 and T steps (each knows its stopping time). The
Schedule-Free runs are single runs of T steps whose learning rate was chosen
at T, evaluated at ``optfree.eval_params`` when they pass T/4, T/2 and T.

Writes benchmarks/results/quality-<task>.json, quality-<task>.png (curves) and
quality-<task>-horizons.png, and prints summary tables.

  python benchmarks/quality.py            # the full run (see FULL below)
  python benchmarks/quality.py --quick    # a smoke run, under 2 minutes
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from optfree import _demo_models  # pylint: disable=wrong-import-position

OPTIMIZERS = tuple(_demo_models.OPTIMIZERS)
# --quick compiles fewer programs: one per optimizer and horizon dominates.
QUICK_OPTIMIZERS = ("adamw_cosine", "sf_adamw", "lion", "adabound")
# Learning rates: a half-decade ladder (1, 3, 10, 30, ...). Grids are runs
# of it, widened along it while the best value sits at an edge.
LADDER = tuple(m * 10.0**e for e in range(-5, 3) for m in (1, 3))
MAX_WIDENINGS = 2
# Tuned per horizon (they know their stopping time), and the Schedule-Free
# optimizer each is compared with.
HORIZON_BASELINES = {"adamw_cosine": "sf_adamw", "sgd_cosine": "sf_sgd"}

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


def neighbour(lr: float, direction: int) -> float | None:
  """The value ``direction`` places from ``lr`` on ``LADDER`` (None past it)."""
  index = min(range(len(LADDER)), key=lambda i: abs(math.log(LADDER[i] / lr)))
  index += direction
  return LADDER[index] if 0 <= index < len(LADDER) else None


def tune(task, spec, grid, seeds, steps, eval_every,
         max_widenings: int = 0) -> dict[str, Any]:
  """The grid on seed 0, then the best learning rate on every seed.

  While the best learning rate (lowest validation loss at the end) is the
  grid's smallest or largest, as many values as the grid had, past it on
  ``LADDER``, are run, at most ``max_widenings`` times. Every seed-0 batch is
  then as wide as the first, so it is one compiled program, and the seed-0
  run of the seed phase repeats it bit for bit when there are as many seeds
  as learning rates in the grid.
  """
  horizons = _horizons(steps)
  final = {}
  batch = list(grid)
  width = len(batch)
  for widening in range(max_widenings + 1):
    points = train(task, spec, batch, [seeds[0]] * len(batch), steps,
                   set(horizons))[steps]
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
  record = set(range(eval_every, steps + 1, eval_every)) | set(horizons)
  seed_points = train(task, spec, [best_lr] * len(seeds), seeds, steps,
                      record)
  # Bitwise equal when both vmaps have the same width (one compiled program).
  repeat_identical = bool(np.array_equal(seed_points[steps]["test_loss"][0],
                                         final[best_lr]["test_loss"]))
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
    at_horizon[str(h)] = entry
  return {
      "label": spec.label,
      "schedule_free": spec.schedule_free,
      "steps": steps,
      "lr_grid": list(grid),
      "grid_seed0": {f"{lr:g}": final[lr] for lr in grid},
      "best_lr": best_lr,
      "best_lr_at_grid_edge": best in (0, len(grid) - 1),
      "seeds": list(seeds),
      "seed0_repeat_identical": repeat_identical,
      "curve": curve,
      "at_horizon": at_horizon,
      "final": at_horizon[str(steps)],
  }


def run_task(name: str, settings: dict[str, Any], optimizers: Sequence[str],
             seeds: Sequence[int], quick: bool, progress) -> dict[str, Any]:
  task = TASK_BUILDERS[name](**settings["model"])
  steps, eval_every = settings["steps"], settings["eval_every"]
  params = jax.eval_shape(task.model.init, jax.random.PRNGKey(0),
                          task.data.x_test[:1])
  num_params = sum(leaf.size for leaf in jax.tree.leaves(params))
  start = time.perf_counter()
  results = {}
  widenings = 0 if quick else MAX_WIDENINGS
  for opt in optimizers:
    spec = _demo_models.OPTIMIZERS[opt]
    grid = (spec.learning_rate,) if quick else spec.lr_grid
    progress(f"{name}: {opt}")
    results[opt] = tune(task, spec, grid, seeds, steps, eval_every, widenings)
    results[opt].update(_demo_models.state_size(spec, params))
  horizon_runs = {}
  for baseline in HORIZON_BASELINES:
    if baseline not in optimizers:
      continue
    spec = _demo_models.OPTIMIZERS[baseline]
    grid = (spec.learning_rate,) if quick else spec.lr_grid
    horizon_runs[baseline] = {str(steps): results[baseline]}
    for h in _horizons(steps)[:-1]:
      progress(f"{name}: {baseline} tuned for {h} steps")
      horizon_runs[baseline][str(h)] = tune(task, spec, grid, seeds, h,
                                            eval_every, widenings)
  return {
      "task": name,
      "description": task.data.description,
      "num_params": int(num_params),
      "config": {"steps": steps, "eval_every": eval_every,
                 "seeds": list(seeds), "quick": quick, **settings["model"]},
      "schedule_free_settings": {
          "sf_adamw": _demo_models.SF_ADAMW_SETTINGS,
          "sf_sgd": _demo_models.SF_SGD_SETTINGS},
      "optimizers": results,
      "horizon_runs": horizon_runs,
      "horizons": horizon_table(results, horizon_runs, steps),
      "wall_s": time.perf_counter() - start,
      "versions": {"python": platform.python_version(),
                   "jax": jax.__version__,
                   "optax": __import__("optax").__version__,
                   "flax": __import__("flax").__version__},
  }


def horizon_table(results, horizon_runs, steps) -> list[dict[str, Any]]:
  """Test loss at T/4, T/2, T: cosine tuned for each vs one Schedule-Free run."""
  rows = []
  for h in _horizons(steps):
    row = {"steps": h}
    for baseline, runs_by_horizon in horizon_runs.items():
      tuned = runs_by_horizon[str(h)]
      row[baseline] = {"best_lr": tuned["best_lr"], **tuned["final"]}
      schedule_free = HORIZON_BASELINES[baseline]
      if schedule_free in results:
        row[schedule_free] = {"best_lr": results[schedule_free]["best_lr"],
                              **results[schedule_free]["at_horizon"][str(h)]}
    rows.append(row)
  return rows


def _pm(entry: dict[str, Any], metric: str, digits: int = 3) -> str:
  return (f"{entry[metric + '_mean']:.{digits}f}"
          f"±{entry[metric + '_std']:.{digits}f}")


def format_summary(report: dict[str, Any]) -> str:
  steps = report["config"]["steps"]
  quarter = str(steps // 4)
  header = ("optimizer", "best lr", f"loss@{quarter}", f"loss@{steps}",
            f"acc@{steps}", "state/params")
  rows = [header]
  for name, r in report["optimizers"].items():
    lr = f"{r['best_lr']:g}" + ("*" if r["best_lr_at_grid_edge"] else "")
    rows.append((name, lr, _pm(r["at_horizon"][quarter], "test_loss"),
                 _pm(r["final"], "test_loss"), _pm(r["final"], "test_accuracy"),
                 f"{r['state_per_param_bytes']:.2f}"))
  lines = [f"{report['task']}: {report['description']}",
           f"({report['num_params']} params; test mean±std over seeds "
           f"{report['config']['seeds']}; * = best lr at the grid's edge)"]
  lines += _columns(rows)
  if report["horizons"]:
    columns = [key for key in report["horizons"][0] if key != "steps"]
    rows = [("stop at",) + tuple(f"{c} loss (lr)" for c in columns)]
    for row in report["horizons"]:
      rows.append((str(row["steps"]),) + tuple(
          f"{_pm(row[c], 'test_loss')} ({row[c]['best_lr']:g})"
          for c in columns))
    lines.append("test loss when stopping at T/4, T/2, T (cosine: tuned and "
                 "run for that stop; Schedule-Free: one run)")
    lines += _columns(rows)
  return "\n".join(lines)


def _columns(rows) -> list[str]:
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths)))
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  return lines


def plot(report: dict[str, Any], out_dir: pathlib.Path) -> list[pathlib.Path]:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  name = report["task"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for opt, r in report["optimizers"].items():
    c = r["curve"]
    for ax, metric in zip(axes, ("test_loss", "test_accuracy")):
      mean = np.asarray(c[f"{metric}_mean"])
      std = np.asarray(c[f"{metric}_std"])
      line, = ax.plot(c["step"], mean, label=f"{opt} (lr {r['best_lr']:g})")
      ax.fill_between(c["step"], mean - std, mean + std, alpha=0.15,
                      color=line.get_color())
  axes[0].set_ylabel("test loss")
  axes[1].set_ylabel("test accuracy")
  finals = [r["final"]["test_loss_mean"]
            for r in report["optimizers"].values()]
  # Early losses dwarf the differences at the end; diverged runs are cut off.
  axes[0].set_ylim(top=np.nanmedian(finals) * 1.5)
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=7)
  fig.suptitle(f"{name}: {report['description']}", fontsize=8)
  fig.tight_layout()
  curves = out_dir / f"quality-{name}.png"
  fig.savefig(curves, dpi=110)
  plt.close(fig)
  paths = [curves]

  if report["horizon_runs"]:
    fig, axes = plt.subplots(1, len(report["horizon_runs"]),
                             figsize=(6 * len(report["horizon_runs"]), 4.5),
                             squeeze=False)
    for ax, (baseline, by_horizon) in zip(axes[0],
                                          report["horizon_runs"].items()):
      for h, r in sorted(by_horizon.items(), key=lambda kv: int(kv[0])):
        line, = ax.plot(r["curve"]["step"], r["curve"]["test_loss_mean"],
                        "--",
                        label=f"{baseline} for {h} steps (lr {r['best_lr']:g})")
        ax.plot(int(h), r["final"]["test_loss_mean"], "o",
                color=line.get_color())
      schedule_free = HORIZON_BASELINES[baseline]
      if schedule_free in report["optimizers"]:
        r = report["optimizers"][schedule_free]
        ax.plot(r["curve"]["step"], r["curve"]["test_loss_mean"], "k-",
                label=f"{schedule_free}, one run (lr {r['best_lr']:g})")
        stops = sorted(by_horizon, key=int)
        ax.plot([int(h) for h in stops],
                [r["at_horizon"][h]["test_loss_mean"] for h in stops], "ko")
      stops = [row[key]["test_loss_mean"] for row in report["horizons"]
               for key in (baseline, schedule_free) if key in row]
      ax.set_ylim(top=max(stops) * 1.25)
      ax.set_xlabel("step")
      ax.set_ylabel("test loss (mean over seeds)")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
    fig.suptitle(f"{name}: Schedule-Free vs cosine tuned for each stopping "
                 "time", fontsize=9)
    fig.tight_layout()
    horizons = out_dir / f"quality-{name}-horizons.png"
    fig.savefig(horizons, dpi=110)
    plt.close(fig)
    paths.append(horizons)
  return paths


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny models, few steps, one lr, one seed")
  parser.add_argument("--tasks", default="mnist1d,charlm")
  parser.add_argument("--optimizers", default=None,
                      help=f"default all: {','.join(OPTIMIZERS)}; with "
                           f"--quick {','.join(QUICK_OPTIMIZERS)}")
  parser.add_argument("--seeds", type=int, default=None,
                      help="number of seeds (default 3, or 1 with --quick)")
  parser.add_argument("--steps", type=int, default=None,
                      help="override the training steps T of every task")
  parser.add_argument("--eval-every", type=int, default=None)
  parser.add_argument("--replot", action="store_true",
                      help="only redraw the plots and tables from the JSON "
                           "files already in --out-dir")
  parser.add_argument("--out-dir", default=None,
                      help="default benchmarks/results, or a temporary "
                           "folder with --quick")
  return parser


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  parser = build_parser()
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  optimizers = (args.optimizers.split(",") if args.optimizers else
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
  if args.replot:
    for name in tasks:
      reports[name] = json.loads(
          (out_dir / f"quality-{name}.json").read_text())
      plot(reports[name], out_dir)
      print(format_summary(reports[name]))
    return reports
  for name in tasks:
    task_settings = dict(settings[name])
    if args.steps is not None:
      task_settings["steps"] = args.steps
    if args.eval_every is not None:
      task_settings["eval_every"] = args.eval_every
    report = run_task(name, task_settings, optimizers, seeds, args.quick,
                      progress)
    report["command"] = " ".join(["python", "benchmarks/quality.py",
                                  *(argv if argv is not None
                                    else sys.argv[1:])])
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
