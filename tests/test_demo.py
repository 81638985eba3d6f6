"""`python -m optfree demo` in a tiny mode: its table, JSON, plot and seed."""

import json

import pytest

from optfree import __main__ as cli
from optfree import demo

TINY = ["--steps", "12", "--eval-every", "6", "--num-samples", "600",
        "--batch-size", "16", "--no-progress", "--seed", "3"]
OPTIMIZERS = ("adamw_cosine", "sf_adamw")
RESULT_KEYS = {"label", "learning_rate", "final_test_accuracy",
               "final_test_loss", "steps_per_s", "first_chunk_s",
               "state_bytes", "state_per_param_bytes", "curve"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo") / "plot.png"
  report = demo.main(TINY + ["--optimizers", ",".join(OPTIMIZERS),
                             "--out", str(out)])
  return out, report


def test_writes_png_and_json_with_every_optimizer(first_run):
  out, report = first_run
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  written = json.loads(out.with_suffix(".json").read_text())
  assert written == json.loads(json.dumps(report))
  assert tuple(written["results"]) == OPTIMIZERS
  assert written["config"]["steps"] == 12 and written["config"]["seed"] == 3
  for result in written["results"].values():
    assert set(result) == RESULT_KEYS
    assert result["curve"]["step"] == [6, 12]
    assert 0.0 <= result["final_test_accuracy"] <= 1.0
    assert result["final_test_accuracy"] == result["curve"]["test_accuracy"][-1]
    assert result["steps_per_s"] > 0


def test_state_size_counts_the_buffers(first_run):
  results = first_run[1]["results"]
  # AdamW keeps mu and nu; Schedule-Free AdamW keeps z and v (plus scalars).
  assert results["adamw_cosine"]["state_per_param_bytes"] == pytest.approx(
      2.0, abs=0.01)
  assert results["sf_adamw"]["state_per_param_bytes"] == pytest.approx(
      2.0, abs=0.01)


def test_same_seed_gives_the_same_curves_and_a_table_row(
    first_run, tmp_path, capsys):
  again = demo.main(TINY + ["--optimizers", "sf_adamw", "--out",
                            str(tmp_path / "again.png")])
  assert (again["results"]["sf_adamw"]["curve"]
          == first_run[1]["results"]["sf_adamw"]["curve"])
  lines = capsys.readouterr().out.splitlines()
  header = next(i for i, line in enumerate(lines)
                if line.startswith("optimizer"))
  assert "test acc" in lines[header] and "state bytes" in lines[header]
  row = lines[header + 2].split()
  assert row[0] == "sf_adamw"
  assert float(row[2]) == pytest.approx(
      again["results"]["sf_adamw"]["final_test_accuracy"], abs=1e-4)


def test_unknown_optimizer_is_a_usage_error(tmp_path):
  with pytest.raises(SystemExit) as error:
    demo.main(["--optimizers", "adam_typo", "--out", str(tmp_path / "x.png")])
  assert error.value.code == 2


@pytest.mark.parametrize("argv,code", [([], 0), (["--help"], 0),
                                       (["train"], 2)])
def test_cli_without_a_command_prints_usage(argv, code, capsys):
  assert cli.main(argv) == code
  captured = capsys.readouterr()
  assert "python -m optfree demo" in captured.out + captured.err
