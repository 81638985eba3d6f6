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

Each update gets ``value=``, a stand-in loss of the params (see
tests/optimizer_table.py), so that only what a test varies is wrong.
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
from tests.optimizer_table import stand_in_loss

# The loss passed with the mismatched trees below: the one of the params.
VALUE = stand_in_loss(_params())

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
  updates, state = tx.update(gradient, state, params,
                             value=stand_in_loss(params))
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
  if entry.elementwise:
    assert np.all(np.isfinite(np.delete(kernel, 1)))  # no spread
  else:
    # A step size summed over every leaf: the NaN reaches every update. A
    # zero step instead would hide it, and with polyak_b > 0 the NaN running
    # average of |g| would then make every later step 0: a run silently
    # frozen.
    assert all(np.isnan(leaf).all() for leaf in jax.tree.leaves(new_params))


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
    jax.block_until_ready(update(gradient, state, params, value=VALUE))


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
        update(_gradient(0), state, MISMATCHES[mismatch](params),
               value=VALUE))


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


# Non-floating leaves ------------------------------------------------------

from tests.optimizer_table import PUBLIC, PUBLIC_IDS  # noqa: E402

# The name each transformation's messages use (the table's wrapper entry is
# optfree.schedule_free over Adam).
PUBLIC_NAME = {"schedule_free_wrapper": "schedule_free"}

NON_FLOAT = {
    "int32": jnp.asarray([10, 20, 30], jnp.int32),
    "uint8": jnp.asarray([1, 2, 3], jnp.uint8),
    "bool": jnp.asarray([True, False, True]),
    "complex64": jnp.asarray([1 + 1j, 2, 3], jnp.complex64),
    "python_int": 3,
}


@pytest.mark.parametrize("dtype", NON_FLOAT)
@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_init_rejects_non_float_leaf_naming_path_and_dtype(entry, _, dtype):
  # An int32 leaf used to train to nonsense (schedule_free_adamw moved
  # [10, 20, 30] to [500010, -499980, -1499970] in five steps), AdaBound
  # returned a zero update, Lion float updates for it: the policy is an error
  # at init, naming the leaf, for every transformation.
  params = {"dense": {"kernel": jnp.ones((2, 3)), "step": NON_FLOAT[dtype]}}
  expected = str(np.result_type(NON_FLOAT[dtype]) if dtype == "python_int"
                 else NON_FLOAT[dtype].dtype)
  with pytest.raises(TypeError) as info:
    entry.make().init(params)
  message = str(info.value)
  name = PUBLIC_NAME.get(entry.name, entry.name)
  assert message.startswith(f"{name}: every params leaf must be a real "
                            "floating-point array")
  assert f"['dense']['step']: {expected}" in message
  assert "['dense']['kernel']" not in message


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_init_under_jit_rejects_non_float_leaf_too(entry, _):
  params = {"w": jnp.ones(2), "n": jnp.zeros(2, jnp.int32)}
  with pytest.raises(TypeError, match=r"\['n'\]: int32"):
    jax.jit(entry.make().init)(params)


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_integer_leaf_frozen_by_optax_masked_is_allowed(entry, _):
  # The documented way to keep an integer leaf in the params: leave it out.
  params = {"w": jnp.ones(3), "n": jnp.arange(3)}
  tx = optax.masked(entry.make(), {"w": True, "n": False})
  state = tx.init(params)
  grads = {"w": jnp.full(3, 0.5), "n": jnp.zeros(3, jnp.int32)}
  value = stand_in_loss(params["w"])
  updates, _ = tx.update(grads, state, params, value=value)
  assert updates["n"].dtype == jnp.int32
  np.testing.assert_array_equal(updates["n"], grads["n"])
  alone = entry.make()
  expected, _ = alone.update({"w": grads["w"]},
                             alone.init({"w": params["w"]}), {"w": params["w"]},
                             value=value)
  np.testing.assert_array_equal(updates["w"], expected["w"])


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_update_rejects_non_float_gradient_and_params(entry, _):
  params = {"w": jnp.ones(3)}
  tx = entry.make()
  state = tx.init(params)
  value = stand_in_loss(params)
  with pytest.raises(TypeError, match=r"gradient leaf .*\n  \['w'\]: int32"):
    tx.update({"w": jnp.ones(3, jnp.int32)}, state, params, value=value)
  with pytest.raises(TypeError, match=r"params leaf .*\n  \['w'\]: bool"):
    tx.update(params, state, {"w": jnp.ones(3, bool)}, value=value)


