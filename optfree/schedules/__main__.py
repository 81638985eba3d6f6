"""Draws schedules: ``python -m optfree.schedules [NAME ...] [-o PATH]``.

Each named schedule (all of them by default) is drawn with a few of its
options, one panel each, into one PNG. ``python -m optfree.schedules onecycle
cyclic`` writes ``onecycle-cyclic.png``; without names the file is
``schedules.png``; ``-o PATH`` (or a last argument ending in ``.png``) names it.
The path written is printed. ``--list`` prints the names. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any, Callable, Sequence

from optfree import schedules as S

# Suffixes that matplotlib writes and that mark an argument as the output.
_IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _panels() -> dict[str, tuple[str, int, dict[str, Callable[..., Any]]]]:
  """Name -> (title, steps, {label: schedule}), one panel per schedule."""
  return {
      "step": ("step (step_size=30, gamma=0.5)", 100, {
          "": S.step_schedule(0.1, 30, 0.5)}),
      "multistep": ("multistep ([40, 70], gamma=0.3)", 100, {
          "": S.multistep_schedule(0.1, [40, 70], 0.3)}),
      "exponential": ("exponential", 100, {
          "gamma=0.97": S.exponential_schedule(0.1, 0.97)}),
      "constant_factor": ("constant_factor (1/3 for 20 steps)", 60, {
          "": S.constant_factor_schedule(0.1, 1 / 3, 20)}),
      "linear_factor": ("linear_factor (1/3 -> 1 over 30)", 60, {
          "": S.linear_factor_schedule(0.1, 1 / 3, 1.0, 30)}),
      "polynomial_decay": ("polynomial_decay (80)", 100, {
          f"power={p}": S.polynomial_decay_schedule(0.1, 80, p)
          for p in (0.5, 1.0, 2.0)}),
      "cosine_annealing": ("cosine_annealing (t_max=40, past it)", 120, {
          "eta_min=0.01": S.cosine_annealing_schedule(0.1, 40, 0.01)}),
      "cosine_warm_restarts": ("cosine_warm_restarts", 160, {
          "t_0=20": S.cosine_warm_restarts_schedule(0.1, 20),
          "t_0=5, t_mult=2": S.cosine_warm_restarts_schedule(0.1, 5, 2)}),
      "cyclic": ("cyclic (step_size_up=15)", 120, {
          mode: S.cyclic_schedule(0.01, 0.1, 15, mode=mode, gamma=0.99)
          for mode in ("triangular", "triangular2", "exp_range")}),
      "cyclic_momentum": ("cyclic_momentum", 120, {
          mode: S.cyclic_momentum_schedule(0.8, 0.9, 15, mode=mode, gamma=0.99)
          for mode in ("triangular", "triangular2", "exp_range")}),
      "onecycle": ("onecycle (100)", 100, {
          "cos": S.onecycle_schedule(0.1, 100),
          "linear": S.onecycle_schedule(0.1, 100, anneal_strategy="linear"),
          "cos, three_phase": S.onecycle_schedule(0.1, 100, three_phase=True)}),
      "onecycle_momentum": ("onecycle_momentum (100)", 100, {
          "cos": S.onecycle_momentum_schedule(100),
          "cos, three_phase": S.onecycle_momentum_schedule(
              100, three_phase=True)}),
      "trapezoidal": ("trapezoidal", 100, {
          "step_size=20, anneal_start=60": S.trapezoidal_schedule(
              0.01, 0.1, 20, 60)}),
      "warmup_stable_decay": ("warmup_stable_decay (100)", 110, {
          shape: S.warmup_stable_decay_schedule(
              0.1, 100, warmup_steps=10, decay_steps=30, decay_shape=shape)
          for shape in ("linear", "cosine", "1-sqrt")}),
      "sequential": ("sequential (linear warmup, cosine)", 100, {
          "milestones=[10]": S.sequential_schedule(
              [S.linear_factor_schedule(0.1, 0.1, 1.0, 10),
               S.cosine_annealing_schedule(0.1, 90)], [10])}),
      "per_epoch": ("per_epoch (step per epoch of 10)", 100, {
          "step(2, 0.7) per epoch": S.per_epoch(
              S.step_schedule(0.1, 2, 0.7), 10)}),
  }


NAMES = tuple(_panels())


def canonical_name(name: str) -> str | None:
  """``onecycle`` for ``onecycle``, ``onecycle_schedule`` or ``one-cycle``."""
  key = name.strip().lower().replace("-", "_")
  key = key.removeprefix("optfree.").removeprefix("schedules.")
  key = key.removesuffix("_schedule")
  candidates = {n.replace("_", ""): n for n in NAMES}
  candidates["wsd"] = "warmup_stable_decay"
  return candidates.get(key.replace("_", ""))


def gallery(path: str = "schedules.png",
            names: Sequence[str] | None = None) -> pathlib.Path:
  """Plots the named schedules (default: all) into one PNG at ``path``.

  Returns:
    The path written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  every = _panels()
  panels = [every[name] for name in (names or NAMES)]
  columns = min(3, len(panels))
  rows = -(-len(panels) // columns)
  figure, axes = plt.subplots(rows, columns, squeeze=False,
                              figsize=(5 * columns, 3.2 * rows))
  for ax, (title, steps, curves) in zip(axes.flat, panels):
    if all(curves):  # labelled curves, with a legend
      S.plot(curves, steps, ax=ax, title=title)
      ax.legend(fontsize="small")
    else:
      S.plot(list(curves.values()), steps, ax=ax, title=title)
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  figure.tight_layout()
  written = pathlib.Path(path)
  written.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(written, dpi=72)
  plt.close(figure)
  return written


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m optfree.schedules",
      description=("Draws optfree's schedules, each with a few of its"
                   " options, one panel each, into one PNG (needs"
                   " matplotlib), and prints the path written."),
      epilog="names: " + ", ".join(NAMES) + " (the _schedule suffix may be"
             " given too)")
  parser.add_argument(
      "names", nargs="*", metavar="NAME",
      help=("schedules to draw (default: all). A last argument ending in"
            " .png (or .pdf, .svg) is taken as the output path"))
  parser.add_argument(
      "-o", "--out", metavar="PATH",
      help=("the file to write (default: NAME-NAME.png for the schedules"
            " named, schedules.png for all, in the current directory)"))
  parser.add_argument("--list", action="store_true",
                      help="print the schedules' names and exit")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Parses the command line and draws; returns the exit status."""
  parser = build_parser()
  # Names and -o in any order (`onecycle -o a.png cyclic`).
  args = parser.parse_intermixed_args(argv)
  if args.list:
    print("\n".join(NAMES))
    return 0
  names, paths = [], []
  for argument in args.names:
    if pathlib.Path(argument).suffix.lower() in _IMAGE_SUFFIXES:
      paths.append(argument)
      continue
    name = canonical_name(argument)
    if name is None:
      parser.error(
          f"unknown schedule {argument!r}; choose from: {', '.join(NAMES)}"
          " (to name the output file, use -o PATH or a name ending in"
          " .png)")
    if name not in names:
      names.append(name)
  if args.out is not None:
    paths.append(args.out)
  if len(paths) > 1:
    parser.error(f"one output path, got {', '.join(map(repr, paths))}")
  if paths:
    path = pathlib.Path(paths[0])
    if not path.suffix:
      path = path.with_suffix(".png")
  else:
    path = pathlib.Path("-".join(names) + ".png" if names else "schedules.png")
  written = gallery(str(path), names)
  print(f"wrote {written.resolve()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
