"""Draws the gallery of every schedule: ``python -m optfree.schedules [PATH]``.

Writes PATH (default ``schedules.png`` in the current directory; the README's
figure is ``python -m optfree.schedules docs/schedules.png`` run from the
repository). Needs matplotlib.
"""

import argparse
import pathlib
import sys
from typing import Sequence

from optfree import schedules as S


def gallery(path: str = "schedules.png") -> None:
  """Plots each schedule with a few of its options into one PNG at ``path``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  panels = [
      ("step / multistep", 100, {
          "step(30, 0.5)": S.step_schedule(0.1, 30, 0.5),
          "multistep([40, 70], 0.3)": S.multistep_schedule(0.1, [40, 70], 0.3)}),
      ("exponential", 100, {"gamma=0.97": S.exponential_schedule(0.1, 0.97)}),
      ("constant_factor / linear_factor", 60, {
          "constant(1/3, 20)": S.constant_factor_schedule(0.1, 1 / 3, 20),
          "linear(1/3 -> 1, 30)": S.linear_factor_schedule(0.1, 1 / 3, 1.0, 30)}),
      ("polynomial_decay (80)", 100, {
          f"power={p}": S.polynomial_decay_schedule(0.1, 80, p)
          for p in (0.5, 1.0, 2.0)}),
      ("cosine_annealing (t_max=40, past it)", 120, {
          "eta_min=0.01": S.cosine_annealing_schedule(0.1, 40, 0.01)}),
      ("cosine_warm_restarts", 160, {
          "t_0=20": S.cosine_warm_restarts_schedule(0.1, 20),
          "t_0=5, t_mult=2": S.cosine_warm_restarts_schedule(0.1, 5, 2)}),
      ("cyclic (step_size_up=15)", 120, {
          mode: S.cyclic_schedule(0.01, 0.1, 15, mode=mode, gamma=0.99)
          for mode in ("triangular", "triangular2", "exp_range")}),
      ("cyclic_momentum", 120, {
          mode: S.cyclic_momentum_schedule(0.8, 0.9, 15, mode=mode, gamma=0.99)
          for mode in ("triangular", "triangular2", "exp_range")}),
      ("onecycle (100)", 100, {
          "cos": S.onecycle_schedule(0.1, 100),
          "linear": S.onecycle_schedule(0.1, 100, anneal_strategy="linear"),
          "cos, three_phase": S.onecycle_schedule(0.1, 100, three_phase=True)}),
      ("onecycle_momentum (100)", 100, {
          "cos": S.onecycle_momentum_schedule(100),
          "cos, three_phase": S.onecycle_momentum_schedule(100, three_phase=True)}),
      ("trapezoidal", 100, {
          "step_size=20, anneal_start=60": S.trapezoidal_schedule(0.01, 0.1, 20, 60)}),
      ("warmup_stable_decay (100)", 110, {
          shape: S.warmup_stable_decay_schedule(
              0.1, 100, warmup_steps=10, decay_steps=30, decay_shape=shape)
          for shape in ("linear", "cosine", "1-sqrt")}),
      ("sequential (linear warmup, cosine)", 100, {
          "milestones=[10]": S.sequential_schedule(
              [S.linear_factor_schedule(0.1, 0.1, 1.0, 10),
               S.cosine_annealing_schedule(0.1, 90)], [10])}),
      ("per_epoch (step per epoch of 10)", 100, {
          "step(2, 0.7) per epoch": S.per_epoch(S.step_schedule(0.1, 2, 0.7), 10)}),
  ]
  columns = 3
  rows = -(-len(panels) // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows))
  for ax, (title, steps, curves) in zip(axes.flat, panels):
    S.plot(curves, steps, ax=ax, title=title)
    ax.legend(fontsize="small")
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  figure.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=72)
  plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
  """Parses the command line and draws the gallery; returns the exit status."""
  parser = argparse.ArgumentParser(
      prog="python -m optfree.schedules",
      description=("Draws every optfree schedule with a few of its options"
                   " into one PNG (needs matplotlib)."))
  parser.add_argument("path", nargs="?", default="schedules.png",
                      help="the PNG to write (default: %(default)s, in the"
                           " current directory)")
  args = parser.parse_args(argv)
  gallery(args.path)
  print(f"wrote {args.path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
