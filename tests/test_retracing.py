"""A jitted optimizer step compiles once, for every optfree optimizer.

Compilations are counted with a Python side effect in the jitted function (it
runs only while jax traces) and cross-checked with the jitted function's own
cache size. A second trace would mean the state that ``update`` returns differs
in structure, dtype or weak type from the one ``init`` built, or that a
hyperparameter is baked into the program as a Python constant. Each update
gets ``value=``, a stand-in loss of the params (see tests/optimizer_table.py).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS
from tests.optimizer_table import stand_in_loss

STEPS = 6  # past the table's warmup_steps=2 and RAdam's silent first steps
PARAMS = {"kernel": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3),
          "bias": jnp.full((3,), 0.5, jnp.float32)}
# Another valid value for each hyperparameter an optfree optimizer may inject.
CHANGED_VALUES = {
    "learning_rate": 3e-3,
    "b1": 0.5,
    "b2": 0.9,
    "eps": 1e-3,
    "weight_decay": 0.1,
    "warmup_steps": 4,
    "r": 1.0,
    "weight_lr_power": 1.0,
    "final_lr": 0.05,
    "gamma": 0.01,
    # ScheduleFree+
    "sf_b1": 0.8,
    "sf_b1_max": 0.99,
    "sf_b1_anneal_steps": 3,
    "polyak_b": 0.9,
    "c_warmup": 2,
}


def _gradient(step):
  return jax.tree.map(lambda p: jnp.sin(p * (step + 1.0)) + 0.2, PARAMS)


def _counting_step(tx):
  """A jitted step and the list its tracing appends to (one entry a trace)."""
  traces = []

  @jax.jit
  def step(params, state, gradient):
    traces.append(None)
    updates, state = tx.update(gradient, state, params,
                               value=stand_in_loss(params))
    return optax.apply_updates(params, updates), state

  return step, traces


def _assert_compiled_once(step, traces):
  assert len(traces) == 1, f"traced {len(traces)} times"
  assert step._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("schedule", [False, True],
                         ids=["constant_lr", "schedule_lr"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_jitted_update_compiles_once_over_many_steps(entry, schedule):
  overrides = {}
  if schedule:
    overrides["learning_rate"] = optax.cosine_decay_schedule(
        entry.kwargs["learning_rate"], STEPS)
  tx = entry.make(**overrides)
  step, traces = _counting_step(tx)
  params, state = PARAMS, tx.init(PARAMS)
  for index in range(STEPS):
    params, state = step(params, state, _gradient(index))
  _assert_compiled_once(step, traces)
  assert not np.array_equal(params["kernel"], PARAMS["kernel"])


def _injectable(entry):
  """The entry's factory with named parameters, as inject_hyperparams needs.

  inject_hyperparams reads the factory's signature; a ``**kwargs`` factory
  (the table's Schedule-Free wrapper over Adam) hides the names from it.
  """
  parameters = inspect.signature(entry.factory).parameters.values()
  if all(p.kind is not p.VAR_KEYWORD for p in parameters):
    return entry.factory

  def factory(**kwargs):
    return entry.factory(**kwargs)

  factory.__signature__ = inspect.Signature([
      inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value)
      for name, value in entry.kwargs.items()])
  return factory


def _injected(entry, **overrides):
  return optax.inject_hyperparams(_injectable(entry))(
      **{**entry.kwargs, **overrides})


def _with_hyperparam(state, name, value):
  # Keep the aval the state had (dtype and weak type, as inject_hyperparams
  # stores integers weakly typed), as a user swapping a value in must.
  old = state.hyperparams[name]
  new = jnp.asarray(value) if old.weak_type else jnp.asarray(value, old.dtype)
  return state._replace(hyperparams={**state.hyperparams, name: new})


# A value whose change must show in the very next update.
MUST_TAKE_EFFECT = ("learning_rate", "b1")


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_changing_injected_hyperparameters_takes_effect_without_recompiling(
    entry):
  tx = _injected(entry)
  step, traces = _counting_step(tx)
  params, state = PARAMS, tx.init(PARAMS)
  injected = [name for name in state.hyperparams if name in CHANGED_VALUES]
  assert "learning_rate" in injected
  for index in range(STEPS - 1):
    params, state = step(params, state, _gradient(index))
  # A small gradient against the momentum: Lion's sign(b1 m + (1 - b1) g) then
  # flips between b1 = 0.9 and 0.5, so its update shows the change too.
  against = jax.tree.map(lambda g: -0.1 * g, _gradient(STEPS - 2))
  kept, _ = step(params, state, against)
  for name in injected:
    changed, _ = step(
        params, _with_hyperparam(state, name, CHANGED_VALUES[name]), against)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(changed))
    if name in MUST_TAKE_EFFECT:
      # Not recompiling is only right if the new value is read at run time.
      assert not np.array_equal(kept["kernel"], changed["kernel"]), name
  _assert_compiled_once(step, traces)


TAKES_B1 = [entry for entry in OPTIMIZERS
            if "b1" in inspect.signature(_injectable(entry)).parameters]


@pytest.mark.parametrize("entry", TAKES_B1, ids=[e.name for e in TAKES_B1])
def test_scheduled_learning_rate_and_momentum_compile_once(entry):
  # OneCycle as torch runs it: lr and b1 cycling together, both injected.
  total_steps = 8
  tx = _injected(
      entry,
      learning_rate=optfree.onecycle_schedule(entry.kwargs["learning_rate"],
                                              total_steps),
      b1=optfree.onecycle_momentum_schedule(total_steps))
  step, traces = _counting_step(tx)
  params, state = PARAMS, tx.init(PARAMS)
  b1_values = []
  for index in range(total_steps):
    b1_values.append(float(state.hyperparams["b1"]))
    params, state = step(params, state, _gradient(index))
  _assert_compiled_once(step, traces)
  assert len(set(b1_values)) > 2  # b1 really did cycle
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))
