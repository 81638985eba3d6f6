"""Where optax.contrib's Schedule-Free differs from the reference, measured.

optfree's tests assert optfree's behaviour against the reference
(tests/test_schedule_free.py); this script measures optax.contrib's on the
same golden problems (tests/reference/schedule_free.npz, written by
schedulefree 1.4.1), so that the parity guide can give numbers for optax
without a test that would fail when optax improves.

  python benchmarks/optax_contrib_differences.py   # writes the JSON, prints

Writes benchmarks/results/optax_contrib_differences.json: per difference, the
largest error of y over 120 steps relative to the trajectory's scale, for
optax and for optfree (float64), or the quantity named.
"""

from __future__ import annotations

import inspect
import json
import pathlib
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  pylint: disable=wrong-import-position
import numpy as np  # noqa: E402  pylint: disable=wrong-import-position
import optax  # noqa: E402  pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import optfree  # noqa: E402  pylint: disable=wrong-import-position
import test_schedule_free as golden  # noqa: E402  pylint: disable=wrong-import-position

OUT = ROOT / "benchmarks" / "results" / "optax_contrib_differences.json"


def _optax_adamw_case(name, **overrides):
  config = json.loads(str(golden.GOLDEN[f"{name}/config"]))["kwargs"]
  b1, b2 = config.get("betas", (0.9, 0.999))
  kwargs = dict(learning_rate=config["lr"], b1=b1, b2=b2,
                eps=config.get("eps", 1e-8),
                weight_decay=config.get("weight_decay", 0.0),
                warmup_steps=config.get("warmup_steps"))
  return optax.contrib.schedule_free_adamw(**{**kwargs, **overrides})


def _error(optimizer, name):
  ys, _, _ = golden._train(optimizer, jnp.float64)  # pylint: disable=protected-access
  return float(golden._relative_error(ys, name))  # pylint: disable=protected-access


def _weight_sum(optimizer, steps=600):
  params = {"w": jnp.ones(4, jnp.bfloat16)}
  grads = {"w": jnp.zeros(4, jnp.bfloat16)}

  def step(state, _):
    return optimizer.update(grads, state, params)[1], None

  state = jax.jit(lambda: jax.lax.scan(
      step, optimizer.init(params), None, length=steps)[0])()
  return float(state.weight_sum)


def measure() -> dict:
  warmup = "adamw_warmup_decay"
  wrap = "wrap_adamw"
  base = optax.adamw(0.05, b1=0.0, b2=0.999, weight_decay=0.1)
  zero_warmup_ys, _, _ = golden._train(  # pylint: disable=protected-access
      _optax_adamw_case("adamw_default", warmup_steps=0), jnp.float64)
  return {
      "warmup": {
          "case": warmup,
          "optax": _error(_optax_adamw_case(warmup), warmup),
          "optfree": _error(golden._optimizer(warmup), warmup),  # pylint: disable=protected-access
      },
      "zero_warmup": {
          "case": "adamw_default with warmup_steps=0",
          "optax_max_move": float(np.abs(
              zero_warmup_ys - golden.GOLDEN["problem/init"]).max()),
          "optfree": _error(optfree.schedule_free_adamw(0.05, warmup_steps=0),
                            "adamw_default"),
      },
      "wrapper_base_params": {
          "case": wrap,
          "optax": _error(optax.contrib.schedule_free(base, 0.05, b1=0.95),
                          wrap),
          "optfree": _error(golden._optimizer(wrap), wrap),  # pylint: disable=protected-access
      },
      "bfloat16_weight_sum_after_600_steps": {
          "optax": _weight_sum(optax.contrib.schedule_free_sgd(1.0)),
          "optfree": _weight_sum(optfree.schedule_free_sgd(1.0)),
      },
      "has_r": {
          "optax": "r" in inspect.signature(
              optax.contrib.schedule_free_adamw).parameters,
          "optfree": True,
      },
      "versions": {"optax": optax.__version__, "jax": jax.__version__,
                   "python": platform.python_version()},
      "command": "python benchmarks/optax_contrib_differences.py",
  }


def main() -> None:
  results = measure()
  OUT.write_text(json.dumps(results, indent=1) + "\n")
  for key, value in results.items():
    print(key, value)


if __name__ == "__main__":
  main()
