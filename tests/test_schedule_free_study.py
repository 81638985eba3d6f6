"""benchmarks/schedule_free_study.py: its protocol on synthetic losses, and a
tiny end-to-end run (JSON, plot, recommendation, choices on validation)."""

import importlib.util
import json
import math
import pathlib
import sys
import types

import pytest

import optfree

PATH = (pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
        / "schedule_free_study.py")
SPEC = importlib.util.spec_from_file_location("schedule_free_study", PATH)
study = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = study
SPEC.loader.exec_module(study)


class FakeStudy(study.Study):
  """A Study whose training is a known validation loss of the learning rate."""

  def __init__(self, tmp_path, loss_of_lr, search=None, steps=8,
               loss_of_config=lambda config: 0.0, command=""):
    task = types.SimpleNamespace(data=types.SimpleNamespace(
        description="validation loss a function of the learning rate"))
    super().__init__("fake", task, {"steps": steps, "model": {}},
                     tmp_path / "schedule_free_study-fake.json",
                     lambda message: None, search or {}, command)
    self.loss_of_lr = loss_of_lr
    self.loss_of_config = loss_of_config
    self.trained = []

  def _train(self, method, runs, steps, stops):
    for run in runs:
      self.trained.append((method, run["lr"]))
      loss = self.loss_of_lr(run["lr"]) + self.loss_of_config(run["config"])
      self.records.append({
          "method": method, "steps": steps, "config": run["config"],
          "lr": run["lr"], "seed": run["seed"],
          "points": {str(s): {"val_loss": loss, "test_loss": loss,
                              "val_accuracy": 0.5, "test_accuracy": 0.5}
                     for s in stops}})


def _valley(center):
  return lambda lr: (math.log10(lr) - math.log10(center))**2


@pytest.mark.parametrize("center,expected_grid", [
    (3e-1, [3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]),   # widened up twice
    (1e-3, [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]),  # widened down twice
    (1e-2, [3e-3, 1e-2, 3e-2, 1e-1]),              # inside already
])
def test_grid_widens_until_the_best_learning_rate_is_inside(
    tmp_path, center, expected_grid):
  fake = FakeStudy(tmp_path, _valley(center))
  fake.tune("adamw_cosine", [None], 8, [8])
  assert fake.grid("adamw_cosine", 8, None) == pytest.approx(expected_grid)
  assert fake.best_lr("adamw_cosine", 8, None) == pytest.approx(center)


def test_widening_stops_after_max_widenings(tmp_path):
  fake = FakeStudy(tmp_path, _valley(100.0))
  fake.tune("adamw_cosine", [None], 8, [8])
  grid = fake.grid("adamw_cosine", 8, None)
  assert len(grid) == len(study.START_GRIDS["adamw_cosine"]) + (
      study.MAX_WIDENINGS)
  # Still at the edge: the analysis must then flag it, not hide it.
  assert fake.best_lr("adamw_cosine", 8, None) == grid[-1]


def test_diverged_runs_are_never_chosen(tmp_path):
  losses = {3e-3: 1.0, 1e-2: 0.5, 3e-2: 0.7, 1e-1: math.nan}
  fake = FakeStudy(tmp_path, lambda lr: losses[min(
      losses, key=lambda v: abs(math.log(v / lr)))])
  fake.tune("adamw_cosine", [None], 8, [8])
  assert fake.best_lr("adamw_cosine", 8, None) == 1e-2


def test_runs_already_recorded_are_not_trained_again(tmp_path):
  fake = FakeStudy(tmp_path, _valley(1e-2))
  fake.tune("adamw_cosine", [None], 8, [8])
  trained = list(fake.trained)
  fake.tune("adamw_cosine", [None], 8, [8])
  assert fake.trained == trained


# ---------------------------------------- runs accumulate across invocations


def test_a_later_invocation_with_other_options_keeps_the_earlier_runs(
    tmp_path):
  first = FakeStudy(tmp_path, _valley(1e-2), {"one_at_a_time": True})
  first.tune("adamw_cosine", [None], 8, [8])
  first.save()
  other_grids = {**study.START_GRIDS, "sgd_cosine": (1e-2, 1e-1)}
  second = FakeStudy(tmp_path, _valley(1e-2), {"grids": other_grids})
  assert second.records == first.records
  second.tune("adamw_cosine", [None], 8, [8])  # resumed: nothing to train
  assert not second.trained
  second.tune("sgd_cosine", [None], 8, [8])
  second.save()
  third = FakeStudy(tmp_path, _valley(1e-2))
  assert {r["method"] for r in third.records} == {"adamw_cosine",
                                                  "sgd_cosine"}
  assert len(third.records) == len(first.records) + len(second.trained)


