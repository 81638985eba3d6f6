"""The step-time benchmark runs end to end on tiny sizes and writes sane output.

No timing is asserted (the suite runs on shared machines); only the shape and
consistency of what the script reports.
"""

import importlib.util
import json
import math
import os
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks",
                     "step_time.py")


@pytest.fixture(scope="module")
def step_time():
  spec = importlib.util.spec_from_file_location("step_time", _PATH)
  module = importlib.util.module_from_spec(spec)
  # dataclasses look their module up in sys.modules.
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def quick_run(step_time, tmp_path_factory):
  out = tmp_path_factory.mktemp("results")
  assert step_time.main([
      "--quick", "--sizes", "4k", "--leaves", "1", "3", "--reps", "2",
      "--steps", "1", "--out", str(out), "--no-progress",
  ]) == 0
  stem = out / f"step_time-{step_time.device_name()}"
  with open(f"{stem}.json") as f:
    return step_time, json.load(f), stem


def test_every_optimizer_is_timed_or_reported_skipped(quick_run):
  step_time, result, _ = quick_run
  timed = {r["optimizer"] for r in result["records"]}
  for pair in step_time.PAIRS:
    for opt in pair:
      assert (opt.name in timed) != (opt.name in result["skipped"]), opt.name
  # The optax counterparts always exist, so they are always timed.
  assert {pair[1].name for pair in step_time.PAIRS} <= timed
  assert "floor" in timed


def test_every_configuration_has_a_floor_and_both_leaf_counts(quick_run):
  _, result, _ = quick_run
  configs = {(r["pair"], r["size"], r["leaves"], r["dtype"])
             for r in result["records"]}
  floors = {(r["pair"], r["size"], r["leaves"], r["dtype"])
            for r in result["records"] if r["optimizer"] == "floor"}
  assert configs == floors
  assert {c[2] for c in configs} == {1, 3}
  assert {c[1] for c in configs} == {4096}


def test_records_are_consistent(quick_run):
  _, result, _ = quick_run
  for r in result["records"]:
    assert r["step_ms"] > 0 and math.isfinite(r["step_ms"])
    assert r["iqr_ms"][0] <= r["step_ms"] <= r["iqr_ms"][1]
    assert r["efficiency"] > 0 and math.isfinite(r["efficiency"])
    assert r["passes"] in (3, 5, 7, 9)
    assert r["temp_bytes"] >= 0 and r["param_sized_copies"] >= 0
    if r["optimizer"] == "floor":
      assert r["efficiency"] == pytest.approx(1.0)
      # The streaming update is done in place: no scratch, no copy.
      assert r["temp_bytes"] == 0 and r["param_sized_copies"] == 0


def test_writes_metadata_and_plot(quick_run):
  _, result, stem = quick_run
  assert result["meta"]["jax"] and result["meta"]["reps"] == 2
  assert os.path.getsize(f"{stem}.png") > 1000


def test_flatten_times_each_optfree_optimizer_under_optax_flatten(
    step_time, tmp_path):
  assert step_time.main([
      "--sizes", "4k", "--leaves", "3", "--dtypes", "float32", "--only",
      "lion", "--flatten", "--reps", "1", "--steps", "1", "--out",
      str(tmp_path), "--no-progress",
  ]) == 0
  with open(tmp_path / f"step_time-{step_time.device_name()}-flatten.json") as f:
    timed = {r["optimizer"] for r in json.load(f)["records"]}
  assert timed == {"floor", "lion", "flatten(lion)", "optax.lion"}


def test_optfree_steps_peak_at_params_grads_and_state(quick_run):
  step_time, result, _ = quick_run
  mine = {pair[0].name for pair in step_time.PAIRS}
  for r in result["records"]:
    peak = step_time.peak_in_params(r)
    if r["optimizer"] == "floor":
      assert peak == pytest.approx(2.0, abs=0.1)  # a, b; a updated in place
    elif r["optimizer"] in mine:
      # passes = 2 x state buffers + 3, the buffers = params + grads + state;
      # the margin is the scalar state (at 4k params); a buffer would be 1.
      expected = (r["passes"] + 1) / 2
      if r["optimizer"] == "schedule_free_plus":
        # On XLA:CPU it keeps a copy of z (tests/test_step_memory.py,
        # SCHEDULE_FREE_PLUS_ON_CPU), and with several leaves up to one
        # buffer more, as measured (the sweep's "temps": 1-2 in float32).
        assert expected + 0.9 <= peak <= expected + 2.1, r
        continue
      assert peak == pytest.approx(expected, abs=0.1), r


