"""The main job: train a small CNN on MNIST-1D with several optimizers.

``python -m optfree demo`` generates MNIST-1D offline, trains the MNIST-1D
paper's small CNN once per optimizer with a progress bar, prints a table
(final test accuracy and loss, training steps per second, optimizer-state
size) and writes a plot of test accuracy against steps with a JSON of the same
numbers next to it, by default into the current directory (``--out``). Given
``--seed``, the numbers other than the timings are bit-identical from run to
run on one machine; on another CPU their last digits may differ (XLA's CPU
kernels round differently). Needs the ``examples`` extra (flax, matplotlib,
mnist1d, tqdm).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any, Sequence

# sf_plus is ScheduleFree+ at its defaults: no learning rate, no tuning.
DEFAULT_OPTIMIZERS = ("adamw_cosine", "sf_adamw", "lion", "adabound",
                      "onecycle", "sf_plus")


def build_parser() -> argparse.ArgumentParser:
  from optfree import _demo_models  # pylint: disable=import-outside-toplevel

  parser = argparse.ArgumentParser(
      prog="python -m optfree demo",
      description="Train a small CNN on MNIST-1D with several optimizers.")
  parser.add_argument("--steps", type=int, default=1500,
                      help="training steps per optimizer (default 1500)")
  parser.add_argument(
      "--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
      help=("comma-separated names among "
            f"{', '.join(_demo_models.OPTIMIZERS)} (default %(default)s)"))
  parser.add_argument("--out", default="optfree-demo.png",
                      help=("the plot (default: %(default)s, in the current"
                            " directory); the JSON goes next to it (.json)"))
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of initialization and batch order")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--num-samples", type=int, default=10000,
                      help="MNIST-1D samples to generate (70%% train, 10%% "
                           "validation, 20%% test)")
  parser.add_argument("--eval-every", type=int, default=100,
                      help="steps between evaluations on the test set")
  parser.add_argument("--no-progress", action="store_true",
                      help="hide the progress bar")
  return parser


def is_tuned(spec) -> bool:
  """Whether the optimizer has a learning rate chosen for it (a grid of one
  value is an untuned optimizer's, run as it comes)."""
  return len(spec.lr_grid) > 1


def train_one(task, spec, steps: int, seed: int, eval_every: int,
              progress) -> dict[str, Any]:
  """Trains one run, returning its test curve, final numbers and timings."""
  import jax  # pylint: disable=import-outside-toplevel
  from optfree import _demo_models  # pylint: disable=import-outside-toplevel

  runs = _demo_models.Runs(task, spec, [spec.learning_rate], [seed], steps)
  curve: dict[str, list[float]] = {
      "step": [], "test_loss": [], "test_accuracy": []}
  first_chunk_s = 0.0
  train_s = 0.0
  while runs.step < steps:
    previous = runs.step
    start = time.perf_counter()
    runs.run_chunk(min(eval_every, steps - runs.step))
    jax.block_until_ready(runs.params)
    elapsed = time.perf_counter() - start
    # The first chunk includes compilation; the rate leaves it out.
    if previous == 0:
      first_chunk_s = elapsed
    else:
      train_s += elapsed
    metrics = runs.evaluate()
    curve["step"].append(runs.step)
    curve["test_loss"].append(float(metrics["test_loss"][0]))
    curve["test_accuracy"].append(float(metrics["test_accuracy"][0]))
    progress.update(runs.step - previous)
    progress.set_postfix(acc=f"{curve['test_accuracy'][-1]:.3f}")
  timed_steps = steps - curve["step"][0]
  return {
      "label": spec.label,
      # None: not tuned, nothing passed (ScheduleFree+ at its defaults).
      "learning_rate": spec.learning_rate if is_tuned(spec) else None,
      "final_test_accuracy": curve["test_accuracy"][-1],
      "final_test_loss": curve["test_loss"][-1],
      "steps_per_s": timed_steps / train_s if timed_steps else None,
      "first_chunk_s": first_chunk_s,
      **_demo_models.state_size(spec, jax.tree.map(lambda a: a[0],
                                                   runs.params)),
      "curve": curve,
  }


def _loss_text(loss: float) -> str:
  # A diverged run's loss in a column of the others' width.
  return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.3g}"


def format_table(results: dict[str, dict[str, Any]]) -> str:
  header = ("optimizer", "lr", "test acc", "test loss", "steps/s",
            "state bytes", "state/params")
  rows = [header]
  for name, r in results.items():
    rate = r["steps_per_s"]
    rate_text = ("default" if r["learning_rate"] is None
                 else f"{r['learning_rate']:g}")
    rows.append((name, rate_text,
                 f"{r['final_test_accuracy']:.4f}",
                 _loss_text(r["final_test_loss"]),
                 "-" if rate is None else f"{rate:.0f}",
                 f"{r['state_bytes']}", f"{r['state_per_param_bytes']:.2f}"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths)))
           for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: pathlib.Path,
         title: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, r in results.items():
    ax.plot(r["curve"]["step"], r["curve"]["test_accuracy"],
            label=r["label"] if r["learning_rate"] is None
            else f"{r['label']} (lr {r['learning_rate']:g})")
  ax.set_xlabel("step")
  ax.set_ylabel("test accuracy")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the demo; returns what it wrote to the JSON."""
  parser = build_parser()
  args = parser.parse_args(argv)
  from optfree import _demo_models  # pylint: disable=import-outside-toplevel
  import tqdm  # pylint: disable=import-outside-toplevel

  names = [name.strip() for name in args.optimizers.split(",") if name.strip()]
  unknown = [name for name in names if name not in _demo_models.OPTIMIZERS]
  if unknown or not names:
    parser.error(f"unknown optimizers {unknown}; choose among "
                 f"{', '.join(_demo_models.OPTIMIZERS)}")
  if args.steps < 1:
    parser.error(f"--steps must be positive, got {args.steps}")
  if args.num_samples < 100:
    parser.error(f"--num-samples must be at least 100, got {args.num_samples}")
  if args.eval_every < 1:
    parser.error(f"--eval-every must be positive, got {args.eval_every}")

  task = _demo_models.mnist1d_task(args.num_samples, args.batch_size)
  print(task.data.description)
  results = {}
  with tqdm.tqdm(total=args.steps * len(names), disable=args.no_progress,
                 unit="step") as progress:
    for name in names:
      progress.set_description(name)
      results[name] = train_one(task, _demo_models.OPTIMIZERS[name],
                                args.steps, args.seed, args.eval_every,
                                progress)
  print(format_table(results))

  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  title = f"MNIST-1D CNN, {args.steps} steps of batch {args.batch_size}"
  plot(results, out, title)
  report = {
      "task": task.data.description,
      "config": {key: value for key, value in vars(args).items()
                 if key != "no_progress"},
      "results": results,
  }
  json_path = out.with_suffix(".json")
  json_path.write_text(json.dumps(report, indent=1))
  print(f"wrote {out} and {json_path}")
  return report
