"""Low-precision training: bfloat16 params and state, nearest vs stochastic.

Each optimizer is trained in four precision settings:

- ``float32``: float32 params and state (the baseline);
- ``bf16_nearest``: bfloat16 params and state, every write rounded to nearest
  (what any optax optimizer does with bfloat16 params today);
- ``bf16_sr_f32_state``: bfloat16 params with stochastic rounding, float32
  state (``state_dtype`` / ``mu_dtype``; AdaBound's second moment follows the
  params' dtype and stays bfloat16);
- ``bf16_sr``: bfloat16 params and state, all rounded stochastically.

``adamw_cosine`` (optax.adamw + warmup-cosine) gets stochastic rounding from
``optfree.stochastic_rounding``, whose inner state is float32 (``bf16_sr``
passes ``mu_dtype=bfloat16`` to optax.adamw, so only its first moment is
bfloat16 there).

Tasks: noisy linear regression (256 weights of magnitude about 10, batch 64,
noise 0.1, 8000 steps; the loss floor is 0.005), and the MNIST-1D CNN and the
character-level transformer of ``benchmarks/quality.py`` (same settings,
learning rates: the best of quality.py's grid from its committed JSON). The
model computes in float32 from the stored params in every setting, so only
the storage and the optimizer's writes differ. Reported per optimizer and
setting: the final test loss (mean and std over seeds; Schedule-Free at
``eval_params``), its ratio to float32's, and the bytes of params + state.

Also measured (section ``bits``): the time of one stochastic rounding of 1M
float32 values with the counter-based hash of ``optfree.rounding`` against
``jax.random.bits`` (threefry and rbg), and simple statistics of the hash's
bits. The step time of stochastic over nearest rounding comes from
``benchmarks/step_time.py --rounding`` (its JSON is read if present).

  python benchmarks/low_precision.py            # the full run
  python benchmarks/low_precision.py --quick    # a smoke run (a minute)
  python benchmarks/low_precision.py --markdown # the docs' tables

Writes benchmarks/results/low_precision-<task>.json and .png per task, and
low_precision-bits.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = pathlib.Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))

# pylint: disable=wrong-import-position,protected-access
import optfree  # noqa: E402
from optfree import _demo_models  # noqa: E402
from optfree import rounding  # noqa: E402
import quality  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

CONFIGS = ("float32", "bf16_nearest", "bf16_sr_f32_state", "bf16_sr")
CONFIG_LABELS = {
    "float32": "float32 params and state",
    "bf16_nearest": "bf16 params and state, nearest",
    "bf16_sr_f32_state": "bf16 params (stochastic), f32 state",
    "bf16_sr": "bf16 params and state, stochastic",
}
OPTIMIZERS = ("sf_adamw", "sf_sgd", "lion", "adabound", "amsbound",
              "adamw_cosine")
# amsbound trains as adabound does on these tasks (quality.py): left out of
# the default set for time.
DEFAULT_OPTIMIZERS = ("sf_adamw", "sf_sgd", "lion", "adabound",
                      "adamw_cosine")
QUICK_OPTIMIZERS = ("sf_adamw", "lion")
# The name of each optfree optimizer's state-dtype option.
STATE_DTYPE_OPTION = {"sf_adamw": "state_dtype", "sf_sgd": "state_dtype",
                      "lion": "mu_dtype", "adabound": "mu_dtype",
                      "amsbound": "mu_dtype"}

# The neural-network tasks: quality.py's models and lengths, evaluated less
# often; the quick run is smaller than quality.py's.
NN_FULL = {name: dict(settings, eval_every=settings["steps"] // 8)
           for name, settings in quality.FULL.items()}
NN_QUICK = {
    "mnist1d": dict(steps=20, eval_every=20, model=dict(
        num_samples=2000, batch_size=32, features=8)),
    "charlm": dict(steps=20, eval_every=20, model=dict(
        context=16, width=8, batch_size=4, max_chars=50_000,
        num_eval_windows=16)),
}
TASK_BUILDERS = quality.TASK_BUILDERS

# Noisy linear regression: the example.
REGRESSION_FULL = dict(dim=256, batch=64, steps=8000, eval_every=1000,
                       noise=0.1, magnitude=10.0, test_size=4096)
REGRESSION_QUICK = dict(REGRESSION_FULL, steps=400, eval_every=200)
REGRESSION_LR = {"sf_adamw": 3e-2, "sf_sgd": 0.1, "lion": 3e-3,
                 "adabound": 1e-2, "amsbound": 1e-2, "adamw_cosine": 3e-2}


def make_optimizer(name: str, config: str, lr, total_steps: int):
  """The optimizer ``name`` of _demo_models in precision setting ``config``."""
  options = {}
  if config in ("bf16_sr", "bf16_sr_f32_state"):
    options["rounding"] = "stochastic"
  state_dtype = jnp.float32 if config == "bf16_sr_f32_state" else None
  if name == "adamw_cosine":
    if "rounding" not in options:
      return _demo_models.OPTIMIZERS[name].make(lr, total_steps)
    schedule = _demo_models._warmup_cosine(lr, total_steps)
    inner = optax.adamw(
        schedule, weight_decay=1e-4,
        mu_dtype=jnp.bfloat16 if config == "bf16_sr" else None)
    return optfree.stochastic_rounding(inner)
  if state_dtype is not None:
    options[STATE_DTYPE_OPTION[name]] = state_dtype
  return _demo_models.OPTIMIZERS[name].make(lr, total_steps, **options)


def param_dtype(config: str):
  return None if config == "float32" else jnp.bfloat16


def _spec(name: str, config: str) -> _demo_models.OptimizerSpec:
  base = _demo_models.OPTIMIZERS[name]
  return _demo_models.OptimizerSpec(
      f"{name}[{config}]", base.label,
      functools.partial(make_optimizer, name, config),
      base.learning_rate, base.lr_grid, base.schedule_free)


def nbytes(tree) -> int:
  return int(sum(leaf.size * jnp.dtype(leaf.dtype).itemsize
                 for leaf in jax.tree.leaves(tree)))


def memory(name: str, config: str, params_shape) -> dict[str, int]:
  """Bytes of the params and of the optimizer state in ``config``."""
  dtype = param_dtype(config)
  params = jax.tree.map(
      lambda p: jax.ShapeDtypeStruct(p.shape, dtype or p.dtype), params_shape)
  state = jax.eval_shape(make_optimizer(name, config, 1e-3, 100).init, params)
  return {"param_bytes": nbytes(params), "state_bytes": nbytes(state)}


# ------------------------------------------------------------------ regression


def regression_problem(dim, noise, magnitude, test_size, **_):
  rng = np.random.default_rng(0)
  signs = rng.choice([-1.0, 1.0], dim)
  w_true = jnp.asarray(signs * magnitude * rng.uniform(0.8, 1.2, dim),
                       jnp.float32)
  x_test = jnp.asarray(rng.normal(size=(test_size, dim)), jnp.float32)
  y_test = x_test @ w_true + noise * jnp.asarray(
      rng.normal(size=test_size), jnp.float32)
  return w_true, x_test, y_test


def _regression_loss(w, x, y):
  return 0.5 * jnp.mean((x @ w.astype(jnp.float32) - y) ** 2)


def run_regression(name, config, seeds, settings):
  """Test loss at every ``eval_every`` steps, per seed (vmapped)."""
  w_true, x_test, y_test = regression_problem(**settings)
  dim, batch, noise = settings["dim"], settings["batch"], settings["noise"]
  steps, every = settings["steps"], settings["eval_every"]
  schedule_free = _demo_models.OPTIMIZERS[name].schedule_free
  tx = make_optimizer(name, config, REGRESSION_LR[name], steps)
  dtype = param_dtype(config) or jnp.float32

  def step(carry, index):
    w, state, key = carry
    x_key, noise_key = jax.random.split(jax.random.fold_in(key, index))
    x = jax.random.normal(x_key, (batch, dim))
    y = x @ w_true + noise * jax.random.normal(noise_key, (batch,))
    grads = jax.grad(_regression_loss)(w, x, y)
    updates, state = tx.update(grads, state, w)
    return (optax.apply_updates(w, updates), state, key), None

  def evaluate(w, state):
    point = optfree.eval_params(state, w) if schedule_free else w
    return _regression_loss(point, x_test, y_test)

  @jax.jit
  @jax.vmap
  def chunk(carry, start):
    carry, _ = jax.lax.scan(step, carry, start + jnp.arange(every))
    return carry, evaluate(carry[0], carry[1])

  w = jnp.zeros((len(seeds), dim), dtype)
  carry = (w, jax.vmap(tx.init)(w),
           jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)))
  curve = {"step": [], "test_loss": []}
  for start in range(0, steps, every):
    carry, loss = chunk(carry, jnp.full(len(seeds), start))
    curve["step"].append(start + every)
    curve["test_loss"].append(np.asarray(loss).tolist())
  return curve, jax.ShapeDtypeStruct((dim,), jnp.float32)


# ------------------------------------------------------------- neural networks


def run_network(task, name, config, seeds, settings, learning_rate):
  runs = _demo_models.Runs(task, _spec(name, config),
                           [learning_rate] * len(seeds), list(seeds),
                           settings["steps"], param_dtype=param_dtype(config))
  curve = {"step": [], "test_loss": []}
  for stop in range(settings["eval_every"], settings["steps"] + 1,
                    settings["eval_every"]):
    runs.run_chunk(stop - runs.step)
    curve["step"].append(stop)
    curve["test_loss"].append(runs.evaluate()["test_loss"].tolist())
  return curve


def _best_learning_rates(task_name: str) -> dict[str, float]:
  path = RESULTS / f"quality-{task_name}.json"
  if not path.exists():
    return {}
  report = json.loads(path.read_text())
  return {name: r["best_lr"] for name, r in report["optimizers"].items()}


# ------------------------------------------------------------------------ bits


def _median_ms(fn, *args, reps=21):
  jax.block_until_ready(fn(*args, 0))
  times = []
  for rep in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args, rep + 1))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def measure_bits(size: int) -> dict[str, Any]:
  """Time of rounding ``size`` float32 values, per bit source, and how
  uniform and independent the hash's bits look."""
  value = jnp.asarray(np.random.default_rng(0).normal(size=size), jnp.float32)

  def hashed(value, step):
    key = rounding._key(0, step, 3, rounding.PARAMS)
    return rounding.round_to_bfloat16(
        value, rounding.random_bits(key, value.shape))

  def from_jax_random(impl):
    def fn(value, step):
      key = jax.random.fold_in(jax.random.key(0, impl=impl), step)
      return rounding.round_to_bfloat16(
          value, jax.random.bits(key, value.shape, jnp.uint32))
    return fn

  timings = {
      "nearest": _median_ms(jax.jit(lambda v, _: v.astype(jnp.bfloat16)),
                            value),
      "hash": _median_ms(jax.jit(hashed), value),
      "threefry": _median_ms(jax.jit(from_jax_random("threefry2x32")), value),
      "rbg": _median_ms(jax.jit(from_jax_random("rbg")), value),
  }
  # Statistics of the 16 bits the rounding uses, over consecutive steps.
  steps = 8
  bits = np.stack([
      np.asarray(rounding.random_bits(
          rounding._key(0, step, 0, rounding.PARAMS), (size,)) >> 16)
      for step in range(steps)]).astype(np.float64)
  uniform = bits / 2**16
  counts = np.bincount((bits[0] // 2**8).astype(int), minlength=256)
  expected = size / 256
  # Pairs of consecutive elements' top 4 bits: 256 cells, if independent.
  top = (bits[0] // 2**12).astype(int)
  pairs = np.bincount(top[:-1] * 16 + top[1:], minlength=256)
  pairs_expected = (size - 1) / 256
  return {
      "size": size,
      "ms": timings,
      "x_nearest": {k: v / timings["nearest"] for k, v in timings.items()},
      "hash_stats": {
          "mean (0.5)": float(uniform.mean()),
          "variance (1/12 = 0.0833)": float(uniform.var()),
          "chi2_256_bins (255 +- 22.6)": float(
              ((counts - expected) ** 2 / expected).sum()),
          "chi2_consecutive_pairs (255 +- 22.6)": float(
              ((pairs - pairs_expected) ** 2 / pairs_expected).sum()),
          "corr_adjacent_elements": float(
              np.corrcoef(uniform[0, :-1], uniform[0, 1:])[0, 1]),
          "corr_consecutive_steps": float(
              np.corrcoef(uniform[0], uniform[1])[0, 1]),
      },
  }


# ---------------------------------------------------------------------- report


def summarize(curve) -> dict[str, Any]:
  final = np.asarray(curve["test_loss"][-1], np.float64)
  return {"final_test_loss_mean": float(np.mean(final)),
          "final_test_loss_std": float(np.std(final)),
          "final_test_loss_per_seed": final.tolist(),
          "curve": {"step": curve["step"],
                    "test_loss_mean": np.mean(curve["test_loss"],
                                              axis=1).tolist()}}


def paired_ratio(entry: dict[str, Any], base: dict[str, Any]) -> tuple:
  """Mean and standard error over seeds of the per-seed loss ratios.

  A seed fixes the init and the batches in every setting, so a setting and
  its float32 baseline are compared seed by seed: the spread between seeds
  (3-18% of the loss on MNIST-1D) then cancels out of the ratio.
  """
  ratios = (np.asarray(entry["final_test_loss_per_seed"])
            / np.asarray(base["final_test_loss_per_seed"]))
  sem = np.std(ratios, ddof=1) / np.sqrt(len(ratios)) if len(ratios) > 1 else 0
  return float(np.mean(ratios)), float(sem)


def add_ratios(task_report: dict[str, Any]) -> None:
  for name, by_config in task_report["optimizers"].items():
    base = by_config["float32"]
    for entry in by_config.values():
      entry["loss_over_float32"], entry["loss_over_float32_sem"] = (
          paired_ratio(entry, base))
      entry["bytes_over_float32"] = (
          (entry["param_bytes"] + entry["state_bytes"])
          / (base["param_bytes"] + base["state_bytes"]))


def step_time_ratios(path: pathlib.Path) -> dict[str, Any] | None:
  """Each optimizer's step time over its pair's nearest-rounding one.

  From step_time.py's JSON (``--rounding``): every pair there is timed in one
  interleaved loop, e.g. ``lion+sr`` (or ``lion+sr(constant bits)``) with
  ``lion``, so each ratio is of two steps timed side by side.
  """
  if not path.exists():
    return None
  report = json.loads(path.read_text())
  records = [r for r in report["records"] if r["optimizer"] != "floor"]

  def config(record):
    return (record["pair"], record["size"], record["leaves"], record["dtype"])

  nearest = {config(r): r["step_ms"] for r in records
             if r["optimizer"] != r["pair"]}
  ratios = {}
  for r in records:
    if r["optimizer"] == r["pair"] and config(r) in nearest:
      ratios.setdefault(r["pair"], []).append(
          {"size": r["size"], "leaves": r["leaves"], "dtype": r["dtype"],
           "stochastic_over_nearest": r["step_ms"] / nearest[config(r)]})
  return {"command": report["meta"]["command"], "ratios": ratios}


def format_report(report: dict[str, Any]) -> str:
  lines = []
  for task, task_report in report["tasks"].items():
    lines.append(f"\n{task}: final test loss, mean over seeds "
                 f"{task_report['seeds']} (ratio to float32); "
                 "bytes of params + state over float32's")
    header = ["optimizer"] + list(CONFIGS)
    rows = [header]
    for name, by_config in task_report["optimizers"].items():
      rows.append([name] + [
          f"{by_config[c]['final_test_loss_mean']:.4g} "
          f"({by_config[c]['loss_over_float32']:.3f}x, "
          f"{by_config[c]['bytes_over_float32']:.2f}B)"
          if c in by_config else "" for c in CONFIGS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
      lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
  if report.get("bits"):
    bits = report["bits"]
    lines.append(f"\nstochastic rounding of {bits['size']} float32 values, "
                 "ms (x nearest rounding):")
    for source, ms in bits["ms"].items():
      ratio = bits["x_nearest"][source]
      lines.append(f"  {source:9s} {ms:8.3f} ({ratio:.1f}x)")
    lines.append(f"  hash bits: {bits['hash_stats']}")
  return "\n".join(lines)


def _ratio(value: float) -> str:
  return f"{value:.3f}x" if value < 100 else f"{value:.3g}x"


def _cell(entry: dict[str, Any], base: dict[str, Any], seeds: Sequence[int],
          is_base: bool) -> str:
  """One table cell: mean loss (ratio to float32 ± its error, bytes).

  A seed whose run diverged (a non-finite final loss, here or in float32)
  would make the mean NaN; the cell names it and gives the other seeds'.
  """
  losses = entry["final_test_loss_per_seed"]
  base_losses = base["final_test_loss_per_seed"]
  diverged = [seed for seed, loss in zip(seeds, losses)
              if not math.isfinite(loss)]
  prefix = ""
  if diverged or not all(math.isfinite(loss) for loss in base_losses):
    keep = [i for i, (loss, base_loss) in enumerate(zip(losses, base_losses))
            if math.isfinite(loss) and math.isfinite(base_loss)]
    kept = lambda e: {"final_test_loss_per_seed": [  # noqa: E731
        e["final_test_loss_per_seed"][i] for i in keep]}
    ratio, sem = paired_ratio(kept(entry), kept(base))
    mean = float(np.mean(kept(entry)["final_test_loss_per_seed"]))
    if diverged:
      prefix = (f"seed{'s' if len(diverged) > 1 else ''} "
                f"{', '.join(map(str, diverged))} diverged (NaN); the other "
                f"{len(keep)}: ")
  else:
    ratio = entry["loss_over_float32"]
    sem = entry["loss_over_float32_sem"]
    mean = entry["final_test_loss_mean"]
  spread = f" ±{sem:.3f}" if not is_base and ratio < 100 else ""
  return (f"{prefix}{mean:.4g} ({_ratio(ratio)}{spread}, "
          f"{entry['bytes_over_float32']:.2f})")


def markdown(out_dir: pathlib.Path, tasks: Sequence[str]) -> str:
  """The docs' tables, from the JSON files in ``out_dir``."""
  lines = []
  for task in tasks:
    path = out_dir / f"low_precision-{task}.json"
    if not path.exists():
      continue
    task_report = json.loads(path.read_text())["tasks"][task]
    lines += [f"\n{task} (final test loss, mean of seeds "
              f"{task_report['seeds']}; in brackets: ratio to float32, mean "
              "over seeds of each seed's ratio, with its standard error, and "
              "bytes of params + state relative to float32)\n",
              "| optimizer | " + " | ".join(CONFIG_LABELS[c] for c in CONFIGS)
              + " |", "| --- " * (len(CONFIGS) + 1) + "|"]
    for name, by_config in task_report["optimizers"].items():
      cells = [_cell(by_config[c], by_config["float32"], task_report["seeds"],
                     c == "float32") for c in CONFIGS]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
  step_time = step_time_ratios(out_dir / "step_time-cpu-rounding.json")
  if step_time:
    lines += [f"\nstep time, stochastic over nearest rounding (bfloat16, "
              f"`{step_time['command']}`; each size x leaf count)\n",
              "| optimizer | stochastic / nearest step time |",
              "| --- | --- |"]
    for name, ratios in step_time["ratios"].items():
      values = sorted(r["stochastic_over_nearest"] for r in ratios)
      shown = ", ".join(
          f"{r['stochastic_over_nearest']:.2f}x ({r['size'] >> 20}M, "
          f"{r['leaves']} leaves)" for r in ratios)
      lines.append(f"| {name} | {values[0]:.2f}-{values[-1]:.2f}x: {shown} |")
  ablation = step_time_ratios(
      out_dir / "step_time-cpu-rounding-constant-bits.json")
  if ablation:
    span = lambda name: "{:.2f}-{:.2f}x".format(*(  # noqa: E731
        f(r["stochastic_over_nearest"] for r in ablation["ratios"][name])
        for f in (min, max)))
    lines += ["\nstep time over the nearest-rounding step, with the hashed "
              "bits and with the bits replaced by a constant (an ablation: the "
              "rounding's arithmetic without the hash), in one run "
              f"(`{ablation['command']}`; range over size x leaf count)\n",
              "| optimizer | stochastic | constant bits |", "| --- | --- | --- |"]
    lines += [f"| {name} | {span(name)} | {span(f'{name}(constant bits)')} |"
              for name in ablation["ratios"]
              if not name.endswith("(constant bits)")]
  bits_path = out_dir / "low_precision-bits.json"
  if bits_path.exists():
    bits = json.loads(bits_path.read_text())["bits"]
    lines += [f"\nstochastic rounding of {bits['size']} float32 values to "
              "bfloat16, by source of random bits\n",
              "| bits | ms | x nearest rounding |", "| --- | --- | --- |"]
    lines += [f"| {source} | {ms:.3f} | {bits['x_nearest'][source]:.1f}x |"
              for source, ms in bits["ms"].items()]
    lines.append("\nhash bits: " + ", ".join(
        f"{k} {v:.4g}" for k, v in bits["hash_stats"].items()))
  return "\n".join(lines)


def plot(report: dict[str, Any], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  tasks = list(report["tasks"])
  fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5),
                           squeeze=False)
  for ax, task in zip(axes[0], tasks):
    optimizers = list(report["tasks"][task]["optimizers"])
    width = 0.8 / len(CONFIGS)
    for i, config in enumerate(CONFIGS):
      values = [report["tasks"][task]["optimizers"][name]
                .get(config, {}).get("final_test_loss_mean", np.nan)
                for name in optimizers]
      ax.bar(np.arange(len(optimizers)) + (i - 1.5) * width, values, width,
             label=CONFIG_LABELS[config])
    ax.set_xticks(np.arange(len(optimizers)))
    ax.set_xticklabels(optimizers, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("final test loss (mean over seeds)")
    ax.set_title(task, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
  axes[0][0].legend(fontsize=7)
  fig.suptitle("bfloat16 training: nearest vs stochastic rounding", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny settings, few steps, one seed, two optimizers")
  parser.add_argument("--tasks", default="regression,mnist1d,charlm")
  parser.add_argument("--optimizers", default=None,
                      help=f"default {','.join(DEFAULT_OPTIMIZERS)}; any "
                           f"of {','.join(OPTIMIZERS)}")
  parser.add_argument("--seeds", type=int, default=None,
                      help="number of seeds (default 3, or 1 with --quick)")
  parser.add_argument("--markdown", action="store_true",
                      help="only print the docs' tables from the JSON files "
                           "in --out-dir")
  parser.add_argument("--no-bits", action="store_true",
                      help="skip the timing of the random-bit sources")
  parser.add_argument("--out-dir", default=None,
                      help="default benchmarks/results, or a temporary folder "
                           "with --quick")
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  optimizers = (args.optimizers.split(",") if args.optimizers else
                QUICK_OPTIMIZERS if args.quick else DEFAULT_OPTIMIZERS)
  unknown = [t for t in tasks if t != "regression" and t not in TASK_BUILDERS]
  unknown += [o for o in optimizers if o not in OPTIMIZERS]
  if unknown:
    parser.error(f"unknown tasks or optimizers: {unknown}")
  seeds = list(range(args.seeds or (1 if args.quick else 3)))
  out_dir = pathlib.Path(
      args.out_dir if args.out_dir else
      pathlib.Path(tempfile.gettempdir()) / "optfree-low-precision-quick"
      if args.quick else RESULTS)
  out_dir.mkdir(parents=True, exist_ok=True)
  if args.markdown:
    print(markdown(out_dir, tasks))
    return {}
  start = time.perf_counter()
  progress = lambda message: print(  # noqa: E731
      f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

  meta = {"configs": CONFIG_LABELS,
          "command": " ".join(["python", "benchmarks/low_precision.py",
                               *(argv if argv is not None
                                 else sys.argv[1:])]),
          "versions": {"python": platform.python_version(),
                       "jax": jax.__version__, "optax": optax.__version__}}
  reports = {}
  for task_name in tasks:
    task_start = time.perf_counter()
    if task_name == "regression":
      settings = REGRESSION_QUICK if args.quick else REGRESSION_FULL
      learning_rates = REGRESSION_LR
      params_shape = jax.ShapeDtypeStruct((settings["dim"],), jnp.float32)
    else:
      settings = (NN_QUICK if args.quick else NN_FULL)[task_name]
      task = TASK_BUILDERS[task_name](**settings["model"])
      best = _best_learning_rates(task_name)
      learning_rates = {name: best.get(
          name, _demo_models.OPTIMIZERS[name].learning_rate)
          for name in optimizers}
      params_shape = jax.eval_shape(task.model.init, jax.random.PRNGKey(0),
                                    task.data.x_test[:1])
    results = {}
    for name in optimizers:
      results[name] = {}
      for config in CONFIGS:
        progress(f"{task_name}: {name} {config}")
        if task_name == "regression":
          curve, _ = run_regression(name, config, seeds, settings)
        else:
          curve = run_network(task, name, config, seeds, settings,
                              learning_rates[name])
        results[name][config] = {**summarize(curve),
                                 **memory(name, config, params_shape)}
    report = {"tasks": {task_name: {
        "settings": settings, "seeds": seeds,
        "learning_rates": {name: learning_rates[name] for name in optimizers},
        "optimizers": results,
        "wall_s": time.perf_counter() - task_start}}, **meta}
    add_ratios(report["tasks"][task_name])
    reports[task_name] = _write(report, out_dir / f"low_precision-{task_name}",
                                progress)
  if not args.no_bits:
    progress("bits")
    report = {"tasks": {}, "bits": measure_bits(
        1 << 16 if args.quick else 1 << 20), "step_time": step_time_ratios(
            RESULTS / "step_time-cpu-rounding.json"), **meta}
    reports["bits"] = _write(report, out_dir / "low_precision-bits", progress)
  return reports


def _write(report, stem: pathlib.Path, progress) -> dict[str, Any]:
  stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
  written = [stem.with_suffix(".json")]
  if report["tasks"]:
    plot(report, stem.with_suffix(".png"))
    written.append(stem.with_suffix(".png"))
  print(format_report(report))
  progress("wrote " + ", ".join(str(path) for path in written))
  return report


if __name__ == "__main__":
  main()
