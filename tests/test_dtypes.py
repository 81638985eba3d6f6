"""Parameter and state dtypes, for every optfree optimizer.

Params in float32, bfloat16, float16 and float64 (and a tree mixing two of
them) keep their dtype through ``optax.apply_updates``; updates come out in the
params' dtype, so nothing is silently upcast; the state keeps its dtypes from
step to step (a drifting dtype would retrace ``jit`` and break ``lax.scan``);
``state_dtype`` / ``mu_dtype`` put the param-sized buffers in the asked dtype;
and scalar state (counts, Schedule-Free's weight_sum and lr_max) is never kept
in a dtype narrower than float32. Each update gets ``value=``, a stand-in loss
of the params (see tests/optimizer_table.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree

from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS
from tests.optimizer_table import stand_in_loss

# RAdam (silent SGD phase) leaves params in place for its first 4 steps.
STEPS = 6
# Params without 0-d leaves, so every 0-d state leaf is genuine scalar state.
SHAPES = {"kernel": (3, 4), "bias": (4,)}
PARAM_DTYPES = {
    "float32": ("float32", "float32"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "float16": ("float16", "float16"),
    "float64": ("float64", "float64"),
    "mixed_bf16_f32": ("bfloat16", "float32"),
}
# Which keyword moves the param-sized state into another dtype, and whether it
# covers every param-sized buffer ("all") or only the first moment ("some").
STATE_DTYPE_ARGUMENT = {
    "schedule_free_sgd": ("state_dtype", "all"),
    "schedule_free_adamw": ("state_dtype", "all"),
    "schedule_free_radam": ("state_dtype", "all"),
    # The wrapper owns z; the base optimizer's buffers are the base's business.
    "schedule_free_wrapper": ("state_dtype", "some"),
    "adabound": ("mu_dtype", "some"),
    "amsbound": ("mu_dtype", "some"),
    "adaboundw": ("mu_dtype", "some"),
    "lion": ("mu_dtype", "all"),
    "schedule_free_plus": ("state_dtype", "all"),
}


def _params(kernel_dtype, bias_dtype):
  return {
      "kernel": jnp.linspace(-1.0, 1.0, 12).reshape(SHAPES["kernel"]).astype(
          kernel_dtype),
      "bias": jnp.full(SHAPES["bias"], 0.25).astype(bias_dtype),
  }


def _gradient(params, step):
  keys = jax.random.split(jax.random.key(step), 2)
  return {
      name: 0.5 * jax.random.normal(key, leaf.shape).astype(leaf.dtype)
      for key, (name, leaf) in zip(keys, sorted(params.items()))
  }


def _step(tx, params, state, gradient):
  updates, state = tx.update(gradient, state, params,
                             value=stand_in_loss(params))
  return optax.apply_updates(params, updates), state, updates


def _dtypes(tree):
  return jax.tree.map(lambda leaf: jnp.asarray(leaf).dtype, tree)


def _param_sized_leaves(state):
  shapes = set(SHAPES.values())
  return [leaf for leaf in jax.tree.leaves(state)
          if jnp.ndim(leaf) > 0 and jnp.shape(leaf) in shapes]


def _scalar_float_leaves(state):
  return [leaf for leaf in jax.tree.leaves(state)
          if jnp.ndim(leaf) == 0 and jnp.issubdtype(jnp.asarray(leaf).dtype,
                                                    jnp.floating)]


_HISTORIES = {}


def _history(entry, param_dtypes, **overrides):
  """The (params, state, updates) of a short run, shared between tests."""
  key = (entry.name, param_dtypes, jax.config.jax_enable_x64,
         tuple(sorted(overrides.items())))
  if key not in _HISTORIES:
    _HISTORIES[key] = _run(entry.make(**overrides),
                           _params(*PARAM_DTYPES[param_dtypes]))
  return _HISTORIES[key]


def _run(tx, params):
  step = jax.jit(functools.partial(_step, tx))
  state = tx.init(params)
  history = [(params, state, None)]
  for index in range(STEPS):
    params, state, updates = step(params, state, _gradient(params, index))
    history.append((params, state, updates))
  return history


@pytest.mark.parametrize("param_dtypes", PARAM_DTYPES)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_params_updates_and_state_keep_their_dtypes(entry, param_dtypes,
                                                    request):
  if param_dtypes == "float64":
    request.getfixturevalue("x64")
  history = _history(entry, param_dtypes)
  params = history[0][0]

  initial_state_dtypes = _dtypes(history[0][1])
  for new_params, state, updates in history[1:]:
    assert _dtypes(new_params) == _dtypes(params)
    assert _dtypes(updates) == _dtypes(params)
    assert _dtypes(state) == initial_state_dtypes
    for leaf in jax.tree.leaves((new_params, updates)):
      assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
  # Non-vacuous: the run did update (bf16 params may round small steps away).
  assert any(np.any(np.asarray(updates["kernel"], np.float64) != 0)
             for _, _, updates in history[1:])


@pytest.mark.parametrize("param_dtypes", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_state_follows_params_dtype_by_default(entry, param_dtypes):
  params = _params(*PARAM_DTYPES[param_dtypes])
  state = entry.make().init(params)
  buffers = _param_sized_leaves(state)
  assert buffers
  assert {jnp.asarray(leaf).dtype for leaf in buffers} == {
      jnp.dtype(param_dtypes)}


@pytest.mark.parametrize("param_dtypes",
                         ["bfloat16", "float16", "mixed_bf16_f32"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_scalar_state_is_never_low_precision(entry, param_dtypes):
  # A bf16 running sum of averaging weights stops growing after a few hundred
  # steps; counts and sums must be float32 or wider whatever the params are.
  for _, state, _ in _history(entry, param_dtypes):
    narrow = [jnp.asarray(leaf).dtype for leaf in _scalar_float_leaves(state)
              if jnp.finfo(jnp.asarray(leaf).dtype).bits < 32]
    assert not narrow, f"scalar state in {narrow}: {_dtypes(state)}"


def test_schedule_free_has_scalar_state_to_check():
  # Guards the test above against passing vacuously on Schedule-Free.
  params = _params("bfloat16", "bfloat16")
  for entry in OPTIMIZERS:
    if entry.schedule_free:
      assert _scalar_float_leaves(entry.make().init(params)), entry.name


# The use each argument is for: Schedule-Free's state_dtype keeps z (and v)
# wide under bf16 params; mu_dtype halves the momentum's memory.
DTYPE_USE = {"state_dtype": ("bfloat16", "float32"),
             "mu_dtype": ("float32", "bfloat16")}


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_state_dtype_argument_is_honoured(entry):
  argument, coverage = STATE_DTYPE_ARGUMENT[entry.name]
  param_dtype, state_dtype = DTYPE_USE[argument]
  history = _history(entry, param_dtype, **{argument: jnp.dtype(state_dtype)})
  params = history[0][0]
  for new_params, state, updates in history:
    buffer_dtypes = [jnp.asarray(leaf).dtype
                     for leaf in _param_sized_leaves(state)]
    if coverage == "all":
      assert set(buffer_dtypes) == {jnp.dtype(state_dtype)}
    else:
      assert jnp.dtype(state_dtype) in buffer_dtypes
    assert _dtypes(new_params) == _dtypes(params)
    if updates is not None:
      # Updates may be wider than bf16 params here: apply_updates then adds in
      # the wider dtype and rounds once, which is the more accurate order.
      for leaf in jax.tree.leaves(updates):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


# Param-sized buffers each optimizer needs (DESIGN.md, principle 3): the
# state holds these and scalars, nothing else. ScheduleFree+'s reference
# keeps x, y, z, m and v; here the params are y and x follows from y and z.
PARAM_SIZED_BUFFERS = {
    "schedule_free_sgd": 1,  # z
    "schedule_free_adamw": 2,  # z, v
    "schedule_free_radam": 2,  # z, v
    "schedule_free_wrapper": 3,  # z, and optax.adam's m and v
    "adabound": 2,  # m, v
    "amsbound": 3,  # m, v, the maximum of v
    "adaboundw": 2,  # m, v
    "lion": 1,  # m
    "schedule_free_plus": 3,  # z, m, v
}


@pytest.mark.parametrize("param_dtypes",
                         ["float32", "bfloat16", "mixed_bf16_f32"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_state_bytes_are_its_buffers_and_scalars(entry, param_dtypes):
  history = _history(entry, param_dtypes)
  params = history[0][0]
  param_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
  for _, state, _ in history:
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(state)]
    scalars = [leaf for leaf in leaves if leaf.ndim == 0]
    total = sum(leaf.nbytes for leaf in leaves)
    assert total == (PARAM_SIZED_BUFFERS[entry.name] * param_bytes
                     + sum(leaf.nbytes for leaf in scalars))
    # Each buffer is like one param (no flattened or stacked copies).
    assert len(leaves) - len(scalars) == (
        PARAM_SIZED_BUFFERS[entry.name] * len(jax.tree.leaves(params)))


# ScheduleFree+ with stochastic rounding -------------------------------------
# (tests/test_rounding.py checks the other optimizers alike.)

NEEDS_VALUE = [entry for entry in OPTIMIZERS if entry.needs_value]
NEEDS_VALUE_IDS = [entry.name for entry in NEEDS_VALUE]


@pytest.mark.parametrize("param_dtypes", ["bfloat16", "float16",
                                          "mixed_bf16_f32"])
@pytest.mark.parametrize("entry", NEEDS_VALUE, ids=NEEDS_VALUE_IDS)
def test_stochastic_rounding_update_lands_exactly(entry, param_dtypes):
  # The update is float32 for a low-precision param, and new param - old
  # param is exactly the update: no second rounding in apply_updates.
  history = _history(entry, param_dtypes, rounding="stochastic")
  for (params, _, _), (new_params, state, updates) in zip(history,
                                                          history[1:]):
    assert _dtypes(new_params) == _dtypes(params)
    assert _dtypes(state) == _dtypes(history[0][1])
    for new, old, update in zip(*map(jax.tree.leaves,
                                     (new_params, params, updates))):
      assert update.dtype == jnp.promote_types(old.dtype, jnp.float32)
      np.testing.assert_array_equal(
          np.asarray(new, np.float64),
          np.asarray(old, np.float64) + np.asarray(update, np.float64))
  nearest = _history(entry, param_dtypes)
  assert not np.array_equal(
      np.asarray(history[-1][0]["kernel"], np.float32),
      np.asarray(nearest[-1][0]["kernel"], np.float32))


def _regression_errors(tx, dtype, steps=3000, dim=32):
  """Squared distances of x and y to the solution after a noisy regression.

  The weights lie near 10, where the bfloat16 spacing is 2**-4: steps below
  half of it are rounded away by nearest rounding.
  """
  rng = np.random.default_rng(0)
  w_true = jnp.asarray(rng.choice([-1, 1], dim) * rng.uniform(8, 12, dim),
                       jnp.float32)

  def loss(w, key):
    inputs = jax.random.normal(key, (64, dim))
    noise = 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (64,))
    targets = inputs @ w_true + noise
    return 0.5 * jnp.mean((inputs @ w.astype(jnp.float32) - targets) ** 2)

  @jax.jit
  def train(w, state):
    def step(carry, index):
      w, state = carry
      value, grads = jax.value_and_grad(loss)(w, jax.random.PRNGKey(index))
      updates, state = tx.update(grads, state, w, value=value)
      return (optax.apply_updates(w, updates), state), None

    (w, state), _ = jax.lax.scan(step, (w, state), jnp.arange(steps))
    x = optfree.eval_params(state, w).astype(jnp.float32)
    return [jnp.sum((v - w_true) ** 2) for v in (x, w.astype(jnp.float32))]

  w = jnp.zeros(dim, dtype)
  return [float(error) for error in train(w, tx.init(w))]


def test_schedule_free_plus_in_bfloat16_converges_with_stochastic_rounding():
  # At the defaults, as an untuned user runs it.
  float32 = _regression_errors(optfree.schedule_free_plus(), jnp.float32)
  nearest = _regression_errors(optfree.schedule_free_plus(), jnp.bfloat16)
  x, y = _regression_errors(optfree.schedule_free_plus(rounding="stochastic"),
                            jnp.bfloat16)
  # Storing 32 weights near 10 in bfloat16 costs about 32 * (2**-4)**2 / 12
  # = 0.01; 0.5 is 2 spacings per weight. Measured (x, y) at the defaults
  # (learning_rate=0.3, c_warmup=200): float32 (8e-6, 1e-4); nearest (2.15,
  # 2.15): the steps are rounded away; stochastic (0.24, 0.09) with seed 0,
  # at most (0.24, 0.17) over seeds 0-3. x, derived from y and z, carries z's
  # rounding noise (z is not averaged; y is, as x is).
  assert max(float32) < 1e-2
  assert min(nearest) > 1
  assert y < 0.5
  assert x < 1
