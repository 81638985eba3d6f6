"""Command line: ``python -m optfree demo [options]``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m optfree",
      description="optfree's command line.",
      epilog="python -m optfree demo --help lists the demo's options.")
  parser.add_argument(
      "command", nargs="?", choices=["demo"],
      help=("demo: train a small CNN on MNIST-1D with several optimizers,"
            " print a table and write a plot and a JSON (into the current"
            " directory unless --out says otherwise)"))
  parser.add_argument("options", nargs=argparse.REMAINDER,
                      help="the command's options")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs a command; returns the exit status."""
  parser = build_parser()
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.command is None:
    parser.print_help()
    return 0
  from optfree import demo  # pylint: disable=import-outside-toplevel
  demo.main(args.options)
  return 0


if __name__ == "__main__":
  sys.exit(main())
