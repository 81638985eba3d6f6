"""Step time of every optfree optimizer against optax and the streaming floor.

An optimizer step is memory-bound, so each one is timed against a plain
streaming update ``a <- 0.999 a + 1e-3 b`` at the same size, leaf count and
dtype, run in the same interleaved loop. The efficiency of an optimizer is

    efficiency = floor time for the bytes the algorithm must move / step time

where the bytes are: read params, grads and each state buffer the algorithm
needs, write params and each state buffer (SF-SGD and Lion: 5 param-sized
passes; SF-AdamW, SF-RAdam, AdaBound, Adam: 7; AMSBound, AMSGrad: 9), and the
floor moves 3 passes. A step is ``update`` + ``apply_updates`` in one jitted
function with the params and the optimizer state donated; the time of a step is
the median over interleaved repetitions of chained steps.

The compiled step's memory (``memory_analysis()``) is reported too, in units
of the params' bytes: its temporaries ("temps", should be 0: a donated step
needs no param-sized scratch buffer) and its peak ("peak": arguments, outputs
not written in place, temporaries; the algorithm needs params + grads + its
state buffers). On a device with a known memory bandwidth (or ``--peak-gbps``)
the GB/s achieved is also reported as a percentage of it ("%bw").

Usage::

  python benchmarks/step_time.py            # full sweep, writes results/
  python benchmarks/step_time.py --quick    # under a minute
  python benchmarks/step_time.py --sizes 1M 8M --leaves 64 --dtypes float32
  python benchmarks/step_time.py --flatten --leaves 512 4096   # + optax.flatten
  python benchmarks/step_time.py --rounding   # stochastic vs nearest, bf16
  python benchmarks/step_time.py --rounding --constant-bits  # + without hash
  python benchmarks/step_time.py --only schedule_free_plus   # merged into
                                                             # the JSON

Results go to ``benchmarks/results/step_time-<device>.json`` and ``.png``
(``step_time-<device>-flatten.*`` with ``--flatten``, which also times each
optfree optimizer under ``optax.flatten``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import re
import statistics
import sys
import time
from typing import Any, Callable
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import optfree  # noqa: E402  (the checkout's optfree, not an installed one)
import optfree.rounding  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FLOOR_PASSES = 3

# Peak memory bandwidth in GB/s by JAX device_kind, from the vendors' data
# sheets; GB/s achieved is reported against it (``--peak-gbps`` for others).
PEAK_BANDWIDTH_GBPS = {
    "NVIDIA H100 80GB HBM3": 3350,  # SXM
    "NVIDIA H100 PCIe": 2000,
    "NVIDIA H100 NVL": 3900,
    "NVIDIA H200": 4800,
    "NVIDIA A100-SXM4-80GB": 2039,
    "NVIDIA A100-SXM4-40GB": 1555,
    "NVIDIA A100-PCIE-40GB": 1555,
    "NVIDIA A100 80GB PCIe": 1935,
    "NVIDIA L4": 300,
    "NVIDIA A10G": 600,
    "Tesla T4": 320,
    "Tesla V100-SXM2-16GB": 900,
    "TPU v4": 1228,
    "TPU v5 lite": 819,
    "TPU v5p": 2765,
    "TPU v6 lite": 1640,
}


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer to time: a name, a factory and its param-sized passes."""
  name: str
  make: Callable[[], optax.GradientTransformation]
  passes: int  # param-sized buffers the algorithm must read + write per step


def _merged(path: str, result: dict[str, Any], only: list[str]
            ) -> dict[str, Any]:
  """``result``'s records of the pairs in ``only`` in place of the file's.

  The file's other records and meta stay; ``meta["merged"]`` lists each
  merged run's meta (its command, date and versions).
  """
  with open(path) as f:
    stored = json.load(f)
  pairs = {record["pair"] for record in result["records"]}
  stored["records"] = [r for r in stored["records"]
                       if r["pair"] not in pairs] + result["records"]
  # A merged run whose pairs this one replaces no longer describes a record.
  stored["meta"]["merged"] = [
      run for run in stored["meta"].get("merged", [])
      if not set(run["only"]) <= set(only)] + [dict(result["meta"],
                                                    only=list(only))]
  stored["skipped"] = {**{k: v for k, v in stored["skipped"].items()
                          if k not in only}, **result["skipped"]}
  return stored


