"""The README's quickstart runs as written and does what it says."""

import pathlib
import re

import jax
import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _quickstart_source() -> str:
  text = README.read_text()
  section = text.split("## Quickstart", 1)[1]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_command():
  text = README.read_text()
  commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)
  assert len(commands) == 2
  assert commands[0].endswith("python -m optfree demo")
  ci = (README.parent / ".ci" / "run").read_text()
  assert commands[1] in ci.splitlines()


def test_quickstart_trains_and_gives_an_evaluation_point(capsys):
  namespace = {}
  exec(compile(_quickstart_source(), str(README), "exec"), namespace)
  printed = capsys.readouterr().out
  loss_y, loss_x = map(float, re.findall(r"\d+\.\d+", printed))
  # The target's variance is about 0.5; the model must have learned it, and
  # x must be a real average, close to but not equal to y.
  assert loss_x < 0.25 and loss_y < 0.25
  flat = lambda tree: np.concatenate([np.ravel(l) for l in jax.tree.leaves(tree)])
  assert not np.array_equal(flat(namespace["x"]), flat(namespace["params"]))
