"""A donated, jitted step writes each buffer once and needs no scratch buffer.

An optimizer step is memory-bound. Each update is laid out so that every old
state buffer has a single reader (its own in-place update) and no shared
subexpression is stored, so XLA updates params and state in place with one
loop per output; a regression (a copy of z or m, a stored direction, a state
output computed in a second loop) shows up here as a temporary allocation as
large as a param or as an extra param-sized loop. The benchmark reports the
temporaries too (benchmarks/step_time.py, column "temps").
"""

import re

import jax
import jax.numpy as jnp
import optax
import pytest

from optimizer_table import OPTIMIZER_IDS, OPTIMIZERS

SHAPE = (256, 256)

# The known exception, one param-sized temporary (recorded, not hidden): the
# wrapper stores the base optimizer's update, which both z and y read; the
# wrapper cannot recompute it without running the base optimizer twice.
ONE_TEMPORARY = {"schedule_free_wrapper"}


def _compiled_step(entry, dtype):
  params = {"w": jnp.ones(SHAPE, dtype), "b": jnp.ones(SHAPE[:1], dtype)}
  optimizer = entry.make()

  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  args = (params, optimizer.init(params), params)
  return jax.jit(step, donate_argnums=(0, 1)).lower(*args).compile(), args


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_donated_step_has_no_param_sized_temporary(entry, dtype):
  compiled, _ = _compiled_step(entry, dtype)
  param_bytes = SHAPE[0] * SHAPE[1] * jnp.dtype(dtype).itemsize
  allowed = 1 if entry.name in ONE_TEMPORARY else 0
  temporaries = compiled.memory_analysis().temp_size_in_bytes / param_bytes
  # Fractions are scalars and small leaves; a whole buffer is a regression.
  assert temporaries < allowed + 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_each_param_sized_output_is_written_by_one_loop(entry, dtype):
  # A step is memory-bound: every extra loop over a param-sized buffer costs
  # a full pass of memory traffic even when it needs no temporary (e.g. a
  # state output computed as a second loop over another output).
  compiled, args = _compiled_step(entry, dtype)
  outputs = sum(leaf.shape == SHAPE for leaf in jax.tree.leaves(args[:2]))
  entry_computation = compiled.as_text().split("\nENTRY ")[1]
  loops = [op for op in re.findall(
      r"= \w+\[256,256\]\{1,0\} ([\w-]+)\(", entry_computation)
           if op not in ("parameter", "get-tuple-element", "bitcast")]
  allowed = 1 if entry.name in ONE_TEMPORARY else 0
  assert len(loops) == outputs + allowed, loops


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_each_param_sized_loop_has_a_scalar_operand(entry, dtype):
  # XLA:CPU compiles an elementwise loop with no scalar operand (e.g. a bare
  # maximum of two buffers) with a slower emitter than a loop with one: 2-3x
  # the time in float32 once the buffers sit in cache. AMSBound's running
  # maximum was such a loop, 0.75x optax.amsgrad at 1M params, until it
  # multiplied by an exact 1 (benchmarks/step_time.py).
  compiled, _ = _compiled_step(entry, dtype)
  text = compiled.as_text()
  bodies = dict(re.findall(r"\n(%[\w.-]+) \(.*?\n(.*?)\n\}", text, re.S))
  entry_computation = text.split("\nENTRY ")[1]
  loops = re.findall(
      r"(%[\w.-]+) = \w+\[256,256\]\{1,0\} fusion\(.*calls=(%[\w.-]+)",
      entry_computation)
  assert loops
  without_scalar = [name for name, body in loops
                    if "broadcast(" not in bodies[body]]
  assert not without_scalar


# With rounding="stochastic" (bfloat16 params and state), XLA:CPU recomputes
# a rounded buffer (the new z, m) inside the loop of the update that reads it,
# from the old buffer, and then copies the old buffer so that it survives its
# own in-place update: up to one param-sized temporary per rounded state
# buffer (in bfloat16-param units; the wrapper's stored base update is
# float32 there). Recorded here as a ceiling, measured at this commit, so that
# it can only go down. Tried without success: an optimization barrier on the
# rounded buffer (XLA:CPU removes barriers before fusion) and an exact
# division by a runtime 1 to make the rounding "expensive" (rewritten to a
# multiplication).
STOCHASTIC_TEMPORARIES = {
    "schedule_free_sgd": 1, "schedule_free_adamw": 4, "schedule_free_radam": 4,
    "schedule_free_wrapper": 2, "adabound": 2, "amsbound": 2, "adaboundw": 2,
    "lion": 1,
}


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_stochastic_step_temporaries_stay_under_the_recorded_ceiling(entry):
  params = {"w": jnp.ones(SHAPE, jnp.bfloat16),
            "b": jnp.ones(SHAPE[:1], jnp.bfloat16)}
  optimizer = entry.make(rounding="stochastic")

  def step(params, state, grads):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, optimizer.init(params), params).compile()
  param_bytes = SHAPE[0] * SHAPE[1] * 2
  temporaries = compiled.memory_analysis().temp_size_in_bytes / param_bytes
  assert temporaries < STOCHASTIC_TEMPORARIES[entry.name] + 0.5
