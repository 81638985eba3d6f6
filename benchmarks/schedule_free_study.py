"""When does Schedule-Free match a tuned schedule, and with which settings?

The tasks, models, data and training loop are those of
``benchmarks/quality.py`` (``optfree._demo_models``): a CNN on MNIST-1D and a
character-level transformer, each at its quality.py length T and at 4T.

Methods. Schedule-Free AdamW and SGD over b1, r and the warmup fraction, each
with a learning-rate grid; AdamW and SGD-Nesterov with warmup-cosine, tuned
separately for every stopping time (they know when they stop). Every grid
starts from four half-decade values (``START_GRIDS``, or ``--grid``) and is
widened by the same rule (while the best value sits at an edge, one more value
beyond it, at most ``MAX_WIDENINGS`` times), so every method gets the
learning rates it needs to have its best one inside the grid.

Protocol. Learning rates and settings are chosen on the validation loss of
seed 0; the numbers reported are test loss and accuracy over seeds 0, 1, 2 at
the chosen values. Stages, each one program per method and run length (the
runs of a stage train inside it one after another on CPU, see
``_demo_models.Runs``):

1. search, horizon T, seed 0: Schedule-Free AdamW over b1 in {0.9, 0.95,
   0.98} x r in {0, 1, 2} (with ``--one-at-a-time``: b1 at r = 0, then r at
   b1 = 0.9), Schedule-Free SGD over b1 x r in {0, 2}, both at 5% warmup; the
   cosine baselines tuned for T/4, T/2 and T.
2. warmup, horizon T, seed 0: warmup fractions 0, 5% and 20% at each
   Schedule-Free method's best (b1, r) (and any ``--finalist``).
3. seeds at T: seeds 1 and 2 for the current settings (b1 = 0.9, r = 0, 5%
   warmup), the best settings of stages 1-2, the ``--finalist`` settings and
   the cosine baselines.
4. long, horizon 4T, seed 0 (methods of ``--long-methods``): the same
   settings, their learning rates tuned again, and the cosine baseline tuned
   for 2T and 4T (T = 4T/4 comes from stage 1).
5. seeds at 4T, as stage 3.
6. weight decay, horizon T (with ``--weight-decay``): Schedule-Free AdamW at
   one setting (``--wd-setting``, default the demo's) and AdamW +
   warmup-cosine scheduled for each of T/4, T/2 and T, each over the same
   weight-decay grid jointly with its learning rate (both decoupled: lr * wd
   of the weights removed per step); (wd, lr) chosen on seed 0's validation
   loss (Schedule-Free's at T, the cosine's at its stop), then seeds 1 and 2
   at the choice. With ``--wd-long`` also at 4T: each method at the weight
   decay it chose at T, its learning rate tuned again (Schedule-Free at 4T,
   the cosine for 2T and 4T), and seeds. The other stages run at the
   benchmarks' weight decay, ``_demo_models.WEIGHT_DECAY``, whose runs this
   stage reuses.
A Schedule-Free run of horizon H is one run of H steps read at H/4, H/2 and
H; its warmup is a fraction of H and its learning rate is chosen at H.

The recommendation (the JSON's ``"recommended"``) is the Schedule-Free AdamW
setting with the lowest validation loss at T relative to the tuned
AdamW-cosine, averaged over the tasks, among the settings every task ran
(at the default weight decay; stage 6 is reported apart); horizon 4T then
tests it with only its learning rate tuned, the same budget as the cosine
baseline.

Writes benchmarks/results/schedule_free_study-<task>.json after every batch
of runs, schedule_free_study.json (both tasks, the recommendation, gap
tables, learning-rate sensitivity, weight decay) and
schedule_free_study-<task>[-weight-decay].png. Runs accumulate: an
invocation keeps every run already in the task's JSON (from any methods or
options), trains only the runs it lacks (so a cut run resumes) and appends
its options and commands to the JSON's ``"invocations"``; the summary is
built from all of them.

The committed results come from these invocations, in this order (2 shared
CPU cores; see docs/guides/schedule_free_tuning.md for the budget):

  python benchmarks/schedule_free_study.py --tasks charlm \
      --long-methods sf_adamw,sf_sgd --finalist b1=0.9,r=1,warmup=0.05
  python benchmarks/schedule_free_study.py --tasks mnist1d \
      --methods sf_adamw --one-at-a-time --grid sf_adamw=0.003,0.01,0.03 \
      --grid adamw_cosine=0.01,0.03,0.1 --finalist b1=0.9,r=1,warmup=0.05 \
      --no-task-best
(these two first ran without ``--finalist``/``--no-task-best`` and resumed
with them once the recommendation was known; their JSON entries predate
``"invocations"`` and record the options, not the commands)
  python benchmarks/schedule_free_study.py --tasks mnist1d --methods sf_sgd \
      --one-at-a-time --grid sf_sgd=1,3,10 --grid sgd_cosine=0.03,0.1,0.3
  python benchmarks/schedule_free_study.py --tasks mnist1d --methods sf_adamw \
      --grid sf_adamw=0.003,0.01,0.03 --grid adamw_cosine=0.01,0.03,0.1 \
      --finalist b1=0.9,r=1,warmup=0.05
  python benchmarks/schedule_free_study.py --tasks mnist1d --methods sf_adamw \
      --grid sf_adamw=0.003,0.01,0.03 --grid adamw_cosine=0.01,0.03,0.1 \
      --finalist b1=0.9,r=1,warmup=0.05 \
      --weight-decay 1e-4,1e-3,1e-2,3e-2,0.1,0.3,1 \
      --wd-setting b1=0.9,r=1,warmup=0.05 --wd-long
  python benchmarks/schedule_free_study.py --tasks charlm \
      --long-methods sf_adamw,sf_sgd --finalist b1=0.9,r=1,warmup=0.05 \
      --weight-decay 1e-4,1e-3,1e-2,3e-2,0.1,0.3,1 \
      --wd-setting b1=0.9,r=1,warmup=0.05 --wd-long
(the two with ``--weight-decay`` first ran without ``--wd-long``, the
MNIST-1D one also before stage 6 tuned the cosine for T/4 and T/2; each
JSON's "invocations" records every command)
  python benchmarks/schedule_free_study.py --tasks mnist1d --methods sf_sgd \
      --grid sf_sgd=1,3,10 --grid sgd_cosine=0.03,0.1,0.3
(the full b1 x r grid of Schedule-Free SGD, after its one-at-a-time search)
  python benchmarks/schedule_free_study.py --summarize
  python benchmarks/schedule_free_study.py --quick     # smoke run, minutes
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))

import quality  # pylint: disable=wrong-import-position
from optfree import _demo_models  # pylint: disable=wrong-import-position

# Learning-rate grids: runs of quality.LADDER (half-decade steps). The
# starting grids hold the values quality.py chose and reach past them.
START_GRIDS = {
    "adamw_cosine": (3e-3, 1e-2, 3e-2, 1e-1),
    "sgd_cosine": (3e-2, 1e-1, 3e-1, 1.0),
    "sf_adamw": (3e-3, 1e-2, 3e-2, 1e-1),
    "sf_sgd": (3e-1, 1.0, 3.0, 10.0),
}
MAX_WIDENINGS = quality.MAX_WIDENINGS
SCHEDULE_FREE = {"sf_adamw": "adamw_cosine", "sf_sgd": "sgd_cosine"}
BASELINES = tuple(SCHEDULE_FREE.values())
CURRENT = dict(b1=0.9, r=0.0, warmup_fraction=0.05)
B1S = (0.9, 0.95, 0.98)
RS = {"sf_adamw": (0.0, 1.0, 2.0), "sf_sgd": (0.0, 2.0)}
WARMUPS = (0.0, 0.05, 0.2)
LONG = 4
SEEDS = (0, 1, 2)
# --quick: a smaller search, two-value grids, two seeds.
QUICK_SEARCH = dict(
    b1s=(0.9, 0.98), rs={"sf_adamw": (0.0, 2.0), "sf_sgd": (0.0,)},
    warmups=(0.0, 0.05), seeds=(0, 1), max_widenings=1,
    grids={name: grid[1:3] for name, grid in START_GRIDS.items()})


def _sf_make(name, weight_decay=False):
  # pylint: disable-next=protected-access
  build = {"sf_adamw": _demo_models._sf_adamw, "sf_sgd": _demo_models._sf_sgd}
  build = build[name]

  def make(hparams, total_steps):
    extra = {"weight_decay": hparams["weight_decay"]} if weight_decay else {}
    return build(hparams["lr"], total_steps, b1=hparams["b1"], r=hparams["r"],
                 warmup_fraction=hparams["warmup_fraction"], **extra)
  return make


def _adamw_cosine_weight_decay(hparams, total_steps):
  # pylint: disable-next=protected-access
  return _demo_models._adamw_cosine(hparams["lr"], total_steps,
                                    weight_decay=hparams["weight_decay"])


# One spec per method, built once, so that the compiled programs (cached per
# spec) are shared by every stage.
SPECS = {
    **{name: _demo_models.OPTIMIZERS[name] for name in BASELINES},
    **{name: _demo_models.OptimizerSpec(
        name, _demo_models.OPTIMIZERS[name].label, _sf_make(name),
        _demo_models.OPTIMIZERS[name].learning_rate,
        START_GRIDS[name], schedule_free=True) for name in SCHEDULE_FREE},
}
# The weight-decay stage's runs: the same optimizers with the weight decay a
# per-run hyperparameter (a config's "weight_decay"). Runs without one keep
# the programs above, with the benchmarks' constant DEFAULT_WEIGHT_DECAY.
DEFAULT_WEIGHT_DECAY = _demo_models.WEIGHT_DECAY
WEIGHT_DECAY_SPECS = {
    "sf_adamw": _demo_models.OptimizerSpec(
        "sf_adamw", SPECS["sf_adamw"].label, _sf_make("sf_adamw", True),
        SPECS["sf_adamw"].learning_rate, START_GRIDS["sf_adamw"],
        schedule_free=True),
    "adamw_cosine": _demo_models.OptimizerSpec(
        "adamw_cosine", SPECS["adamw_cosine"].label,
        _adamw_cosine_weight_decay, SPECS["adamw_cosine"].learning_rate,
        START_GRIDS["adamw_cosine"]),
}


def _weight_decay_of(config: dict[str, float] | None) -> float:
  return (config or {}).get("weight_decay", DEFAULT_WEIGHT_DECAY)


def _with_weight_decay(config: dict[str, float] | None,
                       weight_decay: float) -> dict[str, float] | None:
  """``config`` at ``weight_decay``; the default one is left implicit, so that
  the runs of every other stage are the weight-decay stage's at the default."""
  base = {k: v for k, v in (config or {}).items() if k != "weight_decay"}
  if weight_decay != DEFAULT_WEIGHT_DECAY:
    base["weight_decay"] = weight_decay
  return base or None


