"""AdaBound, AMSBound and AdaBoundW: reference parity, state, injection, errors.

Golden trajectories: tests/reference/adabound.npz, written by
tests/reference/gen_adabound.py from PyPI adabound 0.0.5 (AdaBoundW from the
Luolc/AdaBound repository) under torch schedulers.
"""

import functools
import inspect
import json
import math
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from optfree.adabound import _bounds
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


def reference_scalars(lr, base_lr, final_lr, gamma, b1, b2, t):
  """The step size and bounds as adabound 0.0.5's AdaBound.step has them."""
  step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
  final = final_lr * lr / base_lr
  return (step_size, final * (1 - 1 / (gamma * t + 1)),
          final * (1 + 1 / (gamma * t)))


@pytest.mark.parametrize("t", [1, 2, 10, 1000, 10**6])
@pytest.mark.parametrize("lr, base_lr", [(1e-3, 1e-3), (2.5e-4, 1e-3),
                                         (0.3, 0.1)])
def test_bounds_are_the_reference_scalars(x64, t, lr, base_lr):
  hyperparams = dict(final_lr=0.1, gamma=1e-3, b1=0.9, b2=0.999)
  scalars = _bounds(learning_rate=lr, base_lr=base_lr, t=float(t),
                    **hyperparams)
  np.testing.assert_allclose(
      scalars, reference_scalars(lr, base_lr, t=t, **hyperparams),
      rtol=1e-14)


def test_bounds_bracket_the_final_rate_and_close_on_it(x64):
  t = jnp.asarray([1.0, 10.0, 1e3, 1e6, 1e12])
  scalars = _bounds(learning_rate=1e-3, base_lr=1e-3, final_lr=0.1,
                    gamma=1e-3, b1=0.9, b2=0.999, t=t)
  assert jnp.all(scalars.lower < 0.1) and jnp.all(scalars.upper > 0.1)
  assert jnp.all(jnp.diff(scalars.lower) > 0)
  assert jnp.all(jnp.diff(scalars.upper) < 0)
  np.testing.assert_allclose([scalars.lower[-1], scalars.upper[-1]], 0.1,
                             rtol=1e-8)
  # At the first step the interval is final_lr (gamma/(gamma+1), 1 + 1/gamma)
  # (1 - 1/(gamma + 1) loses 3 digits to cancellation).
  np.testing.assert_allclose(
      [scalars.lower[0], scalars.upper[0]],
      [0.1 * 1e-3 / (1 + 1e-3), 0.1 * (1 + 1e3)], rtol=1e-12)


def test_bounds_follow_the_learning_rate_through_the_base_rate(x64):
  def bounds_at(lr, base_lr):
    scalars = _bounds(learning_rate=lr, base_lr=base_lr, final_lr=0.1,
                      gamma=1e-3, b1=0.9, b2=0.999, t=5.0)
    return np.asarray([scalars.lower, scalars.upper])

  np.testing.assert_allclose(bounds_at(0.5e-3, 1e-3), bounds_at(1e-3, 1e-3) / 2,
                             rtol=1e-14)
  # No base rate (a schedule starting at 0): final_lr as given.
  np.testing.assert_allclose(bounds_at(0.25, 0.0), bounds_at(1.0, 1.0),
                             rtol=1e-14)


def test_bounds_take_traced_steps_and_rates():
  def scalars(t, lr):
    return _bounds(learning_rate=lr, base_lr=1e-3, final_lr=0.1, gamma=1e-3,
                   b1=0.9, b2=0.999, t=t)

  steps = jnp.arange(1.0, 6.0)
  rates = jnp.linspace(1e-3, 1e-4, 5)
  mapped = jax.jit(jax.vmap(scalars))(steps, rates)
  for i in range(5):
    np.testing.assert_allclose(
        [field[i] for field in mapped], scalars(steps[i], rates[i]),
        rtol=1e-6)


def trajectory(tx, params, steps=15):
  """Updates, params and state after each of ``steps`` jitted steps."""
  def step(carry, t):
    params, state = carry
    grads = jax.tree.map(
        lambda p: jnp.sin(3.0 * p.astype(jnp.float32) + t).astype(p.dtype),
        params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), (updates, params, state)

  return jax.jit(lambda: jax.lax.scan(
      step, (params, tx.init(params)), jnp.arange(float(steps)))[1])()


