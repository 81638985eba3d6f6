"""How ScheduleFree+'s defaults were chosen: settings searched on validation.

Each setting is one run (seed 0) of ``optfree.schedule_free_plus(**setting)``
on a quality-benchmark task (benchmarks/quality.py's FULL settings: the
MNIST-1D CNN, T=800; the character-level transformer, T=400), trained to 4T
and evaluated at x (``optfree.eval_params``) at T/4, T/2, T and 4T. The
settings are vmapped (MNIST-1D: run one after another inside one program).
Validation loss picks; test loss is reported beside it.

  python benchmarks/schedule_free_plus_search.py --task mnist1d \\
      --settings '[{"learning_rate": 0.3, "c_warmup": 200}]'

Appends one record per run to benchmarks/results/schedule_free_plus_search.json
(task, setting, seed, and per horizon the validation and test loss), with the
command that produced it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))

import optfree  # noqa: E402  pylint: disable=wrong-import-position
import quality  # noqa: E402  pylint: disable=wrong-import-position
from optfree import _demo_models  # noqa: E402  pylint: disable=wrong-import-position

OUT = ROOT / "benchmarks" / "results" / "schedule_free_plus_search.json"
# The values a setting leaves out: the reference's (learning rate 1, no
# warmup of either kind, no L1 averaging).
REFERENCE = {"learning_rate": 1.0, "polyak_b": 0.0, "warmup_steps": 0,
             "c_warmup": 0}


def search(task_name: str, settings: list[dict], seed: int,
           horizon_multiple: int = 4) -> list[dict]:
  """One run per setting; returns a record per run."""
  config = quality.FULL[task_name]
  task = quality.TASK_BUILDERS[task_name](**config["model"])
  steps = config["steps"]
  names = sorted({name for setting in settings for name in setting})
  values = {name: [float(setting.get(name, REFERENCE[name]))
                   for setting in settings] for name in names}
  spec = _demo_models.OptimizerSpec(
      "sf_plus_search", "ScheduleFree+ (search)",
      lambda mapping, total: optfree.schedule_free_plus(**mapping), 1.0,
      (1.0,), schedule_free=True)
  runs = _demo_models.Runs(task, spec, values, [seed] * len(settings),
                           horizon_multiple * steps,
                           sequential=task_name == "mnist1d")
  stops = sorted({steps // 4, steps // 2, steps, horizon_multiple * steps})
  points = {}
  for stop in stops:
    runs.run_chunk(stop - runs.step)
    points[stop] = runs.evaluate()
  return [{
      "task": task_name,
      "setting": {**REFERENCE, **setting},
      "seed": seed,
      "horizons": {str(stop): {
          "val_loss": float(points[stop]["val_loss"][i]),
          "test_loss": float(points[stop]["test_loss"][i])}
                   for stop in stops},
  } for i, setting in enumerate(settings)]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", choices=sorted(quality.FULL), required=True)
  parser.add_argument("--settings", required=True,
                      help="a JSON list of keyword-argument dicts")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  records = search(args.task, json.loads(args.settings), args.seed)
  command = "python benchmarks/schedule_free_plus_search.py " + shlex.join(
      sys.argv[1:] if argv is None else argv)
  for record in records:
    record["command"] = command
    print(json.dumps(record))
  existing = json.loads(OUT.read_text()) if OUT.exists() else []
  OUT.write_text(json.dumps(existing + records, indent=1) + "\n")
  print(f"{len(records)} runs in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  main()