def test_only_merges_into_an_existing_results_json(step_time, tmp_path):
  def run(*only):
    assert step_time.main([
        "--sizes", "4k", "--leaves", "1", "--dtypes", "float32", "--only",
        *only, "--reps", "1", "--steps", "1", "--out", str(tmp_path),
        "--no-progress"]) == 0
    with open(tmp_path / f"step_time-{step_time.device_name()}.json") as f:
      return json.load(f)

  first = run("lion", "adabound")
  lion = [r for r in first["records"] if r["pair"] == "lion"]
  merged = run("adabound")
  assert {r["pair"] for r in merged["records"]} == {"lion", "adabound"}
  # The records of the pair not rerun stay as they were.
  assert [r for r in merged["records"] if r["pair"] == "lion"] == lion
  assert merged["meta"]["command"] == first["meta"]["command"]
  assert [run["only"] for run in merged["meta"]["merged"]] == [["adabound"]]
  assert [run["only"] for run in run("adabound")["meta"]["merged"]] == [
      ["adabound"]]


def test_bandwidth_fraction_is_reported_against_the_given_peak(
    step_time, tmp_path):
  assert step_time.main([
      "--sizes", "4k", "--leaves", "1", "--dtypes", "float32", "--only",
      "lion", "--peak-gbps", "50", "--reps", "1", "--steps", "1", "--out",
      str(tmp_path), "--no-progress",
  ]) == 0
  with open(tmp_path / f"step_time-{step_time.device_name()}.json") as f:
    result = json.load(f)
  assert result["meta"]["peak_gbps"] == 50
  for r in result["records"]:
    assert r["bandwidth_fraction"] == pytest.approx(r["gbps"] / 50)


PERFORMANCE_GUIDE = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "docs", "guides",
    "performance.md")


def test_performance_guide_speed_table_is_the_committed_sweep(step_time):
  # The guide's ranges are what summary() computes from the committed JSON,
  # so a re-measured sweep cannot leave stale figures behind.
  root = os.path.dirname(os.path.dirname(__file__))
  with open(os.path.join(root, "benchmarks", "results",
                         "step_time-cpu.json")) as f:
    expected = step_time.summary(json.load(f)["records"])
  with open(PERFORMANCE_GUIDE) as f:
    speed = f.read().split("\n## Speed\n", 1)[1]
  rows = {}
  for line in speed.splitlines():
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    if len(cells) == 4 and cells[0].startswith("`"):
      rows[cells[0].strip("`")] = cells[2:]
  assert sorted(rows) == sorted({pair for pair, _ in expected})
  for pair, (float32, bfloat16) in rows.items():
    for dtype, cell in (("float32", float32), ("bfloat16", bfloat16)):
      assert cell.replace("*", "") == expected[(pair, dtype)], (pair, dtype)


def test_performance_guide_flatten_table_is_the_committed_flatten_sweep():
  root = os.path.dirname(os.path.dirname(__file__))
  with open(os.path.join(root, "benchmarks", "results",
                         "step_time-cpu-flatten.json")) as f:
    records = json.load(f)["records"]
  step_ms = {(r["optimizer"], r["pair"], r["leaves"]): r["step_ms"]
             for r in records}
  with open(PERFORMANCE_GUIDE) as f:
    flatten = f.read().split("`optax.flatten(tx)`", 1)[1]
  rows = [[cell.strip() for cell in line.strip("|").split("|")]
          for line in flatten.splitlines() if line.startswith("| `")]
  assert rows
  for name, *cells in rows:
    pair = name.strip("`")
    counterpart, = {k[0] for k in step_ms if k[1] == pair} - {
        "floor", pair, f"flatten({pair})"}
    for leaves, cell in zip((512, 4096), cells, strict=True):
      optax_ms = step_ms[(counterpart, pair, leaves)]
      assert cell == (
          f"{optax_ms / step_ms[(pair, pair, leaves)]:.2f}x / "
          f"{optax_ms / step_ms[(f'flatten({pair})', pair, leaves)]:.2f}x"
      ), (pair, leaves)