def _key(config: dict[str, float] | None) -> str:
  if not config:
    return "-"
  parts = []
  if "b1" in config:
    parts.append(f"b1={config['b1']:g},r={config['r']:g},"
                 f"warmup={config['warmup_fraction']:g}")
  if "weight_decay" in config:
    parts.append(f"wd={config['weight_decay']:g}")
  return ",".join(parts)


class Records:
  """Flat run records of one task and the choices made from them."""

  def __init__(self, records: list[dict[str, Any]]):
    self.records = records

  def find(self, method, steps, config, lr, seed):
    for record in self.records:
      if (record["method"] == method and record["steps"] == steps
          and record["config"] == config and record["lr"] == lr
          and record["seed"] == seed):
        return record
    return None

  def grid(self, method, steps, config) -> list[float]:
    return sorted({r["lr"] for r in self.records
                   if r["method"] == method and r["steps"] == steps
                   and r["config"] == config and r["seed"] == 0})

  def val_losses(self, method, steps, config) -> dict[float, float]:
    """Seed-0 validation loss at the end of the run, per learning rate."""
    losses = {}
    for r in self.records:
      if (r["method"] == method and r["steps"] == steps
          and r["config"] == config and r["seed"] == 0):
        loss = r["points"][str(steps)]["val_loss"]
        losses[r["lr"]] = loss if math.isfinite(loss) else math.inf
    return losses

  def best_lr(self, method, steps, config) -> float:
    losses = self.val_losses(method, steps, config)
    return min(losses, key=losses.get)

  def best_config(self, method, steps, configs):
    scores = {_key(c): min(self.val_losses(method, steps, c).values())
              for c in configs}
    return min(configs, key=lambda c: scores[_key(c)])

  def configs_run(self, method, steps, weight_decay=False
                  ) -> list[dict[str, float]]:
    """The settings run, at the default weight decay (or only the others)."""
    seen = {}
    for r in self.records:
      if (r["method"] == method and r["steps"] == steps and r["config"]
          and ("weight_decay" in r["config"]) == weight_decay):
        seen.setdefault(_key(r["config"]), r["config"])
    return list(seen.values())


