"""Every optfree optimizer composes with optax's wrappers.

Each test runs an optimizer from the shared table inside an optax wrapper and
compares the result with an equivalent run written without the wrapper (the
wrapper's documented semantics done by hand). For the Schedule-Free entries the
evaluation point ``optfree.eval_params`` must be found through the wrapper and
equal the one of the equivalent run. Runs are in float64 so that equivalent
runs agree to rounding. Every update gets the loss, ``value=``, as
tests/optimizer_table.py explains (ScheduleFree+ needs it); both runs of a
comparison get the loss at their own params.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from tests.optimizer_table import OPTIMIZER_IDS
from tests.optimizer_table import OPTIMIZERS

pytestmark = pytest.mark.usefixtures("x64")

STEPS = 6
RTOL = 1e-10
ATOL = 1e-12


def _batches(count, seed=0):
  rng = np.random.default_rng(seed)
  return [
      (rng.normal(size=(8, 4)), rng.normal(size=(8, 3))) for _ in range(count)
  ]


def _init_params():
  rng = np.random.default_rng(42)
  return {
      "dense": {
          "kernel": jnp.asarray(rng.normal(size=(4, 3))),
          "bias": jnp.asarray(rng.normal(size=(3,))),
      },
      "scale": jnp.asarray(1.0 + rng.uniform(size=(3,))),
  }


def _loss(params, batch):
  inputs, targets = batch
  hidden = inputs @ params["dense"]["kernel"] + params["dense"]["bias"]
  return jnp.mean((jnp.tanh(hidden) * params["scale"] - targets) ** 2)


_grad = jax.jit(jax.grad(_loss))
_value_and_grad = jax.jit(jax.value_and_grad(_loss))


def _step_fn(tx, jit=False):
  # Eager by default: the primitives' executables are cached across tests,
  # while a jitted step compiles once per optimizer and wrapper. Wrappers
  # built on lax.cond or tree-wide selects run much faster jitted.
  def step(params, state, grads, value):
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  return jax.jit(step) if jit else step


def _run(tx, batches, params=None):
  params = _init_params() if params is None else params
  state = tx.init(params)
  step = _step_fn(tx)
  for batch in batches:
    value, grads = _value_and_grad(params, batch)
    params, state = step(params, state, grads, value)
  return params, state


def _assert_trees_close(actual, expected, rtol=RTOL):
  jax.tree.map(
      functools.partial(np.testing.assert_allclose, rtol=rtol, atol=ATOL),
      actual, expected,
  )


def _assert_trees_equal(actual, expected):
  jax.tree.map(np.testing.assert_array_equal, actual, expected)


def _assert_same_eval_params(entry, state, params, expected_state,
                             expected_params):
  if entry.schedule_free:
    _assert_trees_close(
        optfree.eval_params(state, params),
        optfree.eval_params(expected_state, expected_params),
    )


def _assert_moved(params):
  initial = _init_params()
  for leaf, start in zip(jax.tree.leaves(params), jax.tree.leaves(initial)):
    assert not np.allclose(leaf, start), "the run left a leaf unchanged"


MAX_NORM = 0.05


def _clip_by_hand(grads):
  norm = optax.tree.norm(grads)
  return jax.tree.map(
      lambda g: jnp.where(norm < MAX_NORM, g, g * (MAX_NORM / norm)), grads
  )


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
@pytest.mark.parametrize("wrapper", ["chain", "named_chain"])
def test_after_clip_by_global_norm_equals_clipped_gradients(entry, wrapper):
  batches = _batches(STEPS)
  assert optax.tree.norm(_grad(_init_params(), batches[0])) > MAX_NORM
  clip = optax.clip_by_global_norm(MAX_NORM)
  if wrapper == "chain":
    tx = optax.chain(clip, entry.make())
  else:
    tx = optax.named_chain(("clip", clip), ("optimizer", entry.make()))
  params, state = _run(tx, batches)

  plain = entry.make()
  expected_params = _init_params()
  expected_state = plain.init(expected_params)
  for batch in batches:
    value, grads = _value_and_grad(expected_params, batch)
    updates, expected_state = plain.update(
        _clip_by_hand(grads), expected_state, expected_params, value=value
    )
    expected_params = optax.apply_updates(expected_params, updates)

  _assert_moved(params)
  _assert_trees_close(params, expected_params)
  _assert_same_eval_params(entry, state, params, expected_state,
                           expected_params)


LEARNING_RATE_FACTORS = (1.0, 0.5, 2.0, 0.25, 1.0, 3.0)
B1_VALUES = (0.9, 0.8, 0.95, 0.7, 0.9, 0.85)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_inject_hyperparams_changes_without_recompiling(entry):
  """Learning rate and b1 changed between steps, one compilation.

  All of the entry's hyperparameters are injected; the run must equal one
  that builds the optimizer afresh with each step's values (concrete floats)
  and carries the state across.
  """
  batches = _batches(STEPS)
  base_lr = entry.kwargs["learning_rate"]
  tx = optax.inject_hyperparams(entry.factory)(**entry.kwargs, b1=0.9)
  # Every numeric hyperparameter of the entry is injected (a traced array).
  assert {*entry.kwargs, "b1"} <= set(tx.init(_init_params()).hyperparams)
  traces = []

  @jax.jit
  def step(params, state, grads, value):
    traces.append(None)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  params = _init_params()
  state = tx.init(params)
  for batch, factor, b1 in zip(batches, LEARNING_RATE_FACTORS, B1_VALUES):
    hyperparams = state.hyperparams
    hyperparams["learning_rate"] = jnp.asarray(
        base_lr * factor, hyperparams["learning_rate"].dtype
    )
    hyperparams["b1"] = jnp.asarray(b1, hyperparams["b1"].dtype)
    value, grads = _value_and_grad(params, batch)
    params, state = step(params, state, grads, value)
  assert len(traces) == 1, f"retraced {len(traces) - 1} times"

  expected_params = _init_params()
  expected_state = entry.make().init(expected_params)
  for batch, factor, b1 in zip(batches, LEARNING_RATE_FACTORS, B1_VALUES):
    tx_now = entry.make(learning_rate=base_lr * factor, b1=b1)
    value, grads = _value_and_grad(expected_params, batch)
    updates, expected_state = tx_now.update(
        grads, expected_state, expected_params, value=value
    )
    expected_params = optax.apply_updates(expected_params, updates)

  _assert_trees_close(params, expected_params)
  _assert_same_eval_params(entry, state, params, expected_state,
                           expected_params)
  constant_params, _ = _run(entry.make(), batches)
  assert not np.allclose(params["dense"]["kernel"],
                         constant_params["dense"]["kernel"]), (
                             "changing learning_rate and b1 had no effect")


EVERY_K = 3
# MultiSteps averages by a running mean, the check by a sum: the two differ by
# rounding, which the per-coordinate normalization of the Adam-like optimizers
# amplifies where the micro-batch gradients nearly cancel.
MULTISTEPS_RTOL = 1e-7


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_multisteps_equals_step_on_averaged_gradient(entry):
  outer_steps = STEPS  # RAdam's first steps are silent
  batches = _batches(outer_steps * EVERY_K)
  tx = optax.MultiSteps(entry.make(), every_k_schedule=EVERY_K)
  step = _step_fn(tx, jit=True)  # eager lax.cond would compile every call
  plain = entry.make()
  plain_step = jax.jit(plain.update)

  params = expected_params = _init_params()
  state, expected_state = tx.init(params), plain.init(params)
  for outer in range(outer_steps):
    micro = batches[outer * EVERY_K:(outer + 1) * EVERY_K]
    before = params
    # MultiSteps hands the inner optimizer the value of the call that emits
    # the update: the loss of the accumulated batch is the micro-batches'
    # mean, all taken at the same params.
    value = sum(_loss(params, batch) for batch in micro) / EVERY_K
    for index, batch in enumerate(micro):
      params, state = step(params, state, _grad(params, batch), value)
      if index < EVERY_K - 1:
        _assert_trees_equal(params, before)
    averaged = jax.tree.map(
        lambda *g: sum(g) / EVERY_K,
        *[_grad(expected_params, batch) for batch in micro],
    )
    value = sum(_loss(expected_params, batch) for batch in micro) / EVERY_K
    updates, expected_state = plain_step(
        averaged, expected_state, expected_params, value=value
    )
    expected_params = optax.apply_updates(expected_params, updates)
    _assert_trees_close(params, expected_params, MULTISTEPS_RTOL)
    if entry.schedule_free:
      _assert_trees_close(
          optfree.eval_params(state, params),
          optfree.eval_params(expected_state, expected_params),
          MULTISTEPS_RTOL,
      )
  _assert_moved(params)


def _dense_labels(params):
  return {"dense": jax.tree.map(lambda _: "dense", params["dense"]),
          "scale": "scale"}


@pytest.mark.parametrize("index", range(len(OPTIMIZERS)), ids=OPTIMIZER_IDS)
def test_multi_transform_runs_each_group_with_its_optimizer(index):
  """Dense layer with one table entry, the scale with the next one."""
  dense_entry = OPTIMIZERS[index]
  scale_entry = OPTIMIZERS[(index + 1) % len(OPTIMIZERS)]
  batches = _batches(STEPS)
  tx = optax.multi_transform(
      {"dense": dense_entry.make(), "scale": scale_entry.make()},
      _dense_labels,
  )
  params, state = _run(tx, batches)

  dense_tx, scale_tx = dense_entry.make(), scale_entry.make()
  expected = _init_params()
  dense_state = dense_tx.init(expected["dense"])
  scale_state = scale_tx.init(expected["scale"])
  for batch in batches:
    # Each group's optimizer gets the loss of the whole model.
    value, grads = _value_and_grad(expected, batch)
    dense_updates, dense_state = dense_tx.update(
        grads["dense"], dense_state, expected["dense"], value=value
    )
    scale_updates, scale_state = scale_tx.update(
        grads["scale"], scale_state, expected["scale"], value=value
    )
    expected = optax.apply_updates(
        expected, {"dense": dense_updates, "scale": scale_updates}
    )

  _assert_moved(params)
  _assert_trees_close(params, expected)

  def at_x(entry, group_state, group_params):
    if entry.schedule_free:
      return optfree.eval_params(group_state, group_params)
    return group_params

  expected_x = {"dense": at_x(dense_entry, dense_state, expected["dense"]),
                "scale": at_x(scale_entry, scale_state, expected["scale"])}
  if dense_entry.schedule_free and scale_entry.schedule_free:
    # Two Schedule-Free states: eval_params asks for one group at a time; each
    # group's masked state gives x on its leaves and y on the others.
    dense_x = optfree.eval_params(state.inner_states["dense"], params)
    scale_x = optfree.eval_params(state.inner_states["scale"], params)
    _assert_trees_close(
        {"dense": dense_x["dense"], "scale": scale_x["scale"]}, expected_x
    )
    np.testing.assert_array_equal(dense_x["scale"], params["scale"])
  elif dense_entry.schedule_free or scale_entry.schedule_free:
    _assert_trees_close(optfree.eval_params(state, params), expected_x)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_masked_with_frozen_group_equals_optimizer_on_subtree(entry):
  batches = _batches(STEPS)
  trained = {"dense": {"kernel": True, "bias": True}, "scale": False}
  frozen = jax.tree.map(lambda m: not m, trained)
  tx = optax.chain(
      optax.masked(entry.make(), trained),
      optax.masked(optax.set_to_zero(), frozen),
  )
  params, state = _run(tx, batches)

  plain = entry.make()
  expected = _init_params()
  dense_state = plain.init(expected["dense"])
  for batch in batches:
    value, grads = _value_and_grad(expected, batch)
    updates, dense_state = plain.update(
        grads["dense"], dense_state, expected["dense"], value=value
    )
    expected = {**expected,
                "dense": optax.apply_updates(expected["dense"], updates)}

  np.testing.assert_array_equal(params["scale"], _init_params()["scale"])
  _assert_trees_close(params, expected)
  if entry.schedule_free:
    _assert_trees_close(
        optfree.eval_params(state, params),
        {"dense": optfree.eval_params(dense_state, expected["dense"]),
         "scale": expected["scale"]},
    )


NAN_STEP = 2


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_apply_if_finite_skips_non_finite_step(entry):
  """A NaN gradient leaves params and state as if that batch never came."""
  batches = _batches(STEPS)
  tx = optax.apply_if_finite(entry.make(), max_consecutive_errors=3)
  step = _step_fn(tx, jit=True)
  params = _init_params()
  state = tx.init(params)
  for index, batch in enumerate(batches):
    value, grads = _value_and_grad(params, batch)
    if index == NAN_STEP:
      grads["dense"]["kernel"] = grads["dense"]["kernel"].at[0, 0].set(jnp.nan)
      before = params
    params, state = step(params, state, grads, value)
    if index == NAN_STEP:
      _assert_trees_equal(params, before)
      assert int(state.total_notfinite) == 1
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))

  expected_params, expected_state = _run(
      entry.make(), batches[:NAN_STEP] + batches[NAN_STEP + 1:]
  )
  _assert_trees_close(params, expected_params)
  _assert_same_eval_params(entry, state, params, expected_state,
                           expected_params)


NEEDS_VALUE = [entry for entry in OPTIMIZERS if entry.needs_value]


@pytest.mark.parametrize("poisoned", ["value_and_grads"])
@pytest.mark.parametrize("entry", NEEDS_VALUE,
                         ids=[entry.name for entry in NEEDS_VALUE])
def test_apply_if_finite_skips_a_step_whose_loss_is_not_finite(entry,
                                                               poisoned):
  """Under jit a NaN loss cannot raise: the step is skipped as if never taken.

  The loss is NaN and so are its gradients, as ``jax.value_and_grad`` gives
  them; ``optax.apply_if_finite`` checks the gradients. (A NaN loss with
  finite gradients, computed apart, gives non-finite updates instead: the
  test below; the docstring of schedule_free_plus says both.)
  """
  batches = _batches(STEPS)
  tx = optax.apply_if_finite(entry.make(), max_consecutive_errors=3)
  step = _step_fn(tx, jit=True)
  params = _init_params()
  state = tx.init(params)
  for index, batch in enumerate(batches):
    value, grads = _value_and_grad(params, batch)
    if index == NAN_STEP:
      value = jnp.asarray(jnp.nan, value.dtype)
      if poisoned == "value_and_grads":
        grads = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), grads)
      before = (params, state.inner_state)
    params, state = step(params, state, grads, value)
    if index == NAN_STEP:
      _assert_trees_equal((params, state.inner_state), before)
      assert int(state.total_notfinite) == 1
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))

  expected_params, expected_state = _run(
      entry.make(), batches[:NAN_STEP] + batches[NAN_STEP + 1:])
  _assert_trees_close(params, expected_params)
  _assert_same_eval_params(entry, state, params, expected_state,
                           expected_params)


@pytest.mark.parametrize("entry", NEEDS_VALUE,
                         ids=[entry.name for entry in NEEDS_VALUE])
def test_nan_loss_under_jit_gives_non_finite_updates(entry):
  # What the composition above relies on: no silent finite step from a NaN
  # loss.
  params = _init_params()
  tx = entry.make()
  _, grads = _value_and_grad(params, _batches(1)[0])
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params,
                                  value=jnp.asarray(jnp.nan))
  assert not any(np.isfinite(leaf).all() for leaf in jax.tree.leaves(updates))


def test_eval_params_without_schedule_free_state_raises():
  params = _init_params()
  state = optax.chain(optax.clip_by_global_norm(1.0), optfree.lion()).init(
      params
  )
  with pytest.raises(ValueError):
    optfree.eval_params(state, params)


# optax's calling convention: extra keyword arguments ------------------------

from tests.optimizer_table import PUBLIC, PUBLIC_IDS  # noqa: E402


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_optimizers_accept_extra_args(entry, _, jit):
  # The spirit of optax's test_optimizers_accept_extra_args: every optimizer
  # is a GradientTransformationExtraArgs, whose update takes (and, when it has
  # no use for them, ignores) keyword arguments such as the loss value.
  tx = entry.make()
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  params = _init_params()
  state = tx.init(params)
  grads = _grad(params, _batches(1)[0])
  update = jax.jit(tx.update) if jit else tx.update
  # The loss is used by those that need it (ScheduleFree+), so it is passed
  # on both sides for them.
  value = {"value": jnp.asarray(0.5)} if entry.needs_value else {}
  with_extras = update(grads, state, params, value=jnp.asarray(0.5),
                       grad=grads, unused_flag=jnp.asarray(True))
  plain = update(grads, state, params, **value)
  assert jax.tree.structure(with_extras) == jax.tree.structure(plain)
  for a, b in zip(jax.tree.leaves(with_extras), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(a, b)


def test_schedule_free_passes_extra_args_to_its_base():
  # Polyak's step size needs the loss value: the wrapper hands it through,
  # also from inside an optax.chain.
  base = optax.polyak_sgd(max_learning_rate=0.5, f_min=0.0)
  tx = optax.chain(optax.identity(), optfree.schedule_free(base, 0.5))
  params = _init_params()
  batch = _batches(1)[0]
  state = tx.init(params)
  value, grads = jax.value_and_grad(_loss)(params, batch)
  updates, _ = tx.update(grads, state, params, value=value)
  # The base's z-step with that value, as optax computes it.
  expected_step, _ = base.update(grads, base.init(params), params,
                                 value=value)
  sf_state = optfree.schedule_free(base, 0.5).init(params)
  direct, _ = optfree.schedule_free(base, 0.5).update(
      grads, sf_state, params, value=value)
  for u, d in zip(jax.tree.leaves(updates), jax.tree.leaves(direct)):
    np.testing.assert_allclose(u, d, rtol=RTOL, atol=ATOL)
  # First step: c = 1, so y moves by the whole z-step.
  for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected_step)):
    np.testing.assert_allclose(u, e, rtol=RTOL, atol=ATOL)
  with pytest.raises(TypeError):
    tx.update(grads, state, params)  # polyak_sgd without its value