def test_headline_speedups_are_the_committed_sweep():
  # README and the performance guide quote the 16M-param, 64-leaf, float32
  # ratios to optax; they must be what the committed sweep measured.
  root = os.path.dirname(os.path.dirname(__file__))
  with open(os.path.join(root, "benchmarks", "results",
                         "step_time-cpu.json")) as f:
    records = json.load(f)["records"]
  step_ms = {(r["pair"], r["optimizer"]): r["step_ms"] for r in records
             if (r["size"], r["leaves"], r["dtype"]) == (2**24, 64, "float32")}

  def speedup(pair):
    counterpart, = {opt for p, opt in step_ms if p == pair} - {pair, "floor"}
    return step_ms[(pair, counterpart)] / step_ms[(pair, pair)]

  headline = ", ".join(
      f"{label} {speedup(pair):.1f}x" for label, pair in (
          ("SF-SGD", "schedule_free_sgd"), ("SF-AdamW", "schedule_free_adamw")))
  headline += f" and Lion {speedup('lion'):.1f}x optax's speed"
  level = f"({speedup('adabound'):.2f}x, {speedup('amsbound'):.2f}x)"
  with open(PERFORMANCE_GUIDE) as f:
    guide = " ".join(f.read().split())
  with open(os.path.join(root, "README.md")) as f:
    readme = " ".join(f.read().split())
  assert headline in guide and level in guide
  assert headline in readme


def test_rounding_times_each_optfree_optimizer_against_nearest(
    step_time, tmp_path):
  assert step_time.main([
      "--rounding", "--sizes", "4k", "--leaves", "2", "--only", "lion",
      "--reps", "1", "--steps", "1", "--out", str(tmp_path), "--no-progress",
  ]) == 0
  name = f"step_time-{step_time.device_name()}-rounding.json"
  with open(tmp_path / name) as f:
    records = json.load(f)["records"]
  assert {r["optimizer"] for r in records} == {
      "floor", "lion+sr", "lion", "stochastic_rounding(optax.adam)",
      "optax.adam"}
  assert {r["dtype"] for r in records} == {"bfloat16"}


def test_constant_bits_ablation_is_timed_beside_each_stochastic_step(
    step_time, low_precision, tmp_path):
  assert step_time.main([
      "--rounding", "--constant-bits", "--sizes", "4k", "--leaves", "2",
      "--only", "lion", "--reps", "1", "--steps", "1", "--out",
      str(tmp_path), "--no-progress",
  ]) == 0
  name = f"step_time-{step_time.device_name()}-rounding-constant-bits.json"
  with open(tmp_path / name) as f:
    records = json.load(f)["records"]
  assert {(r["optimizer"], r["pair"]) for r in records
          if r["optimizer"] != "floor"} == {
      ("lion+sr", "lion+sr"), ("lion", "lion+sr"),
      ("lion+sr(constant bits)", "lion+sr(constant bits)"),
      ("lion", "lion+sr(constant bits)"),
      ("stochastic_rounding(optax.adam)", "stochastic_rounding(optax.adam)"),
      ("optax.adam", "stochastic_rounding(optax.adam)"),
      ("stochastic_rounding(optax.adam)(constant bits)",
       "stochastic_rounding(optax.adam)(constant bits)"),
      ("optax.adam", "stochastic_rounding(optax.adam)(constant bits)")}
  # The docs' table gives both ratios of each optimizer from this one run.
  table = low_precision.markdown(tmp_path, [])
  assert re.search(r"\n\| lion\+sr \| [\d.]+-[\d.]+x \| [\d.]+-[\d.]+x \|\n",
                   table)


def _hash_multiplies(transform, params):
  state = transform.init(params)

  def step(params, state):
    updates, state = transform.update(params, state, params)
    return optax.apply_updates(params, updates), state

  text = jax.jit(step).lower(params, state).compile().as_text()
  # The hash multiplies uint32 arrays; the rounding itself does not.
  return len(re.findall(r"= u32\[\d+\]\{0\} multiply\(", text))


def test_constant_bits_drop_the_hash(step_time):
  params = jnp.linspace(-1, 1, 4096, dtype=jnp.bfloat16)
  make = lambda: optfree.lion(1e-3, rounding="stochastic")  # noqa: E731
  constant = step_time._with_constant_bits(make)()
  assert _hash_multiplies(make(), params) > 0
  assert _hash_multiplies(constant, params) == 0