def _upgraded(saved: dict[str, Any]) -> dict[str, Any]:
  """A task's JSON in the current layout.

  Files written before runs accumulated kept one invocation's search options
  in ``config["search"]`` and its stage times in ``"stages"``.
  """
  if "invocations" in saved:
    return saved
  config = dict(saved["config"])
  search = config.pop("search", {})
  return {**saved, "config": config, "invocations": [{
      "options": {"search": search}, "commands": [],
      "stages": saved.get("stages", {})}]}


class Study(Records):
  """The runs of one task, kept as flat records and saved after each stage.

  Every invocation adds to the task's JSON: the runs already recorded (by any
  earlier invocation, with any methods or options) are kept and never trained
  again, and the invocation's options and stage times are appended to
  ``"invocations"``. Records of a different task configuration (steps,
  model) are not comparable, so a file holding them is an error, not
  overwritten.
  """

  def __init__(self, task_name: str, task: Any, settings: dict[str, Any],
               out_path: pathlib.Path, progress, search: dict[str, Any],
               command: str = ""):
    self.task_name = task_name
    self.task = task
    self.steps = settings["steps"]
    self.settings = settings
    self.out_path = out_path
    self.progress = progress
    search = dict(search)  # the caller's is shared by every task
    self.extra_finalists = search.pop("extra_finalists", [])
    self.task_best = search.pop("task_best", True)
    self.search = search
    super().__init__([])
    self.invocations: list[dict[str, Any]] = []
    if out_path.exists():
      saved = _upgraded(json.loads(out_path.read_text()))
      if saved["config"] != self.config():
        raise ValueError(
            f"{out_path} holds runs of another configuration "
            f"({saved['config']}, not {self.config()}); choose another "
            "--out-dir")
      self.records, self.invocations = saved["records"], saved["invocations"]
    self.command = command
    self.stages: dict[str, float] = {}

  def _invocation(self, methods: Sequence[str],
                  long_methods: Sequence[str]) -> None:
    """This invocation's entry in ``"invocations"`` (a rerun's resumes)."""
    options = json.loads(json.dumps({
        "methods": list(methods), "long_methods": list(long_methods),
        "search": self.search, "finalists": self.extra_finalists,
        "task_best": self.task_best}))
    invocation = next(
        (i for i in self.invocations if i["options"] == options), None)
    if invocation is None:
      invocation = {"options": options, "commands": [], "stages": {}}
      self.invocations.append(invocation)
    if self.command and self.command not in invocation["commands"]:
      invocation["commands"].append(self.command)
    self.stages = invocation["stages"]

  def config(self) -> dict[str, Any]:
    # As JSON writes it, so that a saved config compares equal.
    return json.loads(json.dumps({"steps": self.steps, "long": LONG,
                                  **self.settings["model"]}))

  def save(self) -> None:
    self.out_path.write_text(json.dumps({
        "task": self.task_name,
        "description": self.task.data.description,
        "config": self.config(),
        "invocations": self.invocations,
        "versions": {"python": platform.python_version(),
                     "jax": jax.__version__},
        "records": self.records}, indent=None))

  # ---------------------------------------------------------------- training

  def train(self, method: str, runs: list[dict[str, Any]], steps: int,
            stops: Sequence[int]) -> None:
    """Trains ``runs`` (each {lr, seed, config}) for ``steps``, in one program.

    Appends one record per run with its metrics at every stop.
    """
    todo = [run for run in runs if self.find(method, steps, run["config"],
                                              run["lr"], run["seed"]) is None]
    if todo:
      self._train(method, todo, steps, stops)
      self.save()

  def _train(self, method: str, todo: list[dict[str, Any]], steps: int,
             stops: Sequence[int]) -> None:
    with_decay = [run for run in todo if "weight_decay" in (
        run["config"] or {})]
    for group in (with_decay, [run for run in todo if run not in with_decay]):
      if group:
        self._train_group(method, group, steps, stops)

  def _train_group(self, method: str, todo: list[dict[str, Any]], steps: int,
                   stops: Sequence[int]) -> None:
    """Trains runs that share one program (all with a weight decay or none)."""
    start = time.perf_counter()
    seeds = [run["seed"] for run in todo]
    weight_decay = "weight_decay" in (todo[0]["config"] or {})
    names = (list(CURRENT) if method in SCHEDULE_FREE else []) + (
        ["weight_decay"] if weight_decay else [])
    if names:
      hparams = {"lr": [run["lr"] for run in todo]}
      for name in names:
        hparams[name] = [run["config"][name] for run in todo]
    else:
      hparams = [run["lr"] for run in todo]
    spec = (WEIGHT_DECAY_SPECS if weight_decay else SPECS)[method]
    batch = _demo_models.Runs(self.task, spec, hparams, seeds, steps,
                              sequential=jax.default_backend() == "cpu")
    points = {}
    for stop in sorted(stops):
      batch.run_chunk(stop - batch.step)
      points[stop] = batch.evaluate()
    for i, run in enumerate(todo):
      self.records.append({
          "method": method, "steps": steps, "config": run["config"],
          "lr": run["lr"], "seed": run["seed"],
          "points": {str(stop): {k: float(v[i]) for k, v in metrics.items()}
                     for stop, metrics in points.items()}})
    self.progress(f"{self.task_name}: {method} {len(todo)} runs of {steps} "
                  f"steps in {time.perf_counter() - start:.0f}s")

  def tune(self, method: str, configs: list[dict[str, float] | None],
           steps: int, stops: Sequence[int]) -> None:
    """Seed-0 learning-rate grids for each config, widened at the edges."""
    start_grid = self.search.get("grids", START_GRIDS)[method]
    runs = [{"config": c, "lr": lr, "seed": 0}
            for c in configs for lr in start_grid]
    self.train(method, runs, steps, stops)
    for _ in range(self.search.get("max_widenings", MAX_WIDENINGS)):
      runs = []
      for config in configs:
        grid = self.grid(method, steps, config)
        best = self.best_lr(method, steps, config)
        if best == grid[0] and grid[0] != grid[-1]:
          lr = quality.neighbour(best, -1)
        elif best == grid[-1]:
          lr = quality.neighbour(best, +1)
        else:
          continue
        if lr is not None:
          runs.append({"config": config, "lr": lr, "seed": 0})
      if not runs:
        break
      self.train(method, runs, steps, stops)

  # ------------------------------------------------------------------ stages

  def stage(self, name: str, body) -> None:
    start = time.perf_counter()
    body()
    self.stages[name] = self.stages.get(name, 0.0) + (
        time.perf_counter() - start)
    self.save()
    self.progress(f"{self.task_name}: stage {name} saved")

  def horizon_stops(self, horizon: int) -> list[int]:
    return [horizon // 4, horizon // 2, horizon]

  def run(self, methods: Sequence[str], long_methods: Sequence[str]) -> None:
    self._invocation(methods, long_methods)
    T = self.steps
    seeds = self.search.get("seeds", SEEDS)
    sf_methods = [m for m in methods if m in SCHEDULE_FREE]
    baselines = [SCHEDULE_FREE[m] for m in sf_methods]

    def search_stage():
      for m in sf_methods:
        b1s, rs = self.search.get("b1s", B1S), self.search.get("rs", RS)[m]
        if self.search.get("one_at_a_time"):
          pairs = [(b1, CURRENT["r"]) for b1 in b1s] + [
              (CURRENT["b1"], r) for r in rs if r != CURRENT["r"]]
        else:
          pairs = list(itertools.product(b1s, rs))
        configs = [dict(b1=b1, r=r, warmup_fraction=CURRENT["warmup_fraction"])
                   for b1, r in pairs]
        self.tune(m, configs, T, self.horizon_stops(T))
      for b in baselines:
        for stop in self.horizon_stops(T):
          self.tune(b, [None], stop, [stop])

    def warmup_stage():
      for m in sf_methods:
        best = self.best_config(m, T, self.configs_run(m, T))
        configs = [{**best, "warmup_fraction": w}
                   for w in self.search.get("warmups", WARMUPS)]
        if m == "sf_adamw":
          configs += [c for c in self.extra_finalists if c not in configs]
        self.tune(m, configs, T, self.horizon_stops(T))

    def finalists(m):
      best = self.best_config(m, T, self.configs_run(m, T))
      chosen = [CURRENT]
      extra = self.extra_finalists if m == "sf_adamw" else []
      for config in ([best] if self.task_best or not extra else []) + extra:
        if config not in chosen:
          chosen.append(config)
      return chosen

    def long_stage():
      for m in sf_methods:
        if m in long_methods:
          self.tune(m, finalists(m), LONG * T, self.horizon_stops(LONG * T))
      for m in sf_methods:
        if m in long_methods:
          for stop in self.horizon_stops(LONG * T)[1:]:
            self.tune(SCHEDULE_FREE[m], [None], stop, [stop])

    def seed_stage(horizon):
      def body():
        for m in sf_methods:
          if horizon != T and m not in long_methods:
            continue
          runs = [{"config": c, "lr": self.best_lr(m, horizon, c), "seed": s}
                  for c in finalists(m) for s in seeds[1:]]
          self.train(m, runs, horizon, self.horizon_stops(horizon))
          b = SCHEDULE_FREE[m]
          for stop in self.horizon_stops(horizon):
            runs = [{"config": None, "lr": self.best_lr(b, stop, None),
                     "seed": s} for s in seeds[1:]]
            self.train(b, runs, stop, [stop])
      return body

    def weight_decay_stage():
      # Weight decay and learning rate chosen jointly on the validation loss
      # at T, the same grids for both methods; then seeds at the choice.
      # The cosine is scheduled for, and tuned at, each stop, as in stage 1.
      setting = self.search["weight_decay_setting"]
      runs = [("sf_adamw", setting, T, self.horizon_stops(T))] + [
          ("adamw_cosine", None, stop, [stop])
          for stop in self.horizon_stops(T)]
      for m, base, steps, stops in runs:
        configs = [_with_weight_decay(base, wd)
                   for wd in self.search["weight_decays"]]
        self.tune(m, configs, steps, stops)
        best = self.best_config(m, steps, configs)
        self.train(m, [{"config": best, "lr": self.best_lr(m, steps, best),
                        "seed": s} for s in seeds[1:]], steps, stops)
      if self.search.get("weight_decay_long"):
        # At 4T each method keeps the weight decay it chose at T and tunes
        # its learning rate again, the budget of stage 4.
        H = LONG * T
        chosen = {m: self.best_config(m, T, [
            _with_weight_decay(base, wd)
            for wd in self.search["weight_decays"]])
                  for m, base in (("sf_adamw", setting),
                                  ("adamw_cosine", None))}
        runs = [("sf_adamw", H, self.horizon_stops(H))] + [
            ("adamw_cosine", stop, [stop])
            for stop in self.horizon_stops(H)[1:]]
        for m, steps, stops in runs:
          self.tune(m, [chosen[m]], steps, stops)
          lr = self.best_lr(m, steps, chosen[m])
          self.train(m, [{"config": chosen[m], "lr": lr, "seed": s}
                         for s in seeds[1:]], steps, stops)

    self.stage("1-search", search_stage)
    self.stage("2-warmup", warmup_stage)
    self.stage("3-seeds-T", seed_stage(T))
    if long_methods:
      self.stage("4-long", long_stage)
      self.stage("5-seeds-4T", seed_stage(LONG * T))
    if self.search.get("weight_decays"):
      self.stage("6-weight-decay", weight_decay_stage)


# -------------------------------------------------------------------- analysis


def _stats(values: list[float]) -> dict[str, float]:
  return {"mean": float(np.mean(values)), "std": float(np.std(values)),
          "n": len(values)}


def _seed_metrics(records, method, steps, config, lr, stop):
  chosen = [r for r in records if r["method"] == method
            and r["steps"] == steps and r["config"] == config
            and r["lr"] == lr]
  out = {}
  for metric in ("test_loss", "test_accuracy"):
    out[metric] = _stats([r["points"][str(stop)][metric] for r in chosen])
  out["seeds"] = sorted(r["seed"] for r in chosen)
  return out


def analyze(saved: dict[str, Any]) -> dict[str, Any]:
  """Chosen learning rates, gap tables and sensitivity curves of one task."""
  records = saved["records"]
  T = saved["config"]["steps"]
  helper = Records(records)
  result = {"task": saved["task"], "description": saved["description"],
            "config": saved["config"], "invocations": saved["invocations"],
            "settings": {}, "gaps": {}, "sensitivity": {}}
  for m in SCHEDULE_FREE:
    configs = helper.configs_run(m, T)
    if not configs:
      continue
    result["settings"][m] = [
        {"config": c, "best_lr": helper.best_lr(m, T, c),
         "val_loss": min(helper.val_losses(m, T, c).values()),
         "lr_grid": helper.grid(m, T, c),
         "best_lr_at_grid_edge": helper.best_lr(m, T, c) in (
             helper.grid(m, T, c)[0], helper.grid(m, T, c)[-1])}
        for c in configs]
  for horizon in (T, LONG * T):
    stops = [horizon // 4, horizon // 2, horizon]
    table = {}
    for m, b in SCHEDULE_FREE.items():
      configs = [c for c in helper.configs_run(m, horizon)
                 if any(r["seed"] > 0 and r["config"] == c
                        and r["method"] == m and r["steps"] == horizon
                        for r in records)]
      if not configs or not all(helper.grid(b, s, None) for s in stops):
        continue
      rows = []
      for stop in stops:
        lr_b = helper.best_lr(b, stop, None)
        row = {"stop": stop, b: {"lr": lr_b, "lr_grid": helper.grid(
            b, stop, None), **_seed_metrics(records, b, stop, None, lr_b,
                                            stop)}}
        for c in configs:
          lr = helper.best_lr(m, horizon, c)
          entry = {"lr": lr, "lr_grid": helper.grid(m, horizon, c),
                   **_seed_metrics(records, m, horizon, c, lr, stop)}
          for metric in ("test_loss", "test_accuracy"):
            entry[f"{metric}_gap"] = (entry[metric]["mean"]
                                      - row[b][metric]["mean"])
          row[_key(c)] = entry
        rows.append(row)
      table[m] = rows
    result["gaps"][str(horizon)] = table
    sensitivity = {}
    for m, b in SCHEDULE_FREE.items():
      for method, configs in ((m, helper.configs_run(m, horizon)),
                              (b, [None])):
        for c in configs:
          grid = helper.grid(method, horizon, c)
          if not grid:
            continue
          points = [helper.find(method, horizon, c, lr, 0)["points"][
              str(horizon)] for lr in grid]
          sensitivity[f"{method}|{_key(c)}"] = {
              "lr": grid, "val_loss": [p["val_loss"] for p in points],
              "test_loss": [p["test_loss"] for p in points],
              "test_accuracy": [p["test_accuracy"] for p in points]}
    result["sensitivity"][str(horizon)] = sensitivity
  weight_decay = _weight_decay_analysis(records, T)
  if weight_decay:
    result["weight_decay"] = weight_decay
  return result


def _weight_decay_analysis(records, T) -> dict[str, Any]:
  """The weight-decay stage: each weight decay at its best lr, the choice.

  Schedule-Free AdamW: one run of T steps, chosen at T, read at each stop;
  AdamW + cosine: scheduled for and chosen at each stop.
  """
  helper = Records(records)
  stops = [T // 4, T // 2, T]

  def choose(m, steps, stop):
    decayed = helper.configs_run(m, steps, weight_decay=True)
    if not decayed:
      return None
    base = _with_weight_decay(decayed[0], DEFAULT_WEIGHT_DECAY)
    configs = sorted((c for c in [base] + decayed
                      if _with_weight_decay(c, DEFAULT_WEIGHT_DECAY) == base
                      and helper.grid(m, steps, c)), key=_weight_decay_of)
    best = helper.best_config(m, steps, configs)
    lr = helper.best_lr(m, steps, best)
    return {
        "setting": _key(base),
        "per_weight_decay": [
            {"weight_decay": _weight_decay_of(c),
             "lr_grid": helper.grid(m, steps, c),
             "best_lr": helper.best_lr(m, steps, c),
             "val_loss": min(helper.val_losses(m, steps, c).values())}
            for c in configs],
        "config": best, "weight_decay": _weight_decay_of(best), "lr": lr,
        "weight_decay_at_grid_edge": best in (configs[0], configs[-1]),
        "lr_at_grid_edge": lr in (helper.grid(m, steps, best)[0],
                                  helper.grid(m, steps, best)[-1]),
        **_seed_metrics(records, m, steps, best, lr, stop)}

  rows = []
  for stop in stops:
    cosine = choose("adamw_cosine", stop, stop)
    schedule_free = choose("sf_adamw", T, stop)
    if cosine is None or schedule_free is None:
      return {}
    row = {"stop": stop, "adamw_cosine": cosine, "sf_adamw": schedule_free}
    for metric in ("test_loss", "test_accuracy"):
      row[f"{metric}_gap"] = (schedule_free[metric]["mean"]
                              - cosine[metric]["mean"])
    rows.append(row)
  result = {
      "what": ("weight decay and learning rate chosen jointly on seed 0's "
               "validation loss: Schedule-Free AdamW at 'setting', one run "
               "of T steps chosen at T and read at each stop; AdamW + "
               "warmup-cosine scheduled for and chosen at each stop. Test "
               "numbers over seeds at the choice; gaps are Schedule-Free "
               "minus cosine"),
      "rows": rows}
  long_rows = _weight_decay_long_rows(
      records, T, rows[-1]["sf_adamw"]["config"],
      rows[-1]["adamw_cosine"]["config"])
  if long_rows:
    result["long_rows"] = long_rows
    result["long_what"] = (
        "horizon 4T: each method at the weight decay it chose at T, its "
        "learning rate tuned again (Schedule-Free at 4T, the cosine for each "
        "stop)")
  return result


def _weight_decay_long_rows(records, T, sf_config, cosine_config):
  """Horizon 4T at the weight decays chosen at T; [] if not run."""
  helper = Records(records)
  H = LONG * T
  if not helper.grid("sf_adamw", H, sf_config):
    return []
  rows = []
  for stop in (T, 2 * T, H):
    if not helper.grid("adamw_cosine", stop, cosine_config):
      return []
    row = {"stop": stop}
    for m, steps, config in (("adamw_cosine", stop, cosine_config),
                             ("sf_adamw", H, sf_config)):
      lr = helper.best_lr(m, steps, config)
      row[m] = {"setting": _key(config), "lr": lr,
                "lr_grid": helper.grid(m, steps, config),
                **_seed_metrics(records, m, steps, config, lr, stop)}
    for metric in ("test_loss", "test_accuracy"):
      row[f"{metric}_gap"] = (row["sf_adamw"][metric]["mean"]
                              - row["adamw_cosine"][metric]["mean"])
    rows.append(row)
  return rows


def recommend(analyses: list[dict[str, Any]]) -> dict[str, Any]:
  """The Schedule-Free AdamW setting with the best mean relative val loss."""
  scores: dict[str, list[float]] = {}
  configs = {}
  per_task = {}
  for a in analyses:
    T = a["config"]["steps"]
    helper = Records(a["_records"])
    if not helper.grid("adamw_cosine", T, None):
      continue
    reference = min(helper.val_losses("adamw_cosine", T, None).values())
    per_task[a["task"]] = {}
    for entry in a["settings"].get("sf_adamw", []):
      key = _key(entry["config"])
      configs[key] = entry["config"]
      relative = entry["val_loss"] / reference - 1
      scores.setdefault(key, []).append(relative)
      per_task[a["task"]][key] = relative
  complete = {k: float(np.mean(v)) for k, v in scores.items()
              if len(v) == len(per_task)}
  if not complete:
    return {}
  best = min(complete, key=complete.get)
  return {
      "recommended": {"b1": configs[best]["b1"], "r": configs[best]["r"],
                      "weight_lr_power": 2.0,
                      "warmup_fraction": configs[best]["warmup_fraction"]},
      "recommendation_scores": {
          "what": ("seed-0 validation loss at T of Schedule-Free AdamW with "
                   "its best learning rate, over that of AdamW + "
                   "warmup-cosine tuned for T, minus 1; mean over tasks"),
          "mean": dict(sorted(complete.items(), key=lambda kv: kv[1])),
          "per_task": per_task}}


# ------------------------------------------------------------------- reporting


def format_tables(summary: dict[str, Any]) -> str:
  lines = []
  for a in summary["tasks"].values():
    lines.append(f"{a['task']}: {a['description']}")
    for horizon, table in a["gaps"].items():
      for m, rows in table.items():
        b = SCHEDULE_FREE[m]
        keys = [k for k in rows[0] if k not in ("stop", b)]
        header = ("stop", f"{b} loss/acc (lr)") + tuple(
            f"{m} {k}" for k in keys)
        body = [header]
        for row in rows:
          cells = [str(row["stop"]), _cell(row[b])]
          cells += [_cell(row[k]) for k in keys]
          body.append(tuple(cells))
        lines.append(f"horizon {horizon}: test loss, accuracy (mean±std "
                     "over seeds) and chosen lr")
        lines += quality._columns(body)  # pylint: disable=protected-access
    weight_decay = a.get("weight_decay")
    if weight_decay:
      lines.append("weight decay, chosen with the lr on validation (seed-0 "
                   "validation loss per weight decay at its best lr); test "
                   "at the choice")
      for row in weight_decay["rows"]:
        lines.append(f"  stop {row['stop']}:")
        for m in ("adamw_cosine", "sf_adamw"):
          entry = row[m]
          lines.append(
              f"    {m} {entry['setting']}: wd {entry['weight_decay']:g} "
              f"{_cell(entry)}; " + ", ".join(
                  f"{e['weight_decay']:g}: {e['val_loss']:.3f} "
                  f"({e['best_lr']:g})" for e in entry["per_weight_decay"]))
      for row in weight_decay.get("long_rows", []):
        lines.append(f"  horizon 4T, stop {row['stop']}: " + "; ".join(
            f"{m} {row[m]['setting']} {_cell(row[m])}"
            for m in ("adamw_cosine", "sf_adamw")))
  if "recommended" in summary:
    lines.append(f"recommended: {summary['recommended']}")
  return "\n".join(lines)


def _cell(entry) -> str:
  return (f"{entry['test_loss']['mean']:.3f}±{entry['test_loss']['std']:.3f}"
          f" {100 * entry['test_accuracy']['mean']:.1f}%"
          f" ({entry['lr']:g})")


def plot(analysis: dict[str, Any], out_dir: pathlib.Path) -> pathlib.Path:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  horizons = sorted(analysis["sensitivity"], key=int)
  fig, axes = plt.subplots(2, max(2, len(horizons)), figsize=(13, 9),
                           squeeze=False)
  for col, horizon in enumerate(horizons):
    ax = axes[0][col]
    for m, table in analysis["gaps"].get(horizon, {}).items():
      b = SCHEDULE_FREE[m]
      stops = [row["stop"] for row in table]
      style = "-" if m == "sf_adamw" else ":"
      for key in [k for k in table[0] if k != "stop"]:
        mean = [row[key]["test_loss"]["mean"] for row in table]
        std = [row[key]["test_loss"]["std"] for row in table]
        label = (f"{b} tuned per stop" if key == b
                 else f"{m} {key}, one run")
        ax.errorbar(stops, mean, yerr=std, fmt="o" + style, capsize=3,
                    label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("stopping step")
    ax.set_ylabel("test loss (mean±std, 3 seeds)")
    ax.set_title(f"horizon {horizon}: stop at H/4, H/2, H", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a horizon not run has no curves
      ax.legend(fontsize=6)
    ax = axes[1][col]
    # The baselines and the settings of the gap table (the search's other
    # settings are in the JSON).
    shown = {f"{m}|{key}" for table in analysis["gaps"].get(horizon, {})
             .values() for key in table[0] if key != "stop" for m in
             SCHEDULE_FREE} | {f"{b}|-" for b in BASELINES}
    curves = {name: c for name, c in analysis["sensitivity"][horizon].items()
              if name in shown}
    finite = [v for c in curves.values() for v in c["val_loss"]
              if math.isfinite(v)]
    for name, c in curves.items():
      method = name.split("|")[0]
      loss = np.asarray(c["val_loss"], float)
      # Diverged runs (inf or huge losses) are drawn as gaps.
      loss[~(loss < 10 * min(finite))] = np.nan
      ax.plot(c["lr"], loss, "o-" if method in BASELINES else ".--",
              label=name.replace("|-", " (tuned for H)").replace("|", " "),
              lw=2 if method in BASELINES else 1)
    ax.set_xscale("log")
    if finite:
      worst_best = max(min(v for v in c["val_loss"] if math.isfinite(v))
                       for c in curves.values() if any(
                           math.isfinite(v) for v in c["val_loss"]))
      ax.set_ylim(min(finite) * 0.95, worst_best * 1.5)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"validation loss at {horizon} (seed 0)")
    ax.set_title("learning-rate sensitivity", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a horizon not run has no curves
      ax.legend(fontsize=6)
  fig.suptitle(f"{analysis['task']}: {analysis['description']}", fontsize=8)
  fig.tight_layout()
  path = out_dir / f"schedule_free_study-{analysis['task']}.png"
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_weight_decay(analysis: dict[str, Any],
                      out_dir: pathlib.Path) -> pathlib.Path:
  """Validation loss at T against weight decay, each at its best lr."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows = analysis["weight_decay"]["rows"]
  fig, ax = plt.subplots(figsize=(6, 4))
  for row in rows:
    for m, style in (("adamw_cosine", "o-"), ("sf_adamw", "s--")):
      entries = row[m]["per_weight_decay"]
      if m == "sf_adamw" and row is not rows[-1]:
        continue  # one Schedule-Free run, chosen at T
      label = (f"AdamW + cosine for {row['stop']}" if m == "adamw_cosine"
               else f"Schedule-Free AdamW {row[m]['setting']}")
      ax.plot([e["weight_decay"] for e in entries],
              [e["val_loss"] for e in entries], style, label=label)
  ax.set_xscale("log")
  ax.set_xlabel("weight decay (decoupled: lr * wd of the weights per step)")
  ax.set_ylabel("validation loss at the stop (seed 0, best lr)")
  ax.set_title(f"{analysis['task']}: weight decay", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  path = out_dir / f"schedule_free_study-{analysis['task']}-weight-decay.png"
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def summarize(tasks: Sequence[str], out_dir: pathlib.Path,
              command: str) -> dict[str, Any]:
  analyses = []
  for name in tasks:
    path = out_dir / f"schedule_free_study-{name}.json"
    if not path.exists():
      continue
    saved = _upgraded(json.loads(path.read_text()))
    analysis = analyze(saved)
    analysis["_records"] = saved["records"]
    analyses.append(analysis)
  summary = {"command": command, **recommend(analyses), "tasks": {}}
  for a in analyses:
    a.pop("_records")
    summary["tasks"][a["task"]] = a
    plot(a, out_dir)
    if "weight_decay" in a:
      plot_weight_decay(a, out_dir)
  (out_dir / "schedule_free_study.json").write_text(
      json.dumps(summary, indent=1))
  return summary


# ------------------------------------------------------------------------ main


def _setting(item: str) -> dict[str, float]:
  """``b1=B1,r=R,warmup=FRACTION`` as a Schedule-Free config."""
  fields = dict(part.split("=") for part in item.split(","))
  return dict(b1=float(fields["b1"]), r=float(fields["r"]),
              warmup_fraction=float(fields["warmup"]))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny models and runs, a smaller search")
  parser.add_argument("--tasks", default="mnist1d,charlm")
  parser.add_argument("--methods", default="sf_adamw,sf_sgd",
                      help="Schedule-Free methods (each with its baseline)")
  parser.add_argument("--long-methods", default=None,
                      help="methods also run at 4T (default: --methods)")
  parser.add_argument("--one-at-a-time", action="store_true",
                      help="search b1 at r=0 and r at b1=0.9 instead of "
                           "every (b1, r) pair")
  parser.add_argument("--grid", action="append", default=[],
                      metavar="METHOD=LR,LR,...",
                      help="starting learning-rate grid of a method")
  parser.add_argument("--finalist", action="append", default=[],
                      metavar="b1=B1,r=R,warmup=FRACTION",
                      help="a Schedule-Free AdamW setting to run at T, 4T and "
                           "with every seed besides the current and the best "
                           "(e.g. the recommendation from the other task)")
  parser.add_argument("--no-task-best", action="store_true",
                      help="with --finalist: leave this task's own best "
                           "Schedule-Free AdamW setting out of stages 3-5")
  parser.add_argument("--weight-decay", default=None, metavar="WD,WD,...",
                      help="stage 6: Schedule-Free AdamW (at --wd-setting) "
                           "and AdamW + cosine over these weight decays, "
                           "jointly with the learning rate, at T")
  parser.add_argument("--wd-setting", default=None,
                      metavar="b1=B1,r=R,warmup=FRACTION",
                      help="Schedule-Free AdamW's setting in stage 6 "
                           "(default: the demo's, _demo_models.SF_ADAMW_"
                           "SETTINGS)")
  parser.add_argument("--wd-long", action="store_true",
                      help="stage 6 also at 4T: each method at the weight "
                           "decay it chose at T, its learning rate tuned "
                           "again")
  parser.add_argument("--steps", type=int, default=None,
                      help="override T of every task")
  parser.add_argument("--summarize", action="store_true",
                      help="only rebuild the summary JSON and plots")
  parser.add_argument("--out-dir", default=None,
                      help="default benchmarks/results, or a temporary "
                           "folder with --quick")
  return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = build_parser()
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  methods = [m for m in args.methods.split(",") if m]
  long_methods = (methods if args.long_methods is None else
                  [m for m in args.long_methods.split(",") if m])
  for value, known, what in ((tasks, quality.TASK_BUILDERS, "tasks"),
                             (methods, SCHEDULE_FREE, "methods"),
                             (long_methods, SCHEDULE_FREE, "long methods")):
    unknown = [v for v in value if v not in known]
    if unknown:
      parser.error(f"unknown {what} {unknown}; choose among {list(known)}")
  if args.out_dir is not None:
    out_dir = pathlib.Path(args.out_dir)
  elif args.quick:
    out_dir = pathlib.Path(tempfile.gettempdir()) / "optfree-sf-study-quick"
  else:
    out_dir = ROOT / "benchmarks" / "results"
  out_dir.mkdir(parents=True, exist_ok=True)
  command = " ".join(["python", "benchmarks/schedule_free_study.py",
                      *(argv if argv is not None else sys.argv[1:])])
  start = time.perf_counter()
  progress = lambda message: print(
      f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)
  if not args.summarize:
    search = dict(QUICK_SEARCH) if args.quick else {}
    if args.one_at_a_time:
      search["one_at_a_time"] = True
    if args.no_task_best:
      search["task_best"] = False
    for item in args.finalist:
      search.setdefault("extra_finalists", []).append(_setting(item))
    if args.weight_decay:
      if "sf_adamw" not in methods:
        parser.error("--weight-decay needs sf_adamw in --methods")
      search["weight_decays"] = [float(v) for v in
                                 args.weight_decay.split(",")]
      if args.wd_long:
        search["weight_decay_long"] = True
      search["weight_decay_setting"] = (
          _setting(args.wd_setting) if args.wd_setting else {
              k: v for k, v in _demo_models.SF_ADAMW_SETTINGS.items()
              if k in CURRENT})
    for item in args.grid:
      method, _, values = item.partition("=")
      if method not in START_GRIDS:
        parser.error(f"unknown method in --grid {item!r}")
      search["grids"] = {**search.get("grids", START_GRIDS),
                         method: tuple(float(v) for v in values.split(","))}
    for name in tasks:
      settings = dict((quality.QUICK if args.quick else quality.FULL)[name])
      if args.steps is not None:
        settings["steps"] = args.steps
      task = quality.TASK_BUILDERS[name](**settings["model"])
      study = Study(name, task, settings,
                    out_dir / f"schedule_free_study-{name}.json", progress,
                    search, command)
      study.run(methods, long_methods)
  summary = summarize(list(quality.TASK_BUILDERS), out_dir, command)
  print(format_tables(summary))
  progress("done")
  return summary


if __name__ == "__main__":
  main()
