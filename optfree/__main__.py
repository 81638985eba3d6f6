"""Command line: ``python -m optfree demo [options]``."""

from __future__ import annotations

import sys
from typing import Sequence

USAGE = """usage: python -m optfree <command> [options]

commands:
  demo    train a small CNN on MNIST-1D with several optimizers, print a
          table and write a plot (python -m optfree demo --help for options)
"""


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] != "demo":
    print(USAGE, end="", file=sys.stderr if argv else sys.stdout)
    return 0 if not argv or argv[0] in ("-h", "--help") else 2
  from optfree import demo  # pylint: disable=import-outside-toplevel
  demo.main(argv[1:])
  return 0


if __name__ == "__main__":
  sys.exit(main())
