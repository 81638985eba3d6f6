"""benchmarks/quality.py in a tiny mode: its JSON, plots, tables and protocol;
the zero-tuning comparison (untuned ScheduleFree+, the 4T horizon, --only
merges) and the documentation it writes."""

import copy
import importlib.util
import inspect
import json
import math
import pathlib
import re
import types

import numpy as np
import pytest

import optfree

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATH = ROOT / "benchmarks" / "quality.py"
SPEC = importlib.util.spec_from_file_location("quality", PATH)
quality = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(quality)
# torch_anchor.py's NumPy half (its summary), which needs no torch.
ANCHOR_SPEC = importlib.util.spec_from_file_location(
    "torch_anchor", ROOT / "benchmarks" / "torch_anchor.py")
torch_anchor = importlib.util.module_from_spec(ANCHOR_SPEC)
ANCHOR_SPEC.loader.exec_module(torch_anchor)

STEPS = 8
LONG_STEPS = quality.LONG * STEPS
OPTIMIZERS = ("adamw_cosine", "sf_adamw", "sf_plus")
ARGS = ["--quick", "--tasks", "mnist1d", "--steps", str(STEPS),
        "--eval-every", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = tmp_path_factory.mktemp("quality")
  reports = quality.main(ARGS + ["--optimizers", ",".join(OPTIMIZERS),
                                 "--out-dir", str(out)])
  return out, reports["mnist1d"]


@pytest.mark.slow
def test_writes_json_and_both_plots(run):
  out, report = run
  assert json.loads((out / "quality-mnist1d.json").read_text()) == json.loads(
      json.dumps(report))
  for name in ("quality-mnist1d.png", "quality-mnist1d-horizons.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_has_curves_and_horizon_values_per_optimizer(run):
  report = run[1]
  assert tuple(report["optimizers"]) == OPTIMIZERS
  assert report["config"]["steps"] == STEPS
  for name, result in report["optimizers"].items():
    long = name in ("sf_adamw", "sf_plus")  # one run that goes on to 4T
    # Every eval_every steps up to T, then every LONG * eval_every.
    expected = [2, 4, 8] + ([24, 32] if long else [])
    assert result["curve"]["step"] == expected
    for key in ("test_loss_mean", "test_loss_std", "test_accuracy_mean",
                "test_accuracy_std"):
      assert len(result["curve"][key]) == len(expected)
      assert np.all(np.isfinite(result["curve"][key]))
    assert set(result["at_horizon"]) == (
        {"2", "4", "8", "32"} if long else {"2", "4", "8"})
    assert result["final"] == result["at_horizon"]["8"]
    assert result["best_lr"] in result["lr_grid"]
    assert result["command"] == report["command"]


@pytest.mark.slow
def test_seed_runs_repeat_the_grid_runs_bit_for_bit(run):
  # What is deterministic: on one machine, the seed-0 run of the seed phase
  # repeats the grid's seed-0 run bit for bit (same data, initialization,
  # batch order and compiled program). Across CPUs only the last digits of
  # the published numbers may differ (XLA's CPU kernels round differently
  # with another vector width or fused multiply-add); a single process can
  # only check the first claim. Schedule-Free AdamW's seed runs go on to 4T
  # with the optimizer set up for T: at T they are its tuning runs.
  for name in ("adamw_cosine", "sf_adamw"):
    assert run[1]["optimizers"][name]["seed0_repeat_identical"], name


@pytest.mark.slow
def test_untuned_optimizer_is_one_run_with_no_search(run):
  result = run[1]["optimizers"]["sf_plus"]
  assert result["tuned"] is False
  assert result["lr_grid"] == [1.0] and result["grid_seed0"] == {}
  assert result["best_lr_at_grid_edge"] is False
  assert result["seed0_repeat_identical"] is None  # no grid run to repeat
  assert (result["steps"], result["run_steps"]) == (STEPS, LONG_STEPS)
  assert result["label"] == "ScheduleFree+ (defaults, no tuning)"
  # The defaults it ran with are recorded, since they may change.
  settings = run[1]["schedule_free_settings"]["sf_plus"]
  defaults = {name: parameter.default for name, parameter in
              inspect.signature(optfree.schedule_free_plus).parameters.items()}
  assert settings["learning_rate"] == defaults["learning_rate"]
  assert settings["c_warmup"] == defaults["c_warmup"]
  assert "polyak_b" in settings


def test_untuned_specs_call_their_optimizer_with_no_arguments(monkeypatch):
  calls = []
  monkeypatch.setattr(quality._demo_models.optfree, "schedule_free_plus",
                      lambda *args, **kwargs: calls.append((args, kwargs)))
  quality._demo_models.OPTIMIZERS["sf_plus"].make(0.123, 1000)
  assert calls == [((), {})]
  assert not quality.is_tuned(quality._demo_models.OPTIMIZERS["sf_plus"])
  assert not quality.is_tuned(
      quality._demo_models.OPTIMIZERS["prodigy_cosine"])


def test_prodigy_cosine_trains_from_its_first_step():
  # optax.contrib.prodigy's estimate is 0 / 0 after a first step at learning
  # rate 0, which a warmup from 0 would give: its warmup starts above 0.
  schedule = quality._demo_models._prodigy_warmup_cosine(100)
  assert float(schedule(0)) > 0 and float(schedule(4)) == 1.0
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)
  task = quality.TASK_BUILDERS["mnist1d"](**quality.QUICK["mnist1d"]["model"])
  spec = quality._demo_models.OPTIMIZERS["prodigy_cosine"]
  result = quality.tune(task, spec, (1.0,), [0], 4, 2, tuned=False)
  assert np.all(np.isfinite(result["curve"]["test_loss_mean"]))


@pytest.mark.slow
def test_horizon_table_compares_cosine_tuned_per_stop_with_one_sf_run(run):
  report = run[1]
  assert [row["steps"] for row in report["horizons"]] == [2, 4, 8, 32]
  by_horizon = report["horizon_runs"]["adamw_cosine"]
  assert sorted(by_horizon, key=int) == ["2", "4", "8", "32"]
  for row in report["horizons"]:
    stop = str(row["steps"])
    # Cosine: the run that was scheduled (and tuned) for exactly this stop.
    assert by_horizon[stop]["steps"] == row["steps"]
    assert row["adamw_cosine"]["test_loss_mean"] == (
        by_horizon[stop]["final"]["test_loss_mean"])
    # Schedule-Free: the one run, read at this stop, 4T included.
    for name in ("sf_adamw", "sf_plus"):
      assert row[name]["test_loss_mean"] == (
          report["optimizers"][name]["at_horizon"][stop]["test_loss_mean"])


@pytest.mark.slow
def test_untuned_goal_is_the_relative_gap_to_the_tuned_cosine(run):
  report = run[1]
  goal = report["untuned_goal"]
  assert goal["goal"] == 0.02
  assert [row["steps"] for row in goal["rows"]] == [2, 4, 8, 32]
  for row, horizon in zip(goal["rows"], report["horizons"]):
    ours = horizon["sf_plus"]["test_loss_mean"]
    cosine = horizon["adamw_cosine"]["test_loss_mean"]
    assert row["ratio"] == pytest.approx(ours / cosine)
    assert row["relative_gap"] == pytest.approx((ours - cosine) / cosine)
    assert row["within_goal"] == ((ours - cosine) / cosine <= 0.02)
  assert goal["met_everywhere"] == all(r["within_goal"] for r in goal["rows"])


@pytest.mark.parametrize("ours,cosine,within", [
    (1.0199, 1.0, True), (1.0201, 1.0, False), (0.5, 1.0, True),
    (math.nan, 1.0, False), (math.inf, 1.0, False)])
def test_untuned_goal_boundary_and_non_finite_losses(ours, cosine, within):
  rows = [{"steps": 8, "sf_plus": {"test_loss_mean": ours},
           "adamw_cosine": {"test_loss_mean": cosine}}]
  (row,) = quality.untuned_goal(rows)["rows"]
  assert row["within_goal"] is within
  if not math.isfinite(ours):
    assert row["relative_gap"] is None and row["sf_plus"] is None


@pytest.mark.slow
def test_summary_table_has_a_row_per_optimizer_and_the_goal(run):
  lines = quality.format_summary(run[1]).splitlines()
  rows = [line.split()[0] for line in lines if line.strip()]
  for name in OPTIMIZERS:
    assert name in rows
  assert any(line.startswith("stop at") for line in lines)
  assert any(line.startswith("the zero-tuning goal") for line in lines)
  sf_plus_row = next(line for line in lines if line.startswith("sf_plus "))
  assert "untuned" in sf_plus_row


@pytest.mark.slow
def test_merge_replaces_only_the_named_optimizers_and_keeps_commands(run):
  existing = copy.deepcopy(run[1])
  # A JSON written before --only existed: one command, none per optimizer.
  del existing["commands"]
  for entry in existing["optimizers"].values():
    del entry["command"]
  new = copy.deepcopy(run[1])
  new["command"] = "python benchmarks/quality.py --only sf_plus"
  new["commands"] = [{"command": new["command"], "optimizers": ["sf_plus"],
                      "wall_s": 1.0, "versions": {}}]
  new["optimizers"] = {"sf_plus": dict(new["optimizers"]["sf_plus"],
                                       command=new["command"])}
  new["optimizers"]["sf_plus"]["at_horizon"]["8"]["test_loss_mean"] = 123.0
  new["horizon_runs"] = {}
  merged = quality.merge(existing, new, ["sf_plus"])
  assert tuple(merged["optimizers"]) == OPTIMIZERS
  assert merged["optimizers"]["adamw_cosine"]["command"] == run[1]["command"]
  assert merged["optimizers"]["sf_plus"]["command"] == new["command"]
  assert [c["command"] for c in merged["commands"]] == [run[1]["command"],
                                                        new["command"]]
  assert merged["wall_s"] == pytest.approx(run[1]["wall_s"] + 1.0)
  # The tables are recomputed from the merged runs.
  assert merged["horizons"][2]["sf_plus"]["test_loss_mean"] == 123.0
  assert merged["untuned_goal"]["rows"][2]["sf_plus"] == 123.0
  assert merged["horizon_runs"]["adamw_cosine"]["8"]["command"] == (
      run[1]["command"])


@pytest.mark.slow
def test_merge_refuses_another_protocol(run):
  other = copy.deepcopy(run[1])
  other["config"]["seeds"] = [0, 1, 2]
  with pytest.raises(ValueError, match="config"):
    quality.merge(run[1], other, ["sf_plus"])


@pytest.mark.slow
def test_only_reruns_the_named_optimizers_into_the_existing_json(
    run, tmp_path):
  out, report = run
  for path in out.glob("quality-mnist1d*"):
    (tmp_path / path.name).write_bytes(path.read_bytes())
  merged = quality.main(ARGS + ["--only", "sf_plus", "--out-dir",
                                str(tmp_path)])["mnist1d"]
  written = json.loads((tmp_path / "quality-mnist1d.json").read_text())
  assert written == json.loads(json.dumps(merged))
  assert tuple(written["optimizers"]) == OPTIMIZERS
  assert written["commands"][-1]["optimizers"] == ["sf_plus"]
  assert "--only sf_plus" in written["optimizers"]["sf_plus"]["command"]
  assert "--only" not in written["optimizers"]["sf_adamw"]["command"]
  # Deterministic on one machine: the rerun gives the same numbers.
  assert (written["optimizers"]["sf_plus"]["curve"]
          == report["optimizers"]["sf_plus"]["curve"])


@pytest.mark.slow
def test_only_refuses_another_protocol_before_training(run, tmp_path,
                                                      monkeypatch):
  out, _ = run
  (tmp_path / "quality-mnist1d.json").write_bytes(
      (out / "quality-mnist1d.json").read_bytes())
  monkeypatch.setattr(quality, "run_task", None)  # must not be reached
  with pytest.raises(SystemExit) as error:
    quality.main(ARGS[:4] + ["6", "--eval-every", "3", "--only", "sf_plus",
                             "--out-dir", str(tmp_path)])
  assert error.value.code == 2


def test_only_needs_an_existing_json(tmp_path):
  with pytest.raises(SystemExit) as error:
    quality.main(ARGS + ["--only", "sf_plus", "--out-dir", str(tmp_path)])
  assert error.value.code == 2


def test_tune_picks_the_learning_rate_with_the_lowest_validation_loss():
  task = quality.TASK_BUILDERS["mnist1d"](**quality.QUICK["mnist1d"]["model"])
  spec = quality._demo_models.OPTIMIZERS["adamw_cosine"]
  # A learning rate of 1e-9 cannot move the weights in 4 steps.
  result = quality.tune(task, spec, (1e-9, 1e-2), [0, 1], 4, 2)
  grid = result["grid_seed0"]
  assert grid["0.01"]["val_loss"] < grid["1e-09"]["val_loss"]
  assert result["best_lr"] == 1e-2
  assert result["seeds"] == [0, 1]
  assert result["curve"]["test_loss_std"][-1] > 0  # two seeds differ


def _fake_train(task, spec, learning_rates, seeds, steps, record):
  # Validation loss is smallest at lr = 0.3.
  loss = np.array([(np.log10(lr) - np.log10(0.3))**2
                   for lr in learning_rates])
  metrics = {"val_loss": loss, "test_loss": loss,
             "val_accuracy": 0 * loss, "test_accuracy": 0 * loss}
  return {stop: metrics for stop in record}


def test_tune_widens_the_grid_while_the_best_learning_rate_is_at_an_edge(
    monkeypatch):
  # From (0.003, 0.01), each widening adds two values (the grid's width)
  # past the edge.
  monkeypatch.setattr(quality, "train", _fake_train)
  spec = types.SimpleNamespace(label="fake", schedule_free=False)
  result = quality.tune(None, spec, (3e-3, 1e-2), [0], 8, 4, max_widenings=1)
  assert result["lr_grid"] == pytest.approx([3e-3, 1e-2, 3e-2, 1e-1])
  assert result["best_lr"] == pytest.approx(1e-1)
  assert result["best_lr_at_grid_edge"]
  result = quality.tune(None, spec, (3e-3, 1e-2), [0], 8, 4, max_widenings=2)
  assert result["lr_grid"] == pytest.approx([3e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0])
  assert result["best_lr"] == pytest.approx(0.3)
  assert not result["best_lr_at_grid_edge"]


def test_untuned_tune_runs_no_grid_and_never_widens(monkeypatch):
  calls = []

  def counting_train(task, spec, learning_rates, seeds, steps, record):
    calls.append(list(learning_rates))
    return _fake_train(task, spec, learning_rates, seeds, steps, record)

  monkeypatch.setattr(quality, "train", counting_train)
  spec = quality._demo_models.OptimizerSpec(
      "fake", "fake", lambda lr, steps: None, 1.0, (1.0,), schedule_free=True)
  result = quality.tune(None, spec, (1.0,), [0, 1, 2], 8, 4, max_widenings=2,
                        run_steps=32, tuned=False)
  assert calls == [[1.0, 1.0, 1.0]]  # the seeds, nothing else
  assert result["lr_grid"] == [1.0] and result["best_lr"] == 1.0
  assert sorted(result["at_horizon"], key=int) == ["2", "4", "8", "32"]


# ------------------------------------------- the documentation it writes

DOCS = ROOT / "docs" / "guides" / "quality.md"
README = ROOT / "README.md"


def _anchor_for(report):
  """An anchor JSON of the quick report's protocol (made without torch)."""
  steps = report["config"]["steps"]
  meta = {"config": report["config"]}
  record = torch_anchor.record_steps(steps, report["config"]["eval_every"])
  per_seed = [{s: {"val_loss": 2.0 + seed, "test_loss": 2.5 + seed / 10,
                   "test_accuracy": 0.5} for s in record}
              for seed in report["config"]["seeds"]]
  return {"task": report["task"], "description": report["description"],
          "config": {**report["config"], "batch_size":
                     report["config"]["batch_size"]},
          "command": "python benchmarks/torch_anchor.py --quick",
          **torch_anchor.summarize(meta, per_seed)}


@pytest.mark.slow
def test_docs_table_is_written_from_the_jsons(run, tmp_path):
  out, report = run
  (tmp_path / "quality-mnist1d.json").write_bytes(
      (out / "quality-mnist1d.json").read_bytes())
  (quality.anchor_path(tmp_path, "mnist1d")).write_text(
      json.dumps(_anchor_for(report)))
  blocks = quality.docs_blocks(tmp_path)
  section = blocks["docs"].split("### Character")[0]
  lines = [l for l in section.splitlines() if re.match(r"\| \d?T", l)]
  assert [l.split(" |")[0] for l in lines] == [
      "| T/4 = 2", "| T/2 = 4", "| T = 8", "| 4T = 32"]
  for line, row, goal in zip(lines, report["horizons"],
                             report["untuned_goal"]["rows"]):
    cells = [c.strip() for c in line.strip("|").split("|")]
    cell = lambda name: quality._loss_cell(row[name], accuracy=True)
    assert cells[1] == cell("sf_plus")
    assert cells[2] == (cell("adamw_cosine")
                        + f", lr {row['adamw_cosine']['best_lr']:g}")
    assert cells[3] == cell("sf_adamw")
    assert cells[4] == "–"  # prodigy_cosine was not run here
    assert cells[5] == "2.500 ± 0.000 (50.0%)"  # the anchor
    assert float(cells[6]) == pytest.approx(goal["ratio"], rel=1e-2)
    assert cells[7].startswith("yes" if goal["within_goal"] else "no")
    if not goal["within_goal"]:
      missed = 100 * (goal["relative_gap"] - 0.02)
      assert f"missed by {missed:.1f} points" in cells[7]
  met = sum(goal["within_goal"] for goal in report["untuned_goal"]["rows"])
  assert f"is met at {met} of 4 stops" in section
  assert report["command"] in section
  assert "python benchmarks/torch_anchor.py --quick" in section
  # No ScheduleFree+ results for the other task: it says so.
  assert "Pending" in blocks["docs"].split("### Character")[1]
  assert f"is met at {met} of 4 stops" in blocks["readme"]
  assert "charlm: pending" in blocks["readme"]
  # The anchor's test loss is 2.5 at every stop.
  ours = [row["sf_plus"]["test_loss_mean"] for row in report["horizons"]]
  wins = sum(loss < 2.5 for loss in ours)
  assert f"is lower at {wins} of 4 stops" in section
  assert f"at {wins} of 4 stops." in blocks["readme"].split("PyTorch")[1]


@pytest.mark.parametrize("mean,text", [
    (0.14215, "0.142 ± 0.010 (96.4%)"), (5.4e8, "5.4e+08 (96.4%)"),
    (math.nan, "diverged")])
def test_docs_loss_cells(mean, text):
  entry = {"test_loss_mean": mean, "test_loss_std": 0.01,
           "test_accuracy_mean": 0.9641}
  assert quality._loss_cell(entry, accuracy=True) == text


@pytest.mark.parametrize("gap,text", [
    (0.013, "yes (+1.3%)"), (-0.2, "yes (-20.0%)"),
    (0.05, "no (+5.0%: missed by 3.0 points)"),
    (316.7, "no (3.2e+02x the cosine's loss)"), (None, "no (not finite)")])
def test_docs_verdicts_say_by_how_much_the_goal_is_missed(gap, text):
  row = {"relative_gap": gap,
         "within_goal": gap is not None and gap <= quality.GOAL}
  assert quality._verdict(row) == text


@pytest.mark.slow
def test_docs_refuse_an_anchor_of_another_protocol(run, tmp_path):
  out, report = run
  (tmp_path / "quality-mnist1d.json").write_bytes(
      (out / "quality-mnist1d.json").read_bytes())
  anchor = _anchor_for(report)
  anchor["config"]["seeds"] = [0, 1, 2]
  quality.anchor_path(tmp_path, "mnist1d").write_text(json.dumps(anchor))
  with pytest.raises(ValueError, match="seeds"):
    quality.docs_blocks(tmp_path)


@pytest.mark.slow
def test_write_docs_replaces_only_the_generated_blocks(run, tmp_path):
  out, _ = run
  files = {}
  for key, source in (("docs", DOCS), ("readme", README)):
    files[key] = tmp_path / source.name
    files[key].write_text(source.read_text())
  quality.write_docs(out, files)
  blocks = quality.docs_blocks(out)
  for key, source in (("docs", DOCS), ("readme", README)):
    text = files[key].read_text()
    assert quality.block_in(text) == blocks[key]
    before, after = source.read_text().split(quality.BEGIN)
    assert text.startswith(before)
    assert text.endswith(after.split(quality.END, 1)[1])
  quality.write_docs(out, files)  # idempotent
  assert quality.block_in(files["docs"].read_text()) == blocks["docs"]


def test_committed_docs_say_what_the_committed_results_say():
  """docs/guides/quality.md's and README.md's ScheduleFree+ blocks are what
  ``python benchmarks/quality.py --docs`` writes from benchmarks/results:
  the numbers, or that the run is pending."""
  blocks = quality.docs_blocks(ROOT / "benchmarks" / "results")
  assert quality.block_in(DOCS.read_text()) == blocks["docs"]
  assert quality.block_in(README.read_text()) == blocks["readme"]
