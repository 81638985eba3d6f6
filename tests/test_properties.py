"""Property-based tests (hypothesis) over random valid hyperparameters.

The last tests draw pytrees mixing float32, bfloat16, float16 (and, under
x64, float64) leaves with integer, boolean and complex ones: the float trees
train, the mixed ones fail at init naming each non-float leaf.

Hyperparameters are drawn from their valid ranges and fed through
``optax.inject_hyperparams``, so each optimizer compiles once per tree shape
and the examples only run. Params and gradients are random finite arrays
(|value| <= 1e3, zeros included) on a few small pytrees (nested dicts, a list,
a 0-d leaf, a bare array). Each update gets a drawn loss, ``value=`` in
[0, 1e3] (see tests/optimizer_table.py; ScheduleFree+ needs it).
"""

import functools

import hypothesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from tests.optimizer_table import OPTIMIZERS
from tests.optimizer_table import stand_in_loss

STEPS = 4
SETTINGS = hypothesis.settings(
    max_examples=8, deadline=None, derandomize=True, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])

# Tree shapes are drawn from a few, so that each optimizer compiles a handful
# of times; the values, and the hyperparameters, are drawn freely.
TREES = (
    {"kernel": (3, 2), "bias": (2,)},
    [(4,), {"scale": (), "embedding": (2, 2, 2)}],
    (5,),  # a bare array, not a container
)


def _schedule_free_over_adam(learning_rate=1e-2, *, b1=0.9, r=0.0,
                             weight_lr_power=2.0, weight_decay_at_y=0.0):
  # The table's wrapper entry with its hyperparameters named, so that
  # inject_hyperparams can draw each of them.
  return optfree.schedule_free(
      optax.adam(learning_rate, b1=0.0), learning_rate, b1=b1, r=r,
      weight_lr_power=weight_lr_power, weight_decay_at_y=weight_decay_at_y)


def _unit(low=0.0, high=1.0, **kwargs):
  return st.floats(low, high, allow_nan=False, allow_subnormal=False, **kwargs)


_SCHEDULE_FREE = dict(
    learning_rate=_unit(0.0, 2.0), b1=_unit(0.01, 0.99), r=_unit(0.0, 2.0),
    weight_lr_power=_unit(0.0, 3.0))
_ADAM = dict(b2=_unit(0.0, 0.999), eps=_unit(1e-10, 1e-3))
_ADABOUND = dict(
    learning_rate=_unit(1e-5, 1.0), final_lr=_unit(0.0, 1.0),
    b1=_unit(0.0, 0.99), b2=_unit(0.0, 0.999), gamma=_unit(1e-4, 1.0),
    eps=_unit(1e-10, 1e-3))
HYPERPARAMETERS = {
    "schedule_free_sgd": (optfree.schedule_free_sgd, dict(
        _SCHEDULE_FREE, warmup_steps=st.integers(0, 5),
        weight_decay=_unit(0.0, 0.1))),
    "schedule_free_adamw": (optfree.schedule_free_adamw, dict(
        _SCHEDULE_FREE, **_ADAM, warmup_steps=st.integers(0, 5),
        weight_decay=_unit(0.0, 0.1))),
    "schedule_free_radam": (optfree.schedule_free_radam, dict(
        _SCHEDULE_FREE, **_ADAM, weight_decay=_unit(0.0, 0.1))),
    "schedule_free_wrapper": (_schedule_free_over_adam, dict(
        _SCHEDULE_FREE, learning_rate=_unit(0.0, 0.5),
        weight_decay_at_y=_unit(0.0, 0.1))),
    "adabound": (optfree.adabound,
                 dict(_ADABOUND, weight_decay=_unit(0.0, 0.1))),
    "amsbound": (optfree.amsbound,
                 dict(_ADABOUND, weight_decay=_unit(0.0, 0.1))),
    "adaboundw": (optfree.adaboundw,
                  dict(_ADABOUND, weight_decay=_unit(0.0, 0.01))),
    "lion": (optfree.lion, dict(
        learning_rate=_unit(0.0, 1.0), b1=_unit(0.0, 1.0), b2=_unit(0.0, 0.999),
        weight_decay=_unit(0.0, 0.1))),
    "schedule_free_plus": (optfree.schedule_free_plus, dict(
        _SCHEDULE_FREE, **_ADAM, b1=_unit(0.0, 0.99), sf_b1=_unit(0.01, 0.99),
        sf_b1_max=_unit(0.01, 0.99), sf_b1_anneal_steps=st.integers(0, 5),
        polyak_b=_unit(0.0, 0.99), c_warmup=st.integers(0, 5),
        warmup_steps=st.integers(0, 5), weight_decay=_unit(0.0, 0.1))),
}
# The integer hyperparameters (their placeholders must be integers too).
INTEGERS = ("warmup_steps", "sf_b1_anneal_steps", "c_warmup")
# The Schedule-Free interpolation between z and x (b1 is Adam's for
# ScheduleFree+).
INTERPOLATION = {"schedule_free_plus": "sf_b1"}
assert set(HYPERPARAMETERS) == {entry.name for entry in OPTIMIZERS}