@pytest.fixture(scope="module")
def low_precision():
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "benchmarks", "low_precision.py")
  spec = importlib.util.spec_from_file_location("low_precision", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_low_precision_quick_run_reports_every_setting(low_precision,
                                                       tmp_path):
  reports = low_precision.main([
      "--quick", "--tasks", "regression,mnist1d", "--optimizers",
      "sf_adamw", "--out-dir", str(tmp_path)])
  for task in ("regression", "mnist1d"):
    with open(tmp_path / f"low_precision-{task}.json") as f:
      report = json.load(f)
    assert report == json.loads(json.dumps(reports[task]))
    by_config = report["tasks"][task]["optimizers"]["sf_adamw"]
    assert set(by_config) == set(low_precision.CONFIGS)
    for entry in by_config.values():
      assert math.isfinite(entry["final_test_loss_mean"])
    assert by_config["float32"]["loss_over_float32"] == 1.0
    # Params + state: SF-AdamW holds y, z, nu; all bfloat16 halves them,
    # float32 state keeps z, nu at 4 bytes (plus scalars).
    assert by_config["bf16_sr"]["bytes_over_float32"] == pytest.approx(
        0.5, abs=0.01)
    assert by_config["bf16_sr_f32_state"]["bytes_over_float32"] == (
        pytest.approx(5 / 6, abs=0.01))
    assert os.path.getsize(tmp_path / f"low_precision-{task}.png") > 1000
  with open(tmp_path / "low_precision-bits.json") as f:
    bits = json.load(f)["bits"]
  assert set(bits["ms"]) == {"nearest", "hash", "threefry", "rbg"}
  assert abs(bits["hash_stats"]["mean (0.5)"] - 0.5) < 0.01


def test_the_low_precision_guide_shows_the_committed_results(low_precision):
  # Every line --markdown prints from benchmarks/results is in the guide.
  tables = low_precision.markdown(low_precision.RESULTS,
                                  ["charlm", "mnist1d", "regression"])
  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs",
                         "guides", "low_precision.md")) as f:
    guide = f.read()
  lines = [line for line in tables.splitlines() if line]
  assert len(lines) > 40
  assert [line for line in lines if line not in guide] == []


def test_low_precision_tables_say_which_seed_diverged(low_precision, tmp_path):
  """The issue: the guide's MNIST-1D table had a cell reading
  "nan (nanx, 0.75)". A diverged seed is named; the cell gives the rest."""
  def entry(losses, bytes_over=1.0):
    return {"final_test_loss_per_seed": losses,
            "final_test_loss_mean": float(np.mean(losses)),
            "param_bytes": 1, "state_bytes": 1}

  base = [1.0, 2.0, 4.0]
  by_config = {config: entry(base) for config in low_precision.CONFIGS}
  by_config["bf16_sr"] = entry([1.5, float("nan"), 2.0])
  report = {"seeds": [3, 5, 8], "optimizers": {"opt": by_config}}
  low_precision.add_ratios(report)
  (tmp_path / "low_precision-toy.json").write_text(
      json.dumps({"tasks": {"toy": report}}))
  table = low_precision.markdown(tmp_path, ["toy"])
  row, = [line for line in table.splitlines() if line.startswith("| opt |")]
  assert "nan" not in row.lower().replace("(nan)", "")
  # Seeds 3 and 8: ratios 1.5 and 0.5, mean 1.0, standard error 0.5.
  assert ("| seed 5 diverged (NaN); the other 2: 1.75 (1.000x ±0.500, 1.00) |"
          in row)


def test_the_committed_low_precision_tables_have_no_nan_cell(low_precision):
  tables = low_precision.markdown(low_precision.RESULTS,
                                  ["charlm", "mnist1d", "regression"])
  for line in tables.splitlines():
    assert "nanx" not in line and "| nan" not in line, line
  assert ("seed 7 diverged (NaN); the other 9: " in tables)


