"""Non-finite gradients and mismatched trees, for every optfree optimizer.

optfree's policy on NaN/Inf gradients is the user's: the optimizers do not hide
them (a NaN gradient element gives a NaN update), and guarding is done by
composing with ``optax.apply_if_finite`` or ``optax.MultiSteps(...,
should_skip_update_fn=optax.skip_not_finite)``. These tests pin that a guarded
non-finite step changes nothing (params and the optimizer's own state stay
bit-identical) and that the run then continues exactly as if the step had
never been taken.

A gradient or params tree that does not match the optimizer state, in
structure or in leaf shapes, must raise an error naming the mismatch rather
than broadcast silently, eagerly and under ``jit``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree

from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS
from tests.optimizer_table import small_params as _params

CLEAN_STEPS = 5
# Where, in the clean sequence, a poisoned gradient is inserted, and how.
POISON = {
    1: ("kernel", jnp.nan),
    3: ("bias", jnp.inf),
    4: ("scale", -jnp.inf),
}


def _gradient(step):
  leaves, treedef = jax.tree.flatten(_params())
  keys = jax.random.split(jax.random.key(step), len(leaves))
  return jax.tree.unflatten(
      treedef,
      [jax.random.normal(key, leaf.shape, leaf.dtype)
       for key, leaf in zip(keys, leaves)],
  )


def _poisoned(gradient, leaf, value):
  """Puts ``value`` into one element of one leaf: the whole step must skip."""
  if leaf == "scale":
    return {**gradient, "scale": jnp.asarray(value, jnp.float32)}
  dense = dict(gradient["dense"])
  shape = dense[leaf].shape
  dense[leaf] = dense[leaf].reshape(-1).at[1].set(value).reshape(shape)
  return {**gradient, "dense": dense}


def _gradient_stream():
  """(gradient, is_finite) pairs: the clean steps with poisoned ones between."""
  stream = []
  for step in range(CLEAN_STEPS):
    if step in POISON:
      leaf, value = POISON[step]
      stream.append((_poisoned(_gradient(100 + step), leaf, value), False))
    stream.append((_gradient(step), True))
  return stream


def _step(tx, params, state, gradient):
  updates, state = tx.update(gradient, state, params)
  return optax.apply_updates(params, updates), state


@functools.lru_cache(maxsize=None)
def _compiled(name, guard):
  """(tx, jitted step) per optimizer and guard, shared so each compiles once."""
  entry = next(entry for entry in OPTIMIZERS if entry.name == name)
  tx = entry.make()
  if guard is not None:
    tx = _guards()[guard][0](tx)
  return tx, jax.jit(functools.partial(_step, tx))


def _assert_trees_identical(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _guards():
  return {
      "apply_if_finite": (
          lambda inner: optax.apply_if_finite(inner, max_consecutive_errors=5),
          lambda state: state.inner_state,
      ),
      "multisteps_skip_not_finite": (
          lambda inner: optax.MultiSteps(
              inner, every_k_schedule=1,
              should_skip_update_fn=optax.skip_not_finite,
          ).gradient_transformation(),
          lambda state: state.inner_opt_state,
      ),
  }


@pytest.mark.parametrize("guard", ["apply_if_finite",
                                   "multisteps_skip_not_finite"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_guarded_non_finite_step_is_as_if_never_taken(entry, guard):
  inner_state_of = _guards()[guard][1]
  tx, step = _compiled(entry.name, guard)

  params = _params()
  state = tx.init(params)
  for gradient, is_finite in _gradient_stream():
    new_params, new_state = step(params, state, gradient)
    if not is_finite:
      # Exactly as before: not one bit of params or the optimizer's state.
      _assert_trees_identical(new_params, params)
      _assert_trees_identical(inner_state_of(new_state), inner_state_of(state))
    params, state = new_params, new_state

  clean_params = _params()
  clean_state = tx.init(clean_params)
  for step_index in range(CLEAN_STEPS):
    clean_params, clean_state = step(clean_params, clean_state,
                                     _gradient(step_index))

  _assert_trees_identical(params, clean_params)
  _assert_trees_identical(inner_state_of(state), inner_state_of(clean_state))
  # The comparison above is vacuous if nothing moved.
  assert not np.array_equal(params["dense"]["kernel"],
                            _params()["dense"]["kernel"])


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_apply_if_finite_inner_run_is_the_plain_optimizer(entry):
  guarded, guarded_step = _compiled(entry.name, "apply_if_finite")
  plain, plain_step = _compiled(entry.name, None)

  guarded_params = plain_params = _params()
  guarded_state = guarded.init(guarded_params)
  plain_state = plain.init(plain_params)
  for gradient, is_finite in _gradient_stream():
    guarded_params, guarded_state = guarded_step(guarded_params, guarded_state,
                                                 gradient)
    if is_finite:
      plain_params, plain_state = plain_step(plain_params, plain_state,
                                             gradient)

  assert int(guarded_state.total_notfinite) == len(POISON)
  assert int(guarded_state.notfinite_count) == 0
  # Separately compiled programs may fuse differently: equal to f32 rounding.
  for guarded_leaf, plain_leaf in zip(
      jax.tree.leaves((guarded_params, guarded_state.inner_state)),
      jax.tree.leaves((plain_params, plain_state))):
    np.testing.assert_allclose(guarded_leaf, plain_leaf, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_unguarded_nan_gradient_is_not_hidden(entry):
  # optfree does not second-guess the user: a NaN gradient element reaches the
  # update of that element, so a run without a guard fails visibly.
  tx, step = _compiled(entry.name, None)
  params = _params()
  gradient = _poisoned(_gradient(0), "kernel", jnp.nan)
  new_params, _ = step(params, tx.init(params), gradient)
  kernel = np.asarray(new_params["dense"]["kernel"]).reshape(-1)
  assert np.isnan(kernel[1])
  assert np.all(np.isfinite(np.delete(kernel, 1)))  # elementwise, no spread


# Mismatched trees ---------------------------------------------------------


def _missing_leaf(tree):
  return {"dense": tree["dense"]}


def _renamed_leaf(tree):
  return {"dense": tree["dense"], "offset": tree["scale"]}


def _as_list(tree):
  return [tree["dense"], tree["scale"]]


def _wrong_shape(tree):
  # (4,) broadcasts against (3, 4): elementwise code would silently accept it.
  dense = {"kernel": tree["dense"]["kernel"][0], "bias": tree["dense"]["bias"]}
  return {**tree, "dense": dense}


def _transposed(tree):
  dense = {"kernel": tree["dense"]["kernel"].T, "bias": tree["dense"]["bias"]}
  return {**tree, "dense": dense}


MISMATCHES = {
    "missing_leaf": _missing_leaf,
    "renamed_leaf": _renamed_leaf,
    "list_for_dict": _as_list,
    "broadcastable_shape": _wrong_shape,
    "transposed_shape": _transposed,
}
# jax itself raises TypeError for shapes that cannot broadcast; what must not
# happen is a silent broadcast.
MISMATCH_ERRORS = (ValueError, TypeError)
ERROR_WORDS = r"(?i)structure|shape|mismatch|match"


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("mismatch", MISMATCHES)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_gradient_tree_not_matching_state_raises(entry, mismatch, jit):
  tx = entry.make()
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  gradient = MISMATCHES[mismatch](_gradient(0))
  with pytest.raises(MISMATCH_ERRORS, match=ERROR_WORDS):
    jax.block_until_ready(update(gradient, state, params))


USES_PARAMS = [entry for entry in OPTIMIZERS
               if entry.schedule_free or entry.kwargs.get("weight_decay")]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("mismatch", MISMATCHES)
@pytest.mark.parametrize("entry", USES_PARAMS,
                         ids=[entry.name for entry in USES_PARAMS])
def test_params_tree_not_matching_state_raises(entry, mismatch, jit):
  # The params passed to update (needed by Schedule-Free and weight decay)
  # must belong to the same model as the state.
  tx = entry.make()
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(MISMATCH_ERRORS, match=ERROR_WORDS):
    jax.block_until_ready(
        update(_gradient(0), state, MISMATCHES[mismatch](params)))


@pytest.mark.parametrize("what", ["gradient", "params"])
@pytest.mark.parametrize(
    "factory", [optfree.scale_by_adabound, optfree.scale_by_lion],
    ids=lambda f: f.__name__)
def test_scale_by_transformations_reject_broadcastable_leaves(factory, what):
  # The table covers the aliases; the bare transformations check too (optax's
  # scale_by_lion alone would broadcast a (4,) leaf into a (3, 4) momentum).
  params = {"w": jnp.ones((3, 4))}
  tx = factory()
  state = tx.init(params)
  wrong = {"w": jnp.ones(4)}
  grads, given = (wrong, params) if what == "gradient" else (params, wrong)
  with pytest.raises(ValueError, match=rf"{what} leaf shapes \[\(4,\)\]"):
    jax.jit(tx.update)(grads, state, given)