def _optfree(name: str, **kwargs: Any) -> Callable[..., Any]:
  # Looked up by name at call time, so the benchmark runs whichever optfree
  # optimizers are implemented in this checkout and skips the others.
  return lambda **extra: getattr(optfree, name)(**kwargs, **extra)


# (optfree optimizer, its nearest optax counterpart); hyperparameters match so
# that both do the same arithmetic per element where they can.
PAIRS = (
    (Optimizer("schedule_free_sgd",
               _optfree("schedule_free_sgd", learning_rate=1e-3,
                        weight_decay=1e-4), 5),
     Optimizer("optax.contrib.schedule_free_sgd",
               lambda: optax.contrib.schedule_free_sgd(1e-3, weight_decay=1e-4),
               5)),
    (Optimizer("schedule_free_adamw",
               _optfree("schedule_free_adamw", learning_rate=1e-3,
                        weight_decay=1e-4), 7),
     Optimizer("optax.contrib.schedule_free_adamw",
               lambda: optax.contrib.schedule_free_adamw(
                   1e-3, weight_decay=1e-4), 7)),
    # optax.radam has no weight decay, so neither does SF-RAdam here.
    (Optimizer("schedule_free_radam",
               _optfree("schedule_free_radam", learning_rate=1e-3), 7),
     Optimizer("optax.radam", lambda: optax.radam(1e-3), 7)),
    (Optimizer("lion", _optfree("lion", learning_rate=1e-4,
                                weight_decay=1e-2), 5),
     Optimizer("optax.lion", lambda: optax.lion(1e-4, weight_decay=1e-2), 5)),
    (Optimizer("adabound", _optfree("adabound", learning_rate=1e-3), 7),
     Optimizer("optax.adam", lambda: optax.adam(1e-3), 7)),
    (Optimizer("amsbound", _optfree("amsbound", learning_rate=1e-3), 9),
     Optimizer("optax.amsgrad", lambda: optax.amsgrad(1e-3), 9)),
    # ScheduleFree+ keeps z, m, v as the Schedule-Free wrapper over Adam does
    # (9 passes; its two global sums read g, z and y once more before the
    # update, which the efficiency does not count). The loss it needs is a
    # constant here (_LOSS).
    (Optimizer("schedule_free_plus", _optfree("schedule_free_plus"), 9),
     Optimizer("optax.contrib.schedule_free(optax.adam)",
               lambda: optax.contrib.schedule_free(
                   optax.adam(1e-3, b1=0.9, b2=0.95), 1e-3), 9)),
)
# The loss every step passes (optax's extra-args convention; only
# ScheduleFree+ reads it, every other optimizer ignores it).
_LOSS = 1.0


def _with_constant_bits(
    make: Callable[[], optax.GradientTransformation]
) -> Callable[[], optax.GradientTransformation]:
  """``make`` with every random draw replaced by its key, unhashed.

  An ablation, not an optimizer: all elements of a buffer get the same bits,
  so the rounding is no longer independent across elements. What it times is
  the rounding's own arithmetic (add, mask, the overflow select) without the
  hash that draws the bits.
  """
  def constant(key, shape):
    return jnp.broadcast_to(key, shape)

  def constant_make():
    inner = make()

    def update_fn(*args, **kwargs):
      # The draw is traced here, so the compiled step keeps the constant.
      with mock.patch.object(optfree.rounding, "random_bits", constant):
        return inner.update(*args, **kwargs)

    return optax.GradientTransformation(inner.init, update_fn)

  return constant_make