def _tree(index, leaf):
  return jax.tree.map(leaf, TREES[index],
                      is_leaf=lambda x: isinstance(x, tuple))


def _leaf_arrays(shape):
  return hnp.arrays(
      np.float32, shape,
      elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False))


@st.composite
def _problem(draw, name, steps=STEPS):
  """Hyperparameters, a tree index, its params, ``steps`` gradients and as
  many losses."""
  _, strategies = HYPERPARAMETERS[name]
  hyperparameters = {key: draw(strategy)
                     for key, strategy in strategies.items()}
  index = draw(st.sampled_from(range(len(TREES))))
  draw_tree = lambda: _tree(index, lambda shape: draw(_leaf_arrays(shape)))
  params = draw_tree()
  gradients = [draw_tree() for _ in range(steps)]
  values = [np.float32(draw(_unit(0.0, 1e3))) for _ in range(steps)]
  return hyperparameters, index, params, gradients, values


@functools.lru_cache(maxsize=None)
def _injected(name):
  """One injected optimizer and jitted step per optimizer, for all examples."""
  factory, strategies = HYPERPARAMETERS[name]
  # Placeholders of the right type; each example sets its values in the state.
  tx = optax.inject_hyperparams(factory)(
      **{key: 1 if key in INTEGERS else 0.5 for key in strategies})

  @jax.jit
  def step(params, state, gradient, value):
    updates, state = tx.update(gradient, state, params, value=value)
    return optax.apply_updates(params, updates), state, updates

  return tx, step


def _init(name, hyperparameters, params):
  tx, step = _injected(name)
  state = tx.init(params)
  # Same dtype and weak type as the placeholders: no recompilation.
  values = {
      key: (jnp.asarray(value) if state.hyperparams[key].weak_type
            else jnp.asarray(value, state.hyperparams[key].dtype))
      for key, value in hyperparameters.items()}
  hyperparams = {**state.hyperparams, **values}
  # Rebuilt from the drawn values: init keeps what it sees (AdaBound stores
  # its base learning rate, torch's base_lrs).
  inner_state = HYPERPARAMETERS[name][0](**hyperparams).init(params)
  return state._replace(hyperparams=hyperparams, inner_state=inner_state), step


def _signature(tree):
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, [(jnp.shape(x), jnp.asarray(x).dtype) for x in leaves]


NAMES = tuple(HYPERPARAMETERS)


@pytest.mark.parametrize("name", NAMES)
def test_finite_inputs_give_finite_updates_and_a_stable_state(name):
  @SETTINGS
  @hypothesis.given(_problem(name))
  def check(problem):
    hyperparameters, _, params, gradients, values = problem
    state, step = _init(name, hyperparameters, params)
    signature = _signature(state)
    for gradient, value in zip(gradients, values):
      params, state, updates = step(params, state, gradient, value)
      for leaf in jax.tree.leaves((updates, params)):
        assert np.all(np.isfinite(leaf))
      assert _signature(state) == signature

  check()