def assert_schedule_is_native(factory, argument, schedule, rounding,
                              **hyperparams):
  """``factory(argument=schedule)`` runs the trajectory, bit for bit, of
  ``optax.inject_hyperparams(factory)`` injecting that schedule alone."""
  dtype = jnp.float32 if rounding == "nearest" else jnp.bfloat16
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4),
            "b": jnp.array([0.5, -0.25], dtype)}
  settings = dict(hyperparams, rounding=rounding, seed=7)
  settings[argument] = schedule
  native = factory(**settings)
  # Only the schedule injected: injected numbers become float32 arrays, whose
  # arithmetic (1 - b2 in float32) differs from the Python floats'. float32
  # hyperparameters for bfloat16 params (else inject rounds them to bfloat16).
  static = [name for name in inspect.signature(factory).parameters
            if name != argument]
  injected = optax.inject_hyperparams(
      factory, static_args=static, hyperparam_dtype=jnp.float32)(**settings)
  ours, theirs = trajectory(native, params), trajectory(injected, params)
  jax.tree.map(np.testing.assert_array_equal, ours[:2], theirs[:2])
  # The momentum really moved with the schedule: not a constant trajectory.
  constant = trajectory(factory(**dict(settings, **{
      argument: float(schedule(0))})), params)
  assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(
      jax.tree.leaves(ours[1]), jax.tree.leaves(constant[1])))


SCHEDULES = {
    "b1": optfree.onecycle_momentum_schedule(total_steps=15),
    "b2": optax.linear_schedule(0.99, 0.9, 10),
    "weight_decay": optax.linear_schedule(0.5, 0.0, 10),
}


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("argument", sorted(SCHEDULES))
@pytest.mark.parametrize("factory", [optfree.adabound, optfree.amsbound,
                                     optfree.adaboundw])
def test_schedules_equal_inject_hyperparams(factory, argument, rounding):
  assert_schedule_is_native(factory, argument, SCHEDULES[argument], rounding,
                            learning_rate=1e-2, final_lr=0.05)


@pytest.mark.parametrize("argument", ["b1", "b2"])
def test_scale_by_adabound_takes_moment_schedules(argument):
  assert_schedule_is_native(optfree.scale_by_adabound, argument,
                            SCHEDULES[argument], "nearest",
                            learning_rate=1e-2, amsbound=True)


@pytest.mark.parametrize("argument", ["final_lr", "gamma", "eps"])
@pytest.mark.parametrize("factory", [optfree.scale_by_adabound,
                                     optfree.adabound, optfree.amsbound,
                                     optfree.adaboundw])
def test_a_schedule_where_a_number_is_needed_shows_the_inject_route(
    factory, argument):
  route = rf"optax.inject_hyperparams\(optfree.{factory.__name__}\)"
  message = rf"(?s){argument} must be a number.*{route}"
  with pytest.raises(ValueError, match=message):
    factory(**{argument: optax.constant_schedule(0.1)})


def test_the_inject_route_moves_final_lr():
  # Tiny gradients take the upper bound, final_lr_t (1 + 1 / (gamma t)) g.
  tx = optax.inject_hyperparams(optfree.scale_by_adabound)(
      1.0, final_lr=lambda count: 0.1 * (count + 1), gamma=1.0, b1=0.0,
      b2=0.0)
  grads = jnp.array([1e-6, -1e-6])
  state = tx.init(grads)
  for t, final_lr in [(1, 0.1), (2, 0.2), (3, 0.3)]:
    updates, state = tx.update(grads, state)
    np.testing.assert_allclose(updates / grads, final_lr * (1 + 1 / t),
                               rtol=1e-6)


def _on_other_platforms(*args, default, **_):
  # What XLA:TPU and XLA:GPU get: lax.platform_dependent's default branch.
  return default(*args)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_other_platforms_compute_the_same_numbers(dtype):
  params = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)}
  tx = optfree.amsbound(1e-2, weight_decay=1e-3)
  on_cpu = trajectory(tx, params)
  with mock.patch.object(jax.lax, "platform_dependent", _on_other_platforms):
    elsewhere = trajectory(tx, params)
  jax.tree.map(np.testing.assert_array_equal, on_cpu, elsewhere)


@pytest.mark.parametrize("platform", ["cpu", "tpu", "cuda"])
def test_the_scalar_operand_is_lowered_for_cpu_only(platform):
  tx = optfree.amsbound()
  params = jnp.ones(8)
  exported = jax.export.export(jax.jit(tx.update), platforms=[platform])(
      params, tx.init(params), params)
  barrier = "optimization_barrier" in exported.mlir_module()
  assert barrier == (platform == "cpu")
