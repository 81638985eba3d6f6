"""Parameter and state dtypes, for every optfree optimizer.

Params in float32, bfloat16, float16 and float64 (and a tree mixing two of
them) keep their dtype through ``optax.apply_updates``; updates come out in the
params' dtype, so nothing is silently upcast; the state keeps its dtypes from
step to step (a drifting dtype would retrace ``jit`` and break ``lax.scan``);
``state_dtype`` / ``mu_dtype`` put the param-sized buffers in the asked dtype;
and scalar state (counts, Schedule-Free's weight_sum and lr_max) is never kept
in a dtype narrower than float32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS

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
  updates, state = tx.update(gradient, state, params)
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