def _rounding_pairs(pairs, constant_bits=False
                    ) -> list[tuple[Optimizer, Optimizer]]:
  """Each optfree optimizer with stochastic rounding (``<name>+sr``) against
  itself with nearest rounding, and ``optfree.stochastic_rounding`` over
  optax.adam against optax.adam; with ``constant_bits``, each ``+sr`` also
  with its random bits replaced by a constant (``<name>+sr(constant bits)``,
  see :func:`_with_constant_bits`) against the same nearest one."""
  adam = Optimizer("optax.adam", lambda: optax.adam(1e-3), 7)
  rounded = [
      (Optimizer(f"{mine.name}+sr",
                 functools.partial(mine.make, rounding="stochastic"),
                 mine.passes), mine)
      for mine, *_ in pairs]
  rounded.append((Optimizer("stochastic_rounding(optax.adam)",
                            lambda: optfree.stochastic_rounding(adam.make()),
                            7), adam))
  if not constant_bits:
    return rounded
  ablated = [(Optimizer(f"{sr.name}(constant bits)",
                        _with_constant_bits(sr.make), sr.passes), nearest)
             for sr, nearest in rounded]
  return [pair for both in zip(rounded, ablated) for pair in both]


def _flattened(opt: Optimizer) -> Optimizer:
  """``opt`` under ``optax.flatten``: one vector instead of many leaves."""
  return Optimizer(f"flatten({opt.name})",
                   lambda: optax.flatten(opt.make()), opt.passes)


def _floor_step(a, b):
  return jax.tree.map(lambda x, y: 0.999 * x + 1e-3 * y, a, b)


def _make_step(opt: optax.GradientTransformation):
  opt = optax.with_extra_args_support(opt)

  def step(params_and_state, grads):
    params, state = params_and_state
    updates, state = opt.update(grads, state, params,
                                value=jnp.float32(_LOSS))
    return optax.apply_updates(params, updates), state
  return step


