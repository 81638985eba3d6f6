"""The README's quickstart runs as written and does what it says, and its
statements about the test run and the demo are the committed facts."""

import json
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

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


def test_quickstart_needs_only_the_base_install(monkeypatch, capsys):
  """README says the base install is JAX, optax and chex: the quickstart
  runs with Flax (and matplotlib) unimportable."""
  for name in ("flax", "flax.nnx", "flax.linen", "matplotlib"):
    monkeypatch.setitem(sys.modules, name, None)
  source = _quickstart_source()
  assert "flax" not in source
  exec(compile(source, str(README), "exec"), {})
  loss_y, loss_x = map(float, re.findall(r"\d+\.\d+", capsys.readouterr().out))
  assert loss_x < 0.25 and loss_y < 0.25


def _readme_words() -> str:
  return " ".join(README.read_text().split())


def test_readme_gives_the_test_run_s_time_and_memory():
  words = _readme_words()
  assert "about 9 minutes on a quiet 2-core machine" in words
  assert "about 3.6 GB of memory at its peak" in words


def test_readme_explains_every_expected_failure_with_its_count():
  """The summary's "xfailed" are the strict xfails of tests/ported/, in the
  three categories README names, with README's counts."""
  root = README.parent
  # No test outside tests/ported/ is expected to fail.
  for path in (root / "tests").glob("*.py"):
    assert not re.search(r"pytest\.(?:mark\.)?xfail\b", path.read_text()), path
  listed = subprocess.run(
      [sys.executable, "-m", "pytest", "-p", "no:xdist", "--collect-only",
       "-q", "-m", "xfail", "tests/ported"],
      cwd=root, capture_output=True, text=True, check=True).stdout
  ids = [line for line in listed.splitlines() if "::" in line]
  for path in (root / "tests" / "ported").glob("*.py"):
    marks = re.findall(r"xfail\(\s*strict=(\w+)", path.read_text())
    assert set(marks) <= {"True"}, path
  complex_ = [i for i in ids if "complex" in i]
  momentum = [i for i in ids if i.startswith(
      "tests/ported/test_torch_lr_scheduler.py") and i.endswith("-torch]")]
  wrapper = [i for i in ids if i.endswith(
      "::test_schedule_free_adamw_with_optax_adamw_base")]
  assert len(complex_) + len(momentum) + len(wrapper) == len(ids)
  words = _readme_words()
  assert f"({len(complex_)} cases of optax's dtype tests)" in words
  assert f"({len(momentum)} cases, each also run scaled into range)" in words
  assert f"decays z ({len(wrapper)} case)." in words


def test_readme_demo_loss_explanation_is_the_committed_study():
  study = json.loads((README.parent / "benchmarks" / "results" /
                      "schedule_free_study.json").read_text())
  recommended = "b1={b1:g},r={r:g},warmup={warmup_fraction:g}".format(
      **study["recommended"])
  rows = study["tasks"]["mnist1d"]["gaps"]["3200"]["sf_adamw"]
  row = next(row for row in rows if row["stop"] == 1600)
  sf, cosine = row[recommended], row["adamw_cosine"]
  words = _readme_words()
  assert (f"at 1600 steps {100 * sf['test_accuracy']['mean']:.1f}% against "
          f"{100 * cosine['test_accuracy']['mean']:.1f}% accuracy, and test "
          f"loss {sf['test_loss']['mean']:.3f} against "
          f"{cosine['test_loss']['mean']:.3f}") in words
  # The claims' direction: better accuracy, worse loss.
  assert sf["test_accuracy"]["mean"] > cosine["test_accuracy"]["mean"]
  assert sf["test_loss"]["mean"] > cosine["test_loss"]["mean"]
  # "With weight decay 0.1 ...": both methods at 0.1, read at 1600 steps.
  row = next(row for row in study["tasks"]["mnist1d"]["weight_decay"][
      "long_rows"] if row["stop"] == 1600)
  decayed_sf, decayed_cosine = row["sf_adamw"], row["adamw_cosine"]
  assert decayed_sf["setting"] == f"{recommended},wd=0.1"
  assert decayed_cosine["setting"] == "wd=0.1"
  assert (f"at 1600 steps test loss {decayed_sf['test_loss']['mean']:.3f} "
          f"against {decayed_cosine['test_loss']['mean']:.3f}, accuracy "
          f"{100 * decayed_sf['test_accuracy']['mean']:.1f}% against "
          f"{100 * decayed_cosine['test_accuracy']['mean']:.1f}%") in words
  gap = sf["test_loss"]["mean"] - cosine["test_loss"]["mean"]
  decayed_gap = (decayed_sf["test_loss"]["mean"]
                 - decayed_cosine["test_loss"]["mean"])
  assert 0 < decayed_gap < gap / 2  # "most of the loss gap closes"
