"""AdaBound, AMSBound and AdaBoundW: reference parity, state, injection, errors.

Golden trajectories: tests/reference/adabound.npz, written by
tests/reference/gen_adabound.py from PyPI adabound 0.0.5 (AdaBoundW from the
Luolc/AdaBound repository) under torch schedulers.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from optfree.adabound import ScaleByAdaBoundState

NUM_TENSORS = 4
GOLDEN = "adabound.npz"


@functools.cache
def load_golden(filename):
  """The arrays of tests/reference/<filename> (also used by test_lion.py)."""
  path = os.path.join(os.path.dirname(__file__), "reference", filename)
  with np.load(path) as data:
    return {key: data[key] for key in data.files}


def config_names(filename):
  return sorted(key.split("/")[0] for key in load_golden(filename)
                if key.endswith("/config"))


def load_config(filename, name):
  return json.loads(str(load_golden(filename)[f"{name}/config"]))


def torch_schedule(config):
  """The schedule equal to the config's torch scheduler, or a float.

  Written out rather than optax.exponential_decay, which divides the int32
  count in float32 even under x64 and so misses 1e-10.
  """
  schedule = config["schedule"]
  if schedule is None:
    return config["lr"]
  period = schedule.get("step_size", 1)
  return lambda count: config["lr"] * schedule["gamma"] ** jnp.asarray(
      count // period, float)


def optimizer_kwargs(config):
  decayed = config["decay_tensors"]
  return dict(
      learning_rate=torch_schedule(config),
      final_lr=config["final_lr"],
      b1=config["betas"][0],
      b2=config["betas"][1],
      gamma=config["gamma"],
      eps=config["eps"],
      weight_decay=config["weight_decay"],
      amsbound=config["amsbound"],
      mask=None if decayed is None else [
          i in decayed for i in range(NUM_TENSORS)],
  )


def make_from_config(config):
  factory = {"adabound": optfree.adabound,
             "adaboundw": optfree.adaboundw}[config["variant"]]
  return factory(**optimizer_kwargs(config))


def run(tx, data, dtype):
  """Params after every step on the generators' problem, one array per tensor.

  The gradient at step t is ``scale * (p - target) + noise[t]``, as in
  gen_adabound.py.
  """

  def tensors(kind):
    return [jnp.asarray(data[f"{kind}/{i}"], dtype) for i in range(NUM_TENSORS)]

  scale, target = tensors("scale"), tensors("target")
  noise = tensors("noise")

  @jax.jit
  def trajectory(params):
    def step(carry, noise_t):
      params, state = carry
      grads = [s * (p - t) + n
               for s, p, t, n in zip(scale, params, target, noise_t)]
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), params

    _, history = jax.lax.scan(step, (params, tx.init(params)), noise)
    return history

  return trajectory(tensors("init"))


def assert_matches_golden(history, data, name, rtol, atol):
  for i in range(NUM_TENSORS):
    expected = data[f"{name}/params/{i}"]
    np.testing.assert_allclose(np.asarray(history[i], np.float64), expected,
                               rtol=rtol, atol=atol,
                               err_msg=f"{name}, tensor {i}")


def assert_reproduces(tx, name, dtype, rtol, atol, filename=GOLDEN):
  data = load_golden(filename)
  history = run(tx, data, dtype)
  assert history[0].dtype == dtype
  assert_matches_golden(history, data, name, rtol, atol)


@pytest.mark.parametrize("name", config_names(GOLDEN))
def test_matches_reference_every_step(x64, name):
  tx = make_from_config(load_config(GOLDEN, name))
  assert_reproduces(tx, name, jnp.float64, rtol=1e-10, atol=1e-12)


def test_defaults_are_the_reference_defaults(x64):
  assert_reproduces(optfree.adabound(), "adabound_default", jnp.float64,
                    rtol=1e-10, atol=1e-12)


def test_golden_file_exercises_both_bounds():
  counts = json.loads(str(load_golden(GOLDEN)["bound_counts"]))
  assert sum(c["below_lower"] > 0 for c in counts.values()) >= 6
  assert sum(c["above_upper"] > 0 for c in counts.values()) >= 6
  assert all(c["inside"] > 0 for c in counts.values())


@pytest.mark.parametrize("name", ["adabound_options", "amsbound_step_lr",
                                  "adaboundw"])
def test_float32_close_to_float64_reference(name):
  # Params are O(1): 150 steps of float32 rounding stay within 1e-5.
  assert_reproduces(make_from_config(load_config(GOLDEN, name)), name,
                    jnp.float32, rtol=1e-5, atol=1e-5)


def test_inject_hyperparams_under_jit_matches_reference(x64):
  name = "adabound_options"
  kwargs = optimizer_kwargs(load_config(GOLDEN, name))
  tx = optax.inject_hyperparams(optfree.adabound)(**kwargs)
  assert set(tx.init([jnp.zeros(1)]).hyperparams) == {
      "learning_rate", "final_lr", "b1", "b2", "gamma", "eps", "weight_decay",
      "seed"}
  assert_reproduces(tx, name, jnp.float64, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", [
    name for name in config_names(GOLDEN)
    if load_config(GOLDEN, name)["schedule"] is not None])
def test_injected_optax_schedule_moves_the_bounds_like_torch(x64, name):
  # Injected, adabound only sees the current learning rate; the bounds follow
  # it through the base rate that init stored (torch's base_lrs), with a
  # constant final_lr as in the reference.
  config = load_config(GOLDEN, name)
  schedule = config["schedule"]
  kwargs = optimizer_kwargs(config)
  # float64 arrays: given Python floats, optax computes in float32.
  kwargs["learning_rate"] = optax.exponential_decay(
      jnp.float64(config["lr"]), schedule.get("step_size", 1),
      jnp.float64(schedule["gamma"]), staircase=True)
  factory = {"adabound": optfree.adabound,
             "adaboundw": optfree.adaboundw}[config["variant"]]
  tx = optax.inject_hyperparams(factory)(**kwargs)
  assert_reproduces(tx, name, jnp.float64, rtol=1e-10, atol=1e-12)


def test_injected_hyperparams_change_without_recompiling():
  tx = optax.inject_hyperparams(optfree.amsbound)(learning_rate=1e-2)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  grads = {"w": jnp.array([1.0, -2.0, 3.0])}
  first, _ = update(grads, state, params)
  state.hyperparams["learning_rate"] = jnp.asarray(2e-2, jnp.float32)
  second, _ = update(grads, state, params)
  assert update._cache_size() == 1
  # The first step sits inside the bounds, so it scales with the rate.
  np.testing.assert_allclose(second["w"], 2 * first["w"], rtol=1e-6)


@pytest.mark.parametrize("amsbound", [False, True])
@pytest.mark.parametrize("factory", [optfree.adabound, optfree.adaboundw])
def test_state_holds_moments_a_counter_and_the_base_lr(factory, amsbound):
  params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(5, jnp.bfloat16)}
  tx = factory(weight_decay=1e-4, amsbound=amsbound)
  state = tx.init(params)
  buffers = [s for s in jax.tree.leaves(state) if s.ndim > 0]
  scalars = [s for s in jax.tree.leaves(state) if s.ndim == 0]
  assert len(buffers) == len(jax.tree.leaves(params)) * (3 if amsbound else 2)
  assert [(s.dtype, s.shape) for s in scalars] == [(jnp.int32, ()),
                                                   (jnp.float32, ())]
  (inner,) = [s for s in state if isinstance(s, ScaleByAdaBoundState)]
  assert inner.base_lr == jnp.float32(1e-3)
  for moments in (inner.mu, inner.nu) + ((inner.nu_max,) if amsbound else ()):
    assert jax.tree.map(lambda m: (m.shape, m.dtype), moments) == jax.tree.map(
        lambda p: (p.shape, p.dtype), params)
  assert (inner.nu_max is None) == (not amsbound)


def test_mu_dtype_keeps_first_moment_in_bfloat16():
  params = {"w": jnp.linspace(-1.0, 1.0, 6)}
  tx = optfree.amsbound(learning_rate=1e-2, mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(3):
    updates, state = update({"w": params["w"] * 3.0}, state, params)
    params = optax.apply_updates(params, updates)
  inner = state[1]
  assert inner.mu["w"].dtype == jnp.bfloat16
  assert inner.nu["w"].dtype == inner.nu_max["w"].dtype == jnp.float32
  assert updates["w"].dtype == jnp.float32
  assert jnp.all(inner.mu["w"] != 0)


def test_float32_leaves_compute_in_float32_under_x64(x64):
  params = {"w": jnp.ones((3, 4), jnp.float32)}
  tx = optfree.amsbound(1e-2, weight_decay=1e-3)
  jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params), params)
  wide = [var.aval for eqn in jaxpr.eqns for var in eqn.outvars
          if var.aval.shape and var.aval.dtype == jnp.float64]
  assert not wide


def second_update_of_tiny_gradients(schedule, inject):
  """The second update of scale_by_adabound(schedule, final_lr=0.1, gamma=1),
  b1 = b2 = 0, on gradients small enough to take the upper bound:
  final_lr_2 (1 + 1/2) g with final_lr_2 = 0.1 lr_1 / lr_0."""
  grads = jnp.array([1e-6, -1e-6])
  factory = optfree.scale_by_adabound
  if inject:
    factory = optax.inject_hyperparams(factory)
  tx = factory(schedule, final_lr=0.1, gamma=1.0, b1=0.0, b2=0.0)
  update = jax.jit(tx.update)
  _, state = update(grads, tx.init(grads))
  return update(grads, state)[0] / grads


@pytest.mark.parametrize("inject", [False, True], ids=["direct", "injected"])
@pytest.mark.parametrize("rate", [0.5, 0.25])
def test_learning_rate_schedule_moves_the_bounds(rate, inject):
  schedule = lambda count: jnp.where(count == 0, 1.0, rate)  # noqa: E731
  np.testing.assert_allclose(
      second_update_of_tiny_gradients(schedule, inject),
      0.1 * rate * (1 + 1 / 2.0), rtol=1e-6)


@pytest.mark.parametrize("inject", [False, True], ids=["direct", "injected"])
def test_schedule_starting_at_zero_keeps_final_lr(inject):
  # No base rate to scale by: the bounds keep final_lr, whatever lr_1 is.
  schedule = lambda count: jnp.where(count == 0, 0.0, 0.25)  # noqa: E731
  np.testing.assert_allclose(
      second_update_of_tiny_gradients(schedule, inject),
      0.1 * (1 + 1 / 2.0), rtol=1e-6)


BAD_ARGUMENTS = [
    ("learning_rate", -1e-3),
    ("final_lr", -0.1),
    ("gamma", 0.0),
    ("gamma", -1e-3),
    ("b1", 1.0),
    ("b1", -0.1),
    ("b2", 1.0),
    ("b2", -0.5),
    ("eps", -1e-8),
    ("weight_decay", -1e-4),
]


@pytest.mark.parametrize("factory", [optfree.adabound, optfree.amsbound,
                                     optfree.adaboundw])
@pytest.mark.parametrize("argument, value", BAD_ARGUMENTS)
def test_bad_hyperparameter_raises_naming_it(factory, argument, value):
  with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
    factory(**{argument: value})


@pytest.mark.parametrize("argument, value", BAD_ARGUMENTS[:-1])
def test_scale_by_adabound_validates(argument, value):
  with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
    optfree.scale_by_adabound(**{argument: value})


def test_zero_learning_rate_takes_the_lower_bound():
  grads = jnp.array([0.5, -2.0])
  tx = optfree.scale_by_adabound(0.0, final_lr=0.1, gamma=1.0, b1=0.0)
  updates, _ = tx.update(grads, tx.init(grads))
  np.testing.assert_allclose(updates, 0.1 * (1 - 1 / 2.0) * grads, rtol=1e-6)


def test_callable_mask_under_inject_hyperparams():
  params = {"w": jnp.ones(2), "b": jnp.ones(2)}
  mask = lambda tree: {"w": True, "b": False}  # noqa: E731
  tx = optax.inject_hyperparams(optfree.adaboundw, static_args="mask")(
      learning_rate=1e-3, weight_decay=0.5, mask=mask)
  updates, _ = jax.jit(tx.update)(
      jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.5)
  np.testing.assert_allclose(updates["b"], 0.0)


def test_edge_values_are_accepted():
  params = jnp.ones(3)
  for tx in (optfree.adabound(b1=0.0, b2=0.0, eps=0.0, weight_decay=0.0),
             optfree.adaboundw(learning_rate=0.0, final_lr=0.0, gamma=5.0)):
    updates, _ = tx.update(params, tx.init(params), params)
    assert jnp.all(jnp.isfinite(updates))