SCHEDULE_FREE = tuple(name for name in NAMES
                      if name.startswith("schedule_free"))


@pytest.mark.parametrize("name", SCHEDULE_FREE)
def test_schedule_free_zero_gradient_without_decay_keeps_x_and_y(name):
  # From the start x = y = z = params; with zero gradients and no decay
  # nothing pulls any of them anywhere.
  @SETTINGS
  @hypothesis.given(_problem(name, steps=0))
  def check(problem):
    hyperparameters, _, params, _, _ = problem
    decay = ("weight_decay_at_y" if name == "schedule_free_wrapper"
             else "weight_decay")
    hyperparameters = {**hyperparameters, decay: 0.0}
    state, step = _init(name, hyperparameters, params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    current = params
    for _ in range(STEPS):
      # A positive loss: ScheduleFree+'s Polyak step is f / ||g||_1.
      current, state, _ = step(current, state, zeros, np.float32(1.0))
    x_leaves = jax.tree.leaves(optfree.eval_params(state, current))
    for start, y, x in zip(jax.tree.leaves(params), jax.tree.leaves(current),
                           x_leaves):
      np.testing.assert_array_equal(y, start)
      # eval_params solves y = (1 - b1) z + b1 x for x, which scales y's
      # rounding error by about 2 / b1.
      interpolation = hyperparameters[INTERPOLATION.get(name, "b1")]
      rtol = 4 * np.finfo(np.float32).eps / interpolation
      np.testing.assert_allclose(x, start, rtol=rtol, atol=1e-30)

  check()


def test_lion_update_is_a_signed_step_plus_decay():
  # u = -lr (sign(.) + wd p): so |u| <= lr (1 + wd |p|), and u + lr wd p is
  # -lr, 0 or +lr per element.
  @SETTINGS
  @hypothesis.given(_problem("lion"))
  def check(problem):
    hyperparameters, _, params, gradients, values = problem
    state, step = _init("lion", hyperparameters, params)
    lr, wd = hyperparameters["learning_rate"], hyperparameters["weight_decay"]
    for gradient, value in zip(gradients, values):
      new_params, state, updates = step(params, state, gradient, value)
      for p, u in zip(jax.tree.leaves(params), jax.tree.leaves(updates)):
        p, u = np.asarray(p, np.float64), np.asarray(u, np.float64)
        scale = lr * (1 + wd * np.abs(p))
        tolerance = 1e-6 * scale + 1e-30
        assert np.all(np.abs(u) <= scale + tolerance)
        signed = np.abs(u + lr * wd * p)
        assert np.all(np.minimum(signed, np.abs(signed - lr)) <= tolerance)
      params = new_params

  check()


@pytest.mark.parametrize("name", ["adabound", "amsbound", "adaboundw"])
def test_adabound_step_lies_within_its_bounds(name):
  # Per element, the step is clip(step size, lower_t, upper_t) * m_t with the
  # bounds final_lr (1 - 1/(gamma t + 1)) and final_lr (1 + 1/(gamma t)) and
  # m_t the (uncorrected) running mean of the gradients; AdaBound's L2 decay
  # enters the gradient, AdaBoundW's decay is subtracted after the step.
  @SETTINGS
  @hypothesis.given(_problem(name))
  def check(problem):
    hyperparameters, _, params, gradients, values = problem
    state, step = _init(name, hyperparameters, params)
    b1, final_lr, gamma, wd = (hyperparameters[key] for key in
                               ("b1", "final_lr", "gamma", "weight_decay"))
    zeros = [np.zeros(np.shape(p)) for p in jax.tree.leaves(params)]
    # m_t, and the same average of |g| as the scale of m's rounding error.
    momentum, magnitude = zeros, zeros
    for t, (gradient, value) in enumerate(zip(gradients, values), start=1):
      new_params, state, updates = step(params, state, gradient, value)
      lower = final_lr * (1 - 1 / (gamma * t + 1))
      upper = final_lr * (1 + 1 / (gamma * t))
      leaves = zip(jax.tree.leaves(params), jax.tree.leaves(gradient),
                   jax.tree.leaves(updates), momentum, magnitude)
      momentum, magnitude = [], []
      for p, g, u, m, size in leaves:
        p, g, u = (np.asarray(a, np.float64) for a in (p, g, u))
        if name == "adaboundw":
          u = u + wd * p
        else:
          g = g + wd * p
        m = b1 * m + (1 - b1) * g
        size = b1 * size + (1 - b1) * np.abs(g)
        momentum.append(m)
        magnitude.append(size)
        # float32 rounding of m (and of AdaBoundW's decay, taken off above).
        decay = wd * np.abs(p)
        slack = 1e-5 * (upper * (size + decay) + decay) + 1e-30
        assert np.all(np.abs(u) <= upper * np.abs(m) + slack)
        assert np.all(np.abs(u) >= lower * np.abs(m) - slack)
        assert np.all(-u * np.sign(m) >= -slack)  # a step along -m
      params = new_params

  check()


# Random pytrees with mixed dtypes ------------------------------------------

from tests.optimizer_table import PUBLIC, PUBLIC_IDS  # noqa: E402

MIXED_STEPS = 5  # past RAdam's silent first 4 steps (b2 = 0.999)
MIXED_SETTINGS = hypothesis.settings(
    max_examples=3, deadline=None, derandomize=True, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
FLOATS = ("float32", "bfloat16", "float16")
NOT_FLOATS = ("int32", "uint8", "bool", "complex64")
LEAF_SHAPES = ((), (3,))


@st.composite
def _mixed_tree(draw, floats, others):
  """Float leaves, and the same tree with 1-2 non-float leaves added.

  Returns ``(specs, with_invalid, seed, nested)``: leaf name -> (dtype, shape)
  dicts for the valid tree (1-3 leaves of drawn float dtypes) and the invalid
  one, a seed for the values, and whether the first leaf sits one dict down.
  """
  leaf = lambda dtypes: st.tuples(st.sampled_from(dtypes),  # noqa: E731
                                  st.sampled_from(LEAF_SHAPES))
  valid = draw(st.lists(leaf(floats), min_size=1, max_size=3))
  invalid = draw(st.lists(leaf(others), min_size=1, max_size=2))
  specs = {f"leaf{i}": spec for i, spec in enumerate(valid)}
  position = draw(st.integers(0, len(specs)))
  mixed = list(specs.items())
  for i, spec in enumerate(invalid):
    mixed.insert(position, (f"bad{i}", spec))
  return specs, dict(mixed), draw(st.integers(0, 2**16)), draw(st.booleans())


def _build(specs, seed, nested):
  rng = np.random.default_rng(seed)
  leaves = {}
  for name, (dtype, shape) in specs.items():
    values = rng.uniform(-2, 2, size=shape)
    if dtype == "bool":
      leaves[name] = jnp.asarray(values > 0)
    elif dtype.startswith(("int", "uint")):
      leaves[name] = jnp.asarray(np.abs(values) * 10, dtype)
    else:
      # Away from 0, so that every element has a nonzero gradient.
      leaves[name] = jnp.asarray(values + np.sign(values) * 0.1 + 0.05, dtype)
  if nested:
    first = next(iter(leaves))
    return {"inner": {first: leaves.pop(first)}, **leaves}
  return leaves


@functools.lru_cache(maxsize=None)
def _mixed_step(name):
  (entry,) = [entry for entry, _ in PUBLIC if entry.name == name]
  tx = entry.make()

  @jax.jit
  def step(params, state, gradient):
    updates, state = tx.update(gradient, state, params,
                               value=stand_in_loss(params))
    return optax.apply_updates(params, updates), state, updates

  return tx, step


def _check_mixed_tree(name, specs, with_invalid, seed, nested):
  tx, step = _mixed_step(name)
  # The documented error: a TypeError at init naming each invalid leaf (and
  # only those), by key path and dtype.
  params = _build(with_invalid, seed, nested)
  with pytest.raises(TypeError) as info:
    tx.init(params)
  message = str(info.value)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    line = f"\n  {jax.tree_util.keystr(path)}: {leaf.dtype}\n"
    is_float = jnp.issubdtype(leaf.dtype, jnp.floating)
    assert (line in message) != is_float, (line, message)

  params = _build(specs, seed, nested)
  start = params
  state = tx.init(params)
  signature = _signature(state)
  # Low-precision leaves may stall where a step is below their rounding
  # spacing (a bfloat16 1.0 ignores steps under 2**-8): only float32 and
  # float64 leaves must move.
  moved = jax.tree.map(
      lambda p: np.full(p.shape, p.dtype not in (jnp.float32, jnp.float64)),
      params)
  for index in range(MIXED_STEPS):
    gradient = _build(specs, seed + index + 1, nested)
    params, state, updates = step(params, state, gradient)
    assert _signature(state) == signature
    for p, u, old in zip(jax.tree.leaves(params), jax.tree.leaves(updates),
                         jax.tree.leaves(start)):
      assert p.dtype == u.dtype == old.dtype
      assert np.all(np.isfinite(np.asarray(p, np.float64)))
      assert np.all(np.isfinite(np.asarray(u, np.float64)))
    moved = jax.tree.map(lambda m, u: m | (np.asarray(u) != 0), moved, updates)
  # Every element of every such leaf got a nonzero update at some step.
  assert all(np.all(m) for m in jax.tree.leaves(moved)), moved


@pytest.mark.parametrize("name", PUBLIC_IDS)
def test_mixed_dtype_trees_train_or_fail_at_init(name):
  @MIXED_SETTINGS
  @hypothesis.given(_mixed_tree(FLOATS, NOT_FLOATS))
  def check(tree):
    _check_mixed_tree(name, *tree)

  check()


@pytest.mark.parametrize("name", PUBLIC_IDS)
def test_mixed_dtype_trees_with_float64_train_under_x64(name, x64):
  # float64 leaves (and int64 ones, rejected) exist only under x64.
  @MIXED_SETTINGS
  @hypothesis.given(_mixed_tree(FLOATS + ("float64",), ("int64", "bool")))
  def check(tree):
    _check_mixed_tree(name, *tree)

  check()


# The container at the root of the params ------------------------------------

from tests.optimizer_table import OPTIMIZER_IDS  # noqa: E402


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_params_with_a_list_at_the_root_train_as_a_dict_does(entry):
  # The same leaves in the same order, once as [a, {"b": ..., "c": ...}] and
  # once as {"0": a, "1": {...}}: the runs must be identical (a list is a
  # container like any other, not a list of leaves).
  rng = np.random.default_rng(0)
  leaves = [jnp.asarray(rng.normal(size=shape), jnp.float32)
            for shape in ((4,), (2, 2), ())]
  as_list = [leaves[0], {"b": leaves[1], "c": leaves[2]}]
  as_dict = {"0": leaves[0], "1": {"b": leaves[1], "c": leaves[2]}}

  def run(params):
    tx = entry.make()
    state = tx.init(params)
    for step in range(3):
      gradient = jax.tree.map(lambda p, s=step: jnp.cos(p * (s + 1.5)) - 0.3,
                              params)
      updates, state = tx.update(gradient, state, params,
                                 value=stand_in_loss(params))
      params = optax.apply_updates(params, updates)
    return jax.tree.leaves(params)

  for a, b in zip(run(as_list), run(as_dict)):
    np.testing.assert_array_equal(a, b)