# Optimizers that need params name themselves ------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("entry, needs_params", PUBLIC, ids=PUBLIC_IDS)
def test_update_without_params_names_the_optimizer(entry, needs_params, jit):
  tx = entry.make()
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  if not needs_params:
    updates, _ = update(_gradient(0), state, value=VALUE)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    return
  with pytest.raises(
      ValueError,
      match=rf"^{PUBLIC_NAME.get(entry.name, entry.name)}: update\(\) needs the current params"):
    update(_gradient(0), state, value=VALUE)


def test_amsbound_and_adaboundw_name_themselves():
  # amsbound is adabound(amsbound=True); adaboundw with amsbound=True stays
  # adaboundw: each message names what the user called.
  state = optfree.amsbound().init(_params())
  with pytest.raises(ValueError, match="^amsbound: "):
    optfree.amsbound().update(_gradient(0), state)
  tx = optfree.adaboundw(amsbound=True)
  with pytest.raises(ValueError, match="^adaboundw: "):
    tx.update(_gradient(0), tx.init(_params()))


# Messages name the differing leaves ----------------------------------------


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_mismatch_message_names_paths_and_shapes(entry, _):
  tx = entry.make()
  params = _params()
  state = tx.init(params)
  with pytest.raises(ValueError) as info:
    tx.update(_renamed_leaf(_gradient(0)), state, params, value=VALUE)
  message = str(info.value)
  assert "only in the gradient: ['offset'] ()" in message
  assert "only in the state: ['scale'] ()" in message
  with pytest.raises(ValueError) as info:
    tx.update(_wrong_shape(_gradient(0)), state, params, value=VALUE)
  assert "shape at ['dense']['kernel']: gradient (4,), state (3, 4)" in str(
      info.value)


# Weight-decay masks that do not fit the params -------------------------------

WITH_MASK = [entry for entry in OPTIMIZERS if "mask" in
             __import__("inspect").signature(entry.factory).parameters]
BAD_MASKS = {
    "missing_key": ({"dense": True}, ["  not covered by the mask: ['scale']"]),
    "list_for_dict": ([True, False], ["  only in the mask: [0]",
                                      "  not covered by the mask: ['scale']"]),
    "renamed_key": ({"dense": {"kernel": True, "bais": False}, "scale": False},
                    ["  only in the mask: ['dense']['bais']",
                     "  not covered by the mask: ['dense']['bias']"]),
    "callable": (lambda params: {"dense": True},
                 ["  not covered by the mask: ['scale']"]),
}


@pytest.mark.parametrize("mask", BAD_MASKS)
@pytest.mark.parametrize("entry", WITH_MASK, ids=[e.name for e in WITH_MASK])
def test_mask_not_fitting_params_raises_at_init_naming_paths(entry, mask):
  # Schedule-Free failed only at the first update, the others inside
  # optax.masked, with jax's tree_map message naming neither the optimizer
  # nor the mask.
  tx = entry.make(mask=BAD_MASKS[mask][0])
  with pytest.raises(ValueError) as info:
    tx.init(_params())
  message = str(info.value)
  assert message.startswith(f"{entry.name}: the mask does not fit the params")
  for line in BAD_MASKS[mask][1]:
    assert line in message, message


@pytest.mark.parametrize("entry", WITH_MASK, ids=[e.name for e in WITH_MASK])
def test_prefix_mask_is_accepted(entry):
  tx = entry.make(mask={"dense": True, "scale": False})
  params = _params()
  updates, _ = tx.update(_gradient(0), tx.init(params), params, value=VALUE)
  assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_update_with_state_and_params_swapped_says_so(entry, _):
  # The params dict in the state's place used to fail deep inside (an
  # AttributeError on 'dict' or a tuple unpacking error).
  tx = entry.make()
  params = _params()
  state = tx.init(params)
  with pytest.raises(TypeError,
                     match=r"update\(updates, state, params\)"):
    tx.update(_gradient(0), params, state, value=VALUE)


# Optimizers that need the loss name it -------------------------------------

NEEDS_VALUE = [entry for entry in OPTIMIZERS if entry.needs_value]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("nested", [False, True], ids=["bare", "in_chain"])
@pytest.mark.parametrize("entry", NEEDS_VALUE,
                         ids=[entry.name for entry in NEEDS_VALUE])
def test_update_without_value_names_it(entry, nested, jit):
  # The error a user meets who plugs ScheduleFree+ into a loop written for
  # the other optimizers (or linen's TrainState.apply_gradients).
  tx = entry.make()
  if nested:
    tx = optax.chain(optax.clip(1.0), tx)
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  with pytest.raises(ValueError, match=rf"^{entry.name}: update\(\) needs the "
                     r"loss .*value=loss"):
    update(_gradient(0), state, params)