def test_runs_of_another_configuration_are_an_error_not_overwritten(
    tmp_path):
  first = FakeStudy(tmp_path, _valley(1e-2))
  first.tune("adamw_cosine", [None], 8, [8])
  first.save()
  saved = first.out_path.read_text()
  with pytest.raises(ValueError, match="another configuration"):
    FakeStudy(tmp_path, _valley(1e-2), steps=16)
  assert first.out_path.read_text() == saved


def test_every_task_gets_the_finalists_of_a_shared_search(tmp_path):
  finalist = dict(b1=0.95, r=1.0, warmup_fraction=0.05)
  search = {"extra_finalists": [finalist], "task_best": False}
  first = FakeStudy(tmp_path / "a", _valley(1e-2), search)
  second = FakeStudy(tmp_path / "b", _valley(1e-2), search)
  for fake in (first, second):
    assert fake.extra_finalists == [finalist]
    assert not fake.task_best


def _r_matters(config):
  # Schedule-Free settings differ by r; the baselines (config None) do not.
  return 1.0 if config is None else 1.0 + 0.1 * abs(config["r"] - 2.0)


def test_summary_holds_every_invocations_methods_and_keeps_recommendation(
    tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  sgd_grid = {**study.QUICK_SEARCH["grids"], "sf_sgd": (3.0, 10.0)}
  # Each method alone, with options of its own, one after the other ...
  for methods, search in ((["sf_adamw"], study.QUICK_SEARCH),
                          (["sf_sgd"], {**study.QUICK_SEARCH,
                                        "grids": sgd_grid})):
    FakeStudy(tmp_path / "a", _valley(1e-1), search,
              loss_of_config=_r_matters,
              command=f"--methods {methods[0]}").run(methods, [])
  # ... gives the summary of both run in one invocation.
  FakeStudy(tmp_path / "b", _valley(1e-1),
            {**study.QUICK_SEARCH, "grids": sgd_grid},
            loss_of_config=_r_matters).run(["sf_adamw", "sf_sgd"], [])
  one_by_one = study.summarize(["fake"], tmp_path / "a", "summarize")
  together = study.summarize(["fake"], tmp_path / "b", "summarize")
  assert set(one_by_one["tasks"]["fake"]["gaps"]["8"]) == {"sf_adamw",
                                                           "sf_sgd"}
  for key in ("recommended", "recommendation_scores"):
    assert one_by_one[key] == together[key]
  for key in ("settings", "gaps", "sensitivity"):
    assert one_by_one["tasks"]["fake"][key] == together["tasks"]["fake"][key]
  invocations = one_by_one["tasks"]["fake"]["invocations"]
  assert [i["options"]["methods"] for i in invocations] == [["sf_adamw"],
                                                            ["sf_sgd"]]
  assert [i["commands"] for i in invocations] == [["--methods sf_adamw"],
                                                  ["--methods sf_sgd"]]


def test_files_written_before_runs_accumulated_are_read(tmp_path):
  fake = FakeStudy(tmp_path, _valley(1e-2))
  fake.tune("adamw_cosine", [None], 8, [8])
  fake.save()
  saved = json.loads(fake.out_path.read_text())
  legacy = {**saved, "config": {**saved["config"], "search": {"a": 1}},
            "stages": {"1-search": 3.0}}
  del legacy["invocations"]
  fake.out_path.write_text(json.dumps(legacy))
  again = FakeStudy(tmp_path, _valley(1e-2))
  assert again.records == fake.records
  assert again.invocations == [{"options": {"search": {"a": 1}},
                                "commands": [], "stages": {"1-search": 3.0}}]


# ------------------------------------------------------------- weight decay


def _decay_helps_schedule_free(config):
  # Schedule-Free's best weight decay is 0.1, the cosine's the default.
  wd = study._weight_decay_of(config)
  if config is None or "b1" not in config:
    return 1.0 + abs(math.log10(wd) + 4)
  return 1.2 + 0.1 * abs(math.log10(wd) + 1)


def test_weight_decay_is_chosen_jointly_with_the_lr_at_equal_budget(
    tmp_path):
  setting = dict(b1=0.9, r=1.0, warmup_fraction=0.05)
  search = {**study.QUICK_SEARCH, "weight_decays": [1e-4, 1e-2, 1e-1, 1.0],
            "weight_decay_setting": setting}
  fake = FakeStudy(tmp_path, _valley(1e-1), search,
                   loss_of_config=_decay_helps_schedule_free)
  fake.run(["sf_adamw"], [])
  # The default weight decay's runs are the other stages' runs, not new ones.
  assert len({(r["method"], r["steps"], study._key(r["config"]), r["lr"],
               r["seed"]) for r in fake.records}) == len(fake.records)
  analysis = study.analyze(json.loads(fake.out_path.read_text()))
  rows = analysis["weight_decay"]["rows"]
  assert [row["stop"] for row in rows] == [2, 4, 8]
  for row in rows:
    sf, cosine = row["sf_adamw"], row["adamw_cosine"]
    assert sf["setting"] == study._key(setting)
    assert cosine["setting"] == "-"
    for entry in (sf, cosine):
      assert [e["weight_decay"] for e in entry["per_weight_decay"]] == [
          1e-4, 1e-2, 1e-1, 1.0]
      # The same starting grid for every weight decay of both methods.
      for e in entry["per_weight_decay"]:
        assert set(study.QUICK_SEARCH["grids"]["adamw_cosine"]) <= set(
            e["lr_grid"])
      assert entry["seeds"] == [0, 1]
    # The cosine scheduled for this stop, Schedule-Free's one run of 8.
    assert fake.val_losses("adamw_cosine", row["stop"], None)
    assert sf["weight_decay"] == 0.1
    assert cosine["weight_decay"] == 1e-4
    assert cosine["weight_decay_at_grid_edge"]
    assert not sf["weight_decay_at_grid_edge"]
    assert sf["lr"] == pytest.approx(1e-1)
    assert sf["test_loss"]["mean"] == pytest.approx(1.2)
    assert row["test_loss_gap"] == pytest.approx(
        sf["test_loss"]["mean"] - cosine["test_loss"]["mean"])
  assert rows[-1]["test_loss_gap"] == pytest.approx(0.2)
  # The weight-decay runs stay out of the search's settings and gap tables.
  assert all("weight_decay" not in e["config"]
             for e in analysis["settings"]["sf_adamw"])
  assert "long_rows" not in analysis["weight_decay"]


def test_weight_decay_at_4t_keeps_each_methods_choice_at_t(tmp_path):
  setting = dict(b1=0.9, r=1.0, warmup_fraction=0.05)
  search = {**study.QUICK_SEARCH, "weight_decays": [1e-4, 1e-1],
            "weight_decay_setting": setting, "weight_decay_long": True}
  fake = FakeStudy(tmp_path, _valley(1e-1), search,
                   loss_of_config=_decay_helps_schedule_free)
  fake.run(["sf_adamw"], [])
  decay = study.analyze(json.loads(fake.out_path.read_text()))[
      "weight_decay"]
  rows = decay["long_rows"]
  assert [row["stop"] for row in rows] == [8, 16, 32]
  sf_config = {**setting, "weight_decay": 0.1}
  for row in rows:
    assert row["sf_adamw"]["setting"] == study._key(sf_config)
    assert row["adamw_cosine"]["setting"] == "-"  # its choice, the default
    assert row["sf_adamw"]["seeds"] == row["adamw_cosine"]["seeds"] == [0, 1]
  # Only the learning rate was tuned at 4T: one weight decay per method.
  assert fake.configs_run("sf_adamw", 32, weight_decay=True) == [sf_config]
  assert not fake.configs_run("sf_adamw", 32)
  assert fake.grid("adamw_cosine", 32, None)
  assert not fake.configs_run("adamw_cosine", 32, weight_decay=True)


def test_weight_decay_default_is_implicit():
  setting = dict(b1=0.9, r=1.0, warmup_fraction=0.05)
  assert study._with_weight_decay(setting, study.DEFAULT_WEIGHT_DECAY) == (
      setting)
  assert study._with_weight_decay(None, study.DEFAULT_WEIGHT_DECAY) is None
  assert study._with_weight_decay(None, 0.1) == {"weight_decay": 0.1}
  assert study._key({"weight_decay": 0.1}) == "wd=0.1"
  assert study._key({**setting, "weight_decay": 0.0}) == (
      "b1=0.9,r=1,warmup=0.05,wd=0")


def _analysis(task, sf_val_losses, cosine_val_loss):
  records = [{"method": "adamw_cosine", "steps": 8, "config": None,
              "lr": 1e-2, "seed": 0,
              "points": {"8": {"val_loss": cosine_val_loss}}}]
  settings = [{"config": config, "val_loss": loss}
              for config, loss in sf_val_losses]
  return {"task": task, "config": {"steps": 8},
          "settings": {"sf_adamw": settings}, "_records": records}


def test_recommendation_is_best_on_average_among_settings_every_task_ran():
  current = dict(b1=0.9, r=0.0, warmup_fraction=0.05)
  better = dict(b1=0.95, r=1.0, warmup_fraction=0.05)
  only_one = dict(b1=0.98, r=2.0, warmup_fraction=0.0)
  analyses = [
      # Relative to cosine: current +10%, better +2%, only_one -50%.
      _analysis("a", [(current, 1.1), (better, 1.02), (only_one, 0.5)], 1.0),
      # current +10%, better -4%.
      _analysis("b", [(current, 2.2), (better, 1.92)], 2.0),
  ]
  result = study.recommend(analyses)
  assert result["recommended"] == {"b1": 0.95, "r": 1.0,
                                   "weight_lr_power": 2.0,
                                   "warmup_fraction": 0.05}
  scores = result["recommendation_scores"]["mean"]
  assert scores[study._key(better)] == pytest.approx(-0.01)
  assert scores[study._key(current)] == pytest.approx(0.1)
  assert study._key(only_one) not in scores


# ------------------------------------------------------------ end to end

STEPS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = tmp_path_factory.mktemp("study")
  summary = study.main(["--quick", "--tasks", "mnist1d", "--methods",
                        "sf_adamw", "--steps", str(STEPS), "--out-dir",
                        str(out), "--weight-decay", "1e-4,0.5",
                        "--wd-setting", "b1=0.9,r=0,warmup=0.05"])
  saved = json.loads((out / "schedule_free_study-mnist1d.json").read_text())
  return out, summary, saved


@pytest.mark.slow
def test_writes_summary_json_and_plot(run):
  out, summary, _ = run
  assert json.loads((out / "schedule_free_study.json").read_text()) == (
      json.loads(json.dumps(summary)))
  for name in ("mnist1d", "mnist1d-weight-decay"):
    png = out / f"schedule_free_study-{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_recommended_settings_build_the_optimizer(run):
  recommended = dict(run[1]["recommended"])
  warmup_fraction = recommended.pop("warmup_fraction")
  assert 0 <= warmup_fraction < 1
  assert recommended["b1"] in study.QUICK_SEARCH["b1s"]
  assert recommended["r"] in study.QUICK_SEARCH["rs"]["sf_adamw"]
  optfree.schedule_free_adamw(1e-3, **recommended)


@pytest.mark.slow
def test_weight_decay_runs_train_with_their_weight_decay(run):
  _, summary, saved = run
  for row in summary["tasks"]["mnist1d"]["weight_decay"]["rows"]:
    for m in ("sf_adamw", "adamw_cosine"):
      assert [e["weight_decay"] for e in row[m]["per_weight_decay"]] == [
          1e-4, 0.5]
  # The same lr and seed at another weight decay is another model.
  records = study.Records(saved["records"])
  setting = dict(b1=0.9, r=0.0, warmup_fraction=0.05)
  for m, config in (("sf_adamw", setting), ("adamw_cosine", None)):
    for lr in records.grid(m, STEPS, study._with_weight_decay(config, 0.5)):
      default = records.find(m, STEPS, config, lr, 0)
      decayed = records.find(m, STEPS, study._with_weight_decay(config, 0.5),
                             lr, 0)
      if default is not None:
        assert (default["points"][str(STEPS)]["val_loss"]
                != decayed["points"][str(STEPS)]["val_loss"])


@pytest.mark.slow
def test_gap_tables_use_choices_made_on_validation(run):
  _, summary, saved = run
  records = study.Records(saved["records"])
  analysis = summary["tasks"]["mnist1d"]
  assert set(analysis["gaps"]) == {str(STEPS), str(study.LONG * STEPS)}
  for horizon, table in analysis["gaps"].items():
    horizon = int(horizon)
    rows = table["sf_adamw"]
    assert [row["stop"] for row in rows] == [horizon // 4, horizon // 2,
                                             horizon]
    for row in rows:
      stop = row["stop"]
      # The baseline is the run scheduled for exactly this stop, its lr the
      # seed-0 validation argmin of that stop's grid.
      cosine = row["adamw_cosine"]
      losses = records.val_losses("adamw_cosine", stop, None)
      assert cosine["lr"] == min(losses, key=losses.get)
      assert cosine["seeds"] == [0, 1]
      for key, entry in row.items():
        if key in ("stop", "adamw_cosine"):
          continue
        config = next(c for c in records.configs_run("sf_adamw", horizon)
                      if study._key(c) == key)
        losses = records.val_losses("sf_adamw", horizon, config)
        assert entry["lr"] == min(losses, key=losses.get)
        assert entry["seeds"] == [0, 1]
        assert entry["test_loss_gap"] == pytest.approx(
            entry["test_loss"]["mean"] - cosine["test_loss"]["mean"])
        assert math.isfinite(entry["test_loss"]["mean"])


# ------------------------------------------------------- committed results

COMMITTED = json.loads((PATH.parent / "results" / "schedule_free_study.json")
                       .read_text())


def test_demo_and_quality_use_the_committed_recommendation():
  assert study._demo_models.SF_ADAMW_SETTINGS == COMMITTED["recommended"]
  assert study._demo_models.OPTIMIZERS["sf_adamw"].label.endswith(
      "(b1={b1:g}, r={r:g}, warmup {w:g}%)".format(
          w=100 * COMMITTED["recommended"]["warmup_fraction"],
          **COMMITTED["recommended"]))


def test_committed_choices_are_inside_their_grids_at_both_horizons():
  for task in ("mnist1d", "charlm"):
    gaps = COMMITTED["tasks"][task]["gaps"]
    steps = COMMITTED["tasks"][task]["config"]["steps"]
    assert set(gaps) == {str(steps), str(study.LONG * steps)}
    for table in gaps.values():
      for rows in table.values():
        for row in rows:
          for key, entry in row.items():
            if key == "stop":
              continue
            assert entry["lr_grid"][0] < entry["lr"] < entry["lr_grid"][-1], (
                task, row["stop"], key)
            assert entry["seeds"] == [0, 1, 2]


def test_readme_study_figures_are_the_committed_results():
  readme = " ".join((PATH.parents[1] / "README.md").read_text().split())
  key = study._key({k: v for k, v in COMMITTED["recommended"].items()
                    if k in study.CURRENT})

  def end(task, horizon):
    row = COMMITTED["tasks"][task]["gaps"][str(horizon)]["sf_adamw"][-1]
    return row[key]["test_loss"]["mean"], row["adamw_cosine"]["test_loss"][
        "mean"]

  sf, cosine = end("charlm", 4 * 400)
  assert f"({sf:.3f} against {cosine:.3f} at 4T = 1600 steps)" in readme
  sf, cosine = end("mnist1d", 800)
  assert f"(test loss {sf:.3f} against {cosine:.3f} at T = 800 steps)" in (
      readme)
  row = COMMITTED["tasks"]["mnist1d"]["weight_decay"]["rows"][-1]
  assert row["sf_adamw"]["setting"] == key
  assert (f"closes most of it ({row['sf_adamw']['test_loss']['mean']:.3f} "
          f"against {row['adamw_cosine']['test_loss']['mean']:.3f})") in readme


def test_committed_weight_decay_choices_are_inside_their_grids():
  for task in ("mnist1d", "charlm"):
    decay = COMMITTED["tasks"][task]["weight_decay"]
    for row in decay["rows"]:
      for m in ("adamw_cosine", "sf_adamw"):
        entry = row[m]
        assert not entry["weight_decay_at_grid_edge"], (task, row["stop"], m)
        assert not entry["lr_at_grid_edge"], (task, row["stop"], m)
        assert entry["seeds"] == [0, 1, 2]
    for row in decay["long_rows"]:
      for m in ("adamw_cosine", "sf_adamw"):
        entry = row[m]
        assert entry["lr_grid"][0] < entry["lr"] < entry["lr_grid"][-1], (
            task, row["stop"], m)
        assert entry["seeds"] == [0, 1, 2]
      # At 4T each method keeps the weight decay it chose at T.
      assert row["sf_adamw"]["setting"] == study._key(
          decay["rows"][-1]["sf_adamw"]["config"])
      assert row["adamw_cosine"]["setting"] == study._key(
          decay["rows"][-1]["adamw_cosine"]["config"])