def _leaves(size: int, num_leaves: int, dtype, seed: int) -> list[jax.Array]:
  # Equal leaves, the last one taking the remainder.
  per_leaf = max(size // num_leaves, 1)
  shapes = [per_leaf] * (num_leaves - 1) + [size - per_leaf * (num_leaves - 1)]
  key = jax.random.PRNGKey(seed)
  return [
      (1e-2 * jax.random.normal(jax.random.fold_in(key, i), (n,))).astype(dtype)
      for i, n in enumerate(shapes)
  ]


class _Case:
  """One jitted, donated step with its own buffers, ready to time."""

  def __init__(self, name: str, step, init_args, grads, param_bytes: int):
    self.name = name
    jitted = jax.jit(step, donate_argnums=(0,))
    compiled = jitted.lower(init_args, grads).compile()
    analysis = compiled.memory_analysis()
    self.memory = dict(
        argument_bytes=int(analysis.argument_size_in_bytes),
        output_bytes=int(analysis.output_size_in_bytes),
        alias_bytes=int(analysis.alias_size_in_bytes),
        temp_bytes=int(analysis.temp_size_in_bytes),
        temp_in_params=analysis.temp_size_in_bytes / param_bytes,
        param_sized_copies=len(re.findall(
            r"= [a-z0-9]+\[\d+\]\{0\} copy\(", compiled.as_text() or "")),
    )
    self.run = compiled
    self.args = self.run(init_args, grads)  # warm-up; also the first state
    jax.block_until_ready(self.args)
    self.grads = grads
    self.times: list[float] = []

  def time(self, steps: int) -> None:
    args = self.args
    start = time.perf_counter()
    for _ in range(steps):
      args = self.run(args, self.grads)
    jax.block_until_ready(args)
    self.times.append((time.perf_counter() - start) / steps)
    self.args = args

  def release(self) -> None:
    self.args = self.grads = self.run = None


def _optimizer_case(opt: Optimizer, params, grads, param_bytes):
  transform = opt.make()
  params = [p.copy() for p in params]
  return _Case(opt.name, _make_step(transform),
               (params, transform.init(params)), grads, param_bytes)


def _floor_case(params, grads, param_bytes):
  return _Case("floor", lambda a, b: _floor_step(a, b),
               [p.copy() for p in params], grads, param_bytes)


def _available(opt: Optimizer) -> str | None:
  """None when the optimizer can be built here, else why not."""
  try:
    opt.make()
  except NotImplementedError:
    return "not implemented in this checkout"
  return None


def _parse_size(text: str) -> int:
  match = re.fullmatch(r"(\d+)([kKmM]?)", text)
  if not match:
    raise argparse.ArgumentTypeError(f"size must look like 4096, 64k or 8M: {text}")
  unit = {"": 1, "k": 1 << 10, "m": 1 << 20}[match.group(2).lower()]
  return int(match.group(1)) * unit


def _size_label(size: int) -> str:
  if size % (1 << 20) == 0:
    return f"{size >> 20}M"
  if size % (1 << 10) == 0:
    return f"{size >> 10}k"
  return str(size)


def device_name() -> str:
  device = jax.devices()[0]
  if device.platform == "cpu":
    return "cpu"
  return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def run(sizes, leaf_counts, dtypes, pairs, reps, steps, progress=True,
        peak_gbps=None):
  """Times every pair of `pairs` with the floor; returns a list of records.

  With ``peak_gbps`` (the device's memory bandwidth), each record also has
  ``bandwidth_fraction``: its GB/s achieved over that peak.
  """
  from tqdm import tqdm
  configs = [(s, n, d) for d in dtypes for n in leaf_counts for s in sizes]
  skipped = {}
  for pair in pairs:
    for opt in pair:
      reason = _available(opt)
      if reason:
        skipped[opt.name] = reason
  records = []
  total = len(configs) * len(pairs)
  with tqdm(total=total, disable=not progress, desc="step time",
            file=sys.stderr) as bar:
    for size, num_leaves, dtype in configs:
      params = _leaves(size, num_leaves, dtype, seed=0)
      grads = _leaves(size, num_leaves, dtype, seed=1)
      param_bytes = size * jnp.dtype(dtype).itemsize
      for pair in pairs:
        bar.set_postfix_str(f"{pair[0].name} {_size_label(size)} "
                            f"x{num_leaves} {jnp.dtype(dtype).name}")
        cases = [_floor_case(params, grads, param_bytes)]
        cases += [_optimizer_case(opt, params, grads, param_bytes)
                  for opt in pair if opt.name not in skipped]
        # Interleaved: each repetition times every case once, so a slow
        # moment of a shared machine hits all of them alike.
        for _ in range(reps):
          for case in cases:
            case.time(steps)
        floor_time = statistics.median(cases[0].times)
        for opt, case in zip((None,) + tuple(o for o in pair
                                              if o.name not in skipped), cases):
          median = statistics.median(case.times)
          q1, q3 = np.percentile(case.times, [25, 75])
          passes = FLOOR_PASSES if opt is None else opt.passes
          records.append(dict(
              optimizer=case.name,
              pair=pair[0].name,
              size=size,
              leaves=num_leaves,
              dtype=jnp.dtype(dtype).name,
              step_ms=median * 1e3,
              iqr_ms=[q1 * 1e3, q3 * 1e3],
              passes=passes,
              gbps=passes * param_bytes / median / 1e9,
              bandwidth_fraction=(passes * param_bytes / median / 1e9
                                  / peak_gbps if peak_gbps else None),
              efficiency=passes / FLOOR_PASSES * floor_time / median,
              **case.memory,
          ))
        for case in cases:
          case.release()
        bar.update(1)
  return records, skipped


def peak_in_params(record) -> float:
  """Peak bytes of the compiled step, in units of the params' bytes.

  Arguments (params, state, grads) plus outputs not written in place over a
  donated argument plus temporaries: a step that needs nothing beyond its
  algorithm's buffers has params + grads + state buffers, e.g. 4 for Adam.
  """
  param_bytes = record["size"] * jnp.dtype(record["dtype"]).itemsize
  return (record["argument_bytes"] + record["output_bytes"]
          - record["alias_bytes"] + record["temp_bytes"]) / param_bytes


def _percent(fraction) -> str:
  return "" if fraction is None else f"{100 * fraction:.0f}"


def table(records) -> str:
  """Efficiency and optfree/optax speed ratio per pair, as text."""
  by_key = {(r["optimizer"], r["pair"], r["size"], r["leaves"], r["dtype"]): r
            for r in records}
  lines = [f"{'optimizer':34s} {'size':>5s} {'leaves':>6s} {'dtype':>8s} "
           f"{'ms':>9s} {'GB/s':>6s} {'eff':>5s} {'vs optax':>8s} "
           f"{'temps':>5s} {'peak':>5s} {'copies':>6s} {'%bw':>4s}"]
  for r in records:
    if r["optimizer"] == "floor" and r["pair"] != records[0]["pair"]:
      continue  # one floor line per configuration is enough
    ratio = ""
    if r["optimizer"] in (r["pair"], f"flatten({r['pair']})"):
      counterpart = [k for k in by_key if k[1] == r["pair"]
                     and k[0] not in ("floor", r["pair"],
                                      f"flatten({r['pair']})")
                     and k[2:] == (r["size"], r["leaves"], r["dtype"])]
      if counterpart:
        ratio = f"{by_key[counterpart[0]]['step_ms'] / r['step_ms']:.2f}x"
    lines.append(
        f"{r['optimizer']:34s} {_size_label(r['size']):>5s} {r['leaves']:6d} "
        f"{r['dtype']:>8s} {r['step_ms']:9.3f} {r['gbps']:6.1f} "
        f"{r['efficiency']:5.2f} {ratio:>8s} {r['temp_in_params']:5.2f} "
        f"{peak_in_params(r):5.2f} {r['param_sized_copies']:6d} "
        f"{_percent(r.get('bandwidth_fraction')):>4s}")
  return "\n".join(lines)


def summary(records) -> dict:
  """Per (pair, dtype): the range of optax/optfree speed ratios over sizes and
  leaf counts and the range of optfree's efficiency, as README's table has
  them, e.g. ``"1.03-3.62x (0.59-1.10)"``."""
  step_ms = {(r["optimizer"], r["pair"], r["size"], r["leaves"], r["dtype"]):
             r["step_ms"] for r in records}
  ranges = {}
  for r in records:
    if r["optimizer"] != r["pair"]:
      continue
    config = (r["size"], r["leaves"], r["dtype"])
    counterparts = [ms for (name, pair, *rest), ms in step_ms.items()
                    if pair == r["pair"] and tuple(rest) == config
                    and name not in ("floor", pair, f"flatten({pair})")]
    ratios, efficiencies = ranges.setdefault((r["pair"], r["dtype"]), ([], []))
    ratios += [ms / r["step_ms"] for ms in counterparts]
    efficiencies.append(r["efficiency"])
  return {key: f"{min(ratios):.2f}-{max(ratios):.2f}x "
               f"({min(efficiencies):.2f}-{max(efficiencies):.2f})"
          for key, (ratios, efficiencies) in ranges.items() if ratios}


def plot(records, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  pairs = list(dict.fromkeys(r["pair"] for r in records))
  groups = list(dict.fromkeys((r["leaves"], r["dtype"]) for r in records))
  top = max([1.5] + [1.1 * r["efficiency"] for r in records])
  fig, axes = plt.subplots(len(groups), len(pairs), squeeze=False,
                           figsize=(3.2 * len(pairs), 2.6 * len(groups)),
                           sharey=True)
  for row, (leaves, dtype) in enumerate(groups):
    for col, pair in enumerate(pairs):
      ax = axes[row][col]
      names = dict.fromkeys(r["optimizer"] for r in records
                            if r["pair"] == pair and r["optimizer"] != "floor")
      for name in names:
        points = sorted((r["size"], r["efficiency"]) for r in records
                        if r["optimizer"] == name and r["pair"] == pair
                        and r["leaves"] == leaves and r["dtype"] == dtype)
        if points:
          xs, ys = zip(*points)
          ax.plot(xs, ys, marker="o",
                  linestyle="--" if name.startswith("optax") else "-",
                  label=name)
      ax.set_xscale("log", base=2)
      ax.axhline(1.0, color="gray", linewidth=0.5)
      ax.set_ylim(0, top)
      if row == 0:
        ax.set_title(pair, fontsize=9)
      if col == 0:
        ax.set_ylabel(f"{leaves} leaves {dtype}\nefficiency", fontsize=8)
      if row == len(groups) - 1:
        ax.set_xlabel("params", fontsize=8)
      ax.legend(fontsize=6)
  fig.suptitle(f"step time vs streaming floor ({device_name()})", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="1M params, 1 and 64 leaves, float32 (< 1 minute)")
  parser.add_argument("--sizes", nargs="+", type=_parse_size,
                      help="param counts, e.g. 1M 8M 64M (default 1M 4M 16M 64M)")
  parser.add_argument("--leaves", nargs="+", type=int,
                      help="leaf counts (default 1 64 512)")
  parser.add_argument("--dtypes", nargs="+",
                      help="param dtypes (default float32 bfloat16)")
  parser.add_argument("--only", nargs="+",
                      help="time only the pairs whose optfree name is given; "
                           "into an existing results JSON, their records "
                           "replace the stored ones and the others stay")
  parser.add_argument("--flatten", action="store_true",
                      help="also time each optfree optimizer under "
                           "optax.flatten (for many small leaves)")
  parser.add_argument("--rounding", action="store_true",
                      help="time each optfree optimizer with "
                           "rounding='stochastic' against itself with "
                           "nearest rounding (default dtype bfloat16); "
                           "writes step_time-<device>-rounding.*")
  parser.add_argument("--constant-bits", action="store_true",
                      help="with --rounding: also time each stochastic step "
                           "with its random bits replaced by a constant (an "
                           "ablation: the rounding's arithmetic without the "
                           "hash); writes step_time-<device>-rounding-"
                           "constant-bits.*")
  parser.add_argument("--peak-gbps", type=float,
                      help="the device's memory bandwidth in GB/s (default: "
                           "known GPUs/TPUs, see PEAK_BANDWIDTH_GBPS)")
  parser.add_argument("--reps", type=int, help="interleaved repetitions")
  parser.add_argument("--steps", type=int, default=3,
                      help="chained steps per repetition")
  parser.add_argument("--out", default=RESULTS_DIR,
                      help="folder for step_time-<device>.json/.png")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  if args.constant_bits and not args.rounding:
    parser.error("--constant-bits needs --rounding")

  sizes = args.sizes or ([1 << 20] if args.quick
                         else [1 << 20, 4 << 20, 16 << 20, 64 << 20])
  leaf_counts = args.leaves or ([1, 64] if args.quick else [1, 64, 512])
  dtypes = args.dtypes or (["bfloat16"] if args.rounding else
                           ["float32"] if args.quick
                           else ["float32", "bfloat16"])
  reps = args.reps or (5 if args.quick else 9)
  pairs = [p for p in PAIRS if not args.only or p[0].name in args.only]
  if args.flatten:
    pairs = [(mine, _flattened(mine), *others) for mine, *others in pairs]
  if args.rounding:
    pairs = _rounding_pairs(pairs, constant_bits=args.constant_bits)

  peak_gbps = args.peak_gbps or PEAK_BANDWIDTH_GBPS.get(
      jax.devices()[0].device_kind)
  records, skipped = run(sizes, leaf_counts, [jnp.dtype(d) for d in dtypes],
                         pairs, reps, args.steps,
                         progress=not args.no_progress,
                         peak_gbps=peak_gbps)
  print(table(records))
  print("\nnearest-rounding step time / stochastic step time (efficiency), "
        "over sizes and leaf counts:" if args.rounding else
        "\nx optax speed (efficiency), over sizes and leaf counts:")
  for (pair, dtype), text in summary(records).items():
    print(f"  {pair:22s} {dtype:9s} {text}")
  for name, reason in skipped.items():
    print(f"skipped {name}: {reason}")

  os.makedirs(args.out, exist_ok=True)
  stem = os.path.join(args.out, f"step_time-{device_name()}"
                      + ("-flatten" if args.flatten else "")
                      + ("-rounding" if args.rounding else "")
                      + ("-constant-bits" if args.constant_bits else ""))
  meta = dict(
      device=str(jax.devices()[0]), device_kind=jax.devices()[0].device_kind,
      cpu_count=os.cpu_count(), platform=platform.platform(),
      jax=jax.__version__, optax=optax.__version__,
      optfree=optfree.__version__, reps=reps, steps=args.steps,
      peak_gbps=peak_gbps,
      xla_flags=os.environ.get("XLA_FLAGS", ""),
      date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      command=" ".join(["python", "benchmarks/step_time.py"]
                       + list(argv if argv is not None else sys.argv[1:])),
  )
  result = dict(meta=meta, skipped=skipped, records=records)
  if args.only and os.path.exists(stem + ".json"):
    result = _merged(stem + ".json", result, args.only)
    records = result["records"]
  with open(stem + ".json", "w") as f:
    json.dump(result, f, indent=1)
  plot(records, stem + ".png")
  print(f"wrote {stem}.json and {stem}.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