# ---------------------------------------------- benchmarks/torch_anchor.py

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_RESULTS = _ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def torch_anchor():
  spec = importlib.util.spec_from_file_location(
      "torch_anchor", _ROOT / "benchmarks" / "torch_anchor.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def anchor_dump(torch_anchor, tmp_path_factory):
  """Both quick tasks dumped for 6 steps (24 with the 4T run), seeds 0, 1."""
  quality = torch_anchor._quality()  # pylint: disable=protected-access
  out = tmp_path_factory.mktemp("anchor")
  dumps = {}
  for name in ("mnist1d", "charlm"):
    settings = dict(quality.QUICK[name], steps=6, eval_every=3)
    dumps[name] = torch_anchor.dump(name, settings, [0, 1], True,
                                    out / f"{name}.npz")
  return quality, dumps


@pytest.mark.parametrize("name", ["mnist1d", "charlm"])
def test_torch_anchor_draws_the_batches_that_quality_runs_draw(
    torch_anchor, anchor_dump, name):
  quality, _ = anchor_dump
  task = quality.TASK_BUILDERS[name](**quality.QUICK[name]["model"])
  train = task.train_arrays()
  for seed in (0, 3):
    indices = torch_anchor.batch_indices(task, seed, 5)
    # The data key of _demo_models.Runs, folded with the step as in its loop.
    data_key = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(
        jnp.asarray([seed]))[0, 1]
    for step in (0, 4):
      x, y = task.sample_batch(train, jax.random.fold_in(data_key, step))
      if task.is_language_model:
        window = indices[step][:, None] + np.arange(x.shape[1] + 1)
        np.testing.assert_array_equal(np.asarray(x), task.data.x[window[:, :-1]])
        np.testing.assert_array_equal(np.asarray(y), task.data.x[window[:, 1:]])
      else:
        np.testing.assert_array_equal(np.asarray(x), task.data.x[indices[step]])
        np.testing.assert_array_equal(np.asarray(y), task.data.y[indices[step]])


def test_torch_anchor_dump_holds_data_batches_and_protocol(torch_anchor,
                                                           anchor_dump):
  quality, dumps = anchor_dump
  for name, path in dumps.items():
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    settings = dict(quality.QUICK[name], steps=6, eval_every=3)
    task = quality.TASK_BUILDERS[name](**settings["model"])
    assert {k: meta[k] for k in quality.PROTOCOL_KEYS} == quality.protocol(
        task, settings, [0, 1], True)
    assert data["batches"].shape == (2, torch_anchor.LONG * 6,
                                     task.batch_size)
    np.testing.assert_array_equal(data["x_test"], task.data.x_test)
    assert ("y" in data.files) == (name == "mnist1d")


def test_torch_anchor_records_quality_stops(torch_anchor):
  quality = torch_anchor._quality()  # pylint: disable=protected-access
  assert torch_anchor.LONG == quality.LONG
  assert torch_anchor.stops(800) == quality.stops(800, long=True)
  assert torch_anchor.record_steps(8, 4) == [2, 4, 8, 24, 32]


def test_torch_anchor_trains_in_torch_and_writes_quality_json(
    torch_anchor, anchor_dump, tmp_path):
  pytest.importorskip("torch", reason="the torch anchor trains in torch "
                      "(extra `reference`); its data and batches are tested "
                      "without it")
  pytest.importorskip("prodigyplus", reason="needs prodigy-plus-schedule-free "
                      "2.0.1 (extra `reference`)")
  quality, dumps = anchor_dump
  for name, path in dumps.items():
    out = tmp_path / f"{name}.json"
    torch_anchor.main(["--train", str(path), "--out", str(out),
                       "--threads", "1"])
    _check_anchor(torch_anchor, json.loads(out.read_text()))


def _check_anchor(torch_anchor, anchor):
  steps = anchor["config"]["steps"]
  assert anchor["num_params"] == anchor["num_params_jax"]
  assert anchor["optimizer"]["package"] == "prodigy-plus-schedule-free==2.0.1"
  assert anchor["versions"]["prodigy-plus-schedule-free"] == "2.0.1"
  assert anchor["curve"]["step"] == torch_anchor.record_steps(
      steps, anchor["config"]["eval_every"])
  assert sorted(anchor["at_horizon"], key=int) == [
      str(s) for s in torch_anchor.stops(steps)]
  assert anchor["final"] == anchor["at_horizon"][str(steps)]
  for entry in anchor["at_horizon"].values():
    assert len(entry["test_loss_per_seed"]) == len(anchor["config"]["seeds"])
    assert entry["test_loss_mean"] == pytest.approx(
        np.mean(entry["test_loss_per_seed"]))
  assert anchor["command"].startswith("python benchmarks/torch_anchor.py")


@pytest.mark.parametrize("name", ["mnist1d", "charlm"])
def test_committed_torch_anchor_matches_the_quality_run(torch_anchor, name):
  """The committed anchor ran quality.py's protocol; until it is committed,
  the quality guide says it has not run (tests/test_quality.py checks the
  guide's block against these files)."""
  import quality  # pylint: disable=import-outside-toplevel
  path = quality.anchor_path(_RESULTS, name)
  if not path.exists():
    assert "not run yet" in quality.docs_blocks(_RESULTS)["docs"] or (
        "Pending" in quality.docs_blocks(_RESULTS)["docs"])
    return
  anchor = json.loads(path.read_text())
  _check_anchor(torch_anchor, anchor)
  report = json.loads((_RESULTS / f"quality-{name}.json").read_text())
  quality.check_anchor_protocol(report, anchor)
  assert not anchor["config"]["quick"]


# benchmarks/compiled_step.py: the TPU v5e program of each step. Reading its
# JSON and HLO needs no libtpu; compiling does (skipped without it).


@pytest.fixture(scope="module")
def compiled_step():
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "benchmarks", "compiled_step.py")
  spec = importlib.util.spec_from_file_location("compiled_step", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


# A donated step as XLA:TPU lays it out (shapes and opcodes as as_text()
# prints them, names shortened): x (2 MiB of float32) is staged into VMEM
# (S(1)) by an asynchronous copy, y in two slices; one kernel reads both
# staged buffers and a scalar in HBM, writes y's update to HBM and x's to
# VMEM, which a copy then writes back to HBM.
_TPU_HLO = """HloModule jit_step, is_scheduled=true

%fused_computation (param_0: f32[512,1024], param_1: f32[512,1024], param_2: f32[]) -> (f32[512,1024], f32[512,1024]) {
  %param_0 = f32[512,1024]{1,0:T(8,128)} parameter(0)
  ROOT %t = (f32[512,1024]{1,0:T(8,128)}, f32[512,1024]{1,0:T(8,128)}) tuple(%param_0, %param_0)
}

ENTRY %main.1_spmd (x: f32[512,1024], y: f32[512,1024], s: f32[]) -> (f32[512,1024], f32[512,1024]) {
  %s = f32[]{:T(128)} parameter(2), sharding={replicated}
  %y = f32[512,1024]{1,0:T(8,128)} parameter(1), sharding={devices=[4,1]<=[4]}
  %x = f32[512,1024]{1,0:T(8,128)} parameter(0), sharding={devices=[4,1]<=[4]}
  %copy-start = (f32[512,1024]{1,0:T(8,128)S(1)}, f32[512,1024]{1,0:T(8,128)}, u32[]{:S(2)}) copy-start(%x)
  %slice-start = ((f32[512,1024]{1,0:T(8,128)}), f32[256,1024]{1,0:T(8,128)S(1)}, s32[]{:S(2)}) slice-start(%y), slice={[0:256], [0:1024]}
  %slice-start.1 = ((f32[512,1024]{1,0:T(8,128)}), f32[256,1024]{1,0:T(8,128)S(1)}, s32[]{:S(2)}) slice-start(%y), slice={[256:512], [0:1024]}
  %copy-done = f32[512,1024]{1,0:T(8,128)S(1)} copy-done(%copy-start)
  %slice-done = f32[256,1024]{1,0:T(8,128)S(1)} slice-done(%slice-start)
  %slice-done.1 = f32[256,1024]{1,0:T(8,128)S(1)} slice-done(%slice-start.1)
  %custom-call = f32[512,1024]{1,0:T(8,128)S(1)} custom-call(%slice-done, %slice-done.1), custom_call_target="ConcatBitcast"
  %fusion = (f32[512,1024]{1,0:T(8,128)S(1)}, f32[512,1024]{1,0:T(8,128)}) fusion(%copy-done, %custom-call, %s, %copy-done), kind=kLoop, calls=%fused_computation
  %get-tuple-element = f32[512,1024]{1,0:T(8,128)S(1)} get-tuple-element(%fusion), index=0
  %get-tuple-element.1 = f32[512,1024]{1,0:T(8,128)} get-tuple-element(%fusion), index=1
  %copy-start.1 = (f32[512,1024]{1,0:T(8,128)}, f32[512,1024]{1,0:T(8,128)S(1)}, u32[]{:S(2)}) copy-start(%get-tuple-element)
  %copy-done.1 = f32[512,1024]{1,0:T(8,128)} copy-done(%copy-start.1)
  %all-reduce = f32[]{:T(128)} all-reduce(%s), channel_id=1, replica_groups=[1,4]<=[4], use_global_device_ids=true, to_apply=%add
  ROOT %tuple = (f32[512,1024]{1,0:T(8,128)}, f32[512,1024]{1,0:T(8,128)}) tuple(%copy-done.1, %get-tuple-element.1)
}
"""


def test_compiled_step_reads_hbm_traffic_from_the_hlo(compiled_step):
  buffer = 512 * 1024 * 4
  instructions = compiled_step.parse_entry(_TPU_HLO)
  assert [i.opcode for i in instructions][:4] == [
      "parameter", "parameter", "parameter", "copy-start"]
  read, written = compiled_step.traffic(instructions)
  # x and y once each (the staging copies), the scalar 4 bytes (its read
  # by the all-reduce too); y's update by the kernel, x's by the copy back.
  assert (read, written) == (2 * buffer + 8, 2 * buffer + 4)
  kernels = compiled_step.kernels(instructions, {(512, 1024)})
  # The fusion reads x and y (x twice as an operand: one buffer) and writes
  # both; the all-reduce is no param-sized kernel.
  assert kernels == (1, 2, 2)
  assert compiled_step.collectives(_TPU_HLO) == [
      dict(op="all-reduce", shape=["f32[]"], bytes=4)]


def test_compiled_step_says_it_needs_libtpu(compiled_step, monkeypatch,
                                            capsys):
  monkeypatch.setattr(compiled_step, "has_libtpu", lambda: False)
  assert compiled_step.main(["--quick"]) == 2
  assert "needs libtpu" in capsys.readouterr().err


def test_compiled_step_shards_the_largest_axis(compiled_step):
  spec = compiled_step.leaf_spec
  assert spec((1024, 1536), 4) == jax.sharding.PartitionSpec(None, "fsdp")
  assert spec((2048, 1024), 4) == jax.sharding.PartitionSpec("fsdp", None)
  assert spec((), 4) == jax.sharding.PartitionSpec()
  assert spec((6,), 4) == jax.sharding.PartitionSpec()  # 6 does not split
  assert spec((2048, 1024), 1) == jax.sharding.PartitionSpec()


def test_compiled_step_quick_run(compiled_step, tmp_path):
  pytest.importorskip(
      "libtpu", reason="compiling for TPU needs libtpu, which the default "
      "dev venv does not install (docs/guides/performance.md)")
  assert compiled_step.main(["--quick", "--out", str(tmp_path),
                             "--no-progress"]) == 0
  with open(tmp_path / "compiled_step-tpu-v5e-quick.json") as f:
    result = json.load(f)
  assert result["meta"]["libtpu"] and result["meta"]["hbm_gbps"] == 819
  records = result["records"]
  assert {(r["optimizer"], r["dtype"], r["rounding"]) for r in records} == {
      (name, dtype, rounding) for name in compiled_step.QUICK
      for dtype, rounding in compiled_step.CASES}
  params = result["meta"]["params"]
  for r in records:
    assert r["topology"] == "2x2 FSDP" and r["chips"] == 4
    assert r["floor_us"] == pytest.approx(r["floor_bytes"] / 819e3)
    if r["optimizer"] == "optax.adamw" and r["dtype"] == "float32":
      # Per chip: read params, grads, mu, nu; write params, mu, nu; in
      # float32, plus the count.
      assert r["floor_bytes"] == pytest.approx(7 * 4 * params / 4, abs=64)


def test_performance_guide_tpu_table_is_the_committed_results(compiled_step):
  # Every line --markdown prints from the committed JSON is in the guide,
  # and the JSON covers every optimizer of the tests' table.
  with open(compiled_step.results_path(compiled_step.RESULTS_DIR,
                                       quick=False)) as f:
    records = json.load(f)["records"]
  expected = {(name, topology, dtype, rounding)
              for name in [o.name for o in compiled_step.optfree_optimizers()]
              + [o.name for o in compiled_step.OPTAX]
              for topology in compiled_step.TOPOLOGIES
              for dtype, rounding in compiled_step.CASES}
  found = {(r["optimizer"], r["topology"], r["dtype"], r["rounding"])
           for r in records}
  assert not expected - found, (
      "rerun python benchmarks/compiled_step.py in the TPU venv for: "
      f"{sorted(expected - found)}")
  with open(PERFORMANCE_GUIDE) as f:
    guide = f.read()
  lines = compiled_step.markdown(records).splitlines()
  assert [line for line in lines if line not in guide] == []
