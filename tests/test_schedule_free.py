"""Schedule-Free: parity with PyPI schedulefree 1.4.1 and the contract.

Golden trajectories come from tests/reference/gen_schedule_free.py (torch,
float64). Each case reruns the same noisy quadratic here, taking gradients at
optfree's own y, and compares y after every step and x at the end.
"""

import functools
import inspect
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import golden_files
import optfree
from optfree.schedule_free import _averaging_step
from optfree.schedule_free import _radam_rho

GOLDEN, CASES = golden_files.load("schedule_free.npz")
_split = golden_files.split
_flat = golden_files.flat


def _optimizer(name):
  """The optfree optimizer of a golden case, from its torch configuration."""
  config = json.loads(str(GOLDEN[f"{name}/config"]))
  kind, kwargs = config["kind"], dict(config["kwargs"])
  learning_rate = kwargs.pop("lr")
  if config["scheduled"]:
    # The torch LambdaLR's value at each step, as the param group held it.
    table = jnp.asarray(GOLDEN[f"{name}/lr"])
    learning_rate = lambda count: table[count]
  if "momentum" in kwargs:
    kwargs["b1"] = kwargs.pop("momentum")
  if "betas" in kwargs:
    kwargs["b1"], kwargs["b2"] = kwargs.pop("betas")
  if kind in ("sgd", "adamw", "radam"):
    factory = dict(sgd=optfree.schedule_free_sgd,
                   adamw=optfree.schedule_free_adamw,
                   radam=optfree.schedule_free_radam)[kind]
    return factory(learning_rate, **kwargs)
  base_decay = kwargs.pop("base_weight_decay", 0.0)
  if kind == "wrap_sgd":
    base = optax.chain(optax.add_decayed_weights(base_decay),
                       optax.sgd(learning_rate))
  else:
    adam_args = dict(b1=0.0, b2=kwargs.pop("b2"), eps=kwargs.pop("eps", 1e-8))
    base = (optax.adamw(learning_rate, weight_decay=base_decay, **adam_args)
            if kind == "wrap_adamw" else optax.adam(learning_rate, **adam_args))
  return optfree.schedule_free(base, learning_rate, **kwargs)


def _train(optimizer, dtype, steps=None):
  """Runs the golden problem; returns y after each step, the params, state."""
  h = _split(GOLDEN["problem/h"])
  target = _split(GOLDEN["problem/target"])
  noise = jax.vmap(_split)(jnp.asarray(GOLDEN["problem/noise"][:steps]))
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype),
                        _split(GOLDEN["problem/init"]))

  def step(carry, noise_k):
    params, state = carry
    grads = jax.tree.map(
        lambda y, hi, ti, ni: (hi * (y - ti) + ni).astype(dtype),
        params, h, target, noise_k)
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), _flat(params)

  @jax.jit
  def run(params):
    return jax.lax.scan(step, (params, optimizer.init(params)), noise)

  (params, state), ys = run(params)
  return np.asarray(ys), params, state


def _assert_matches_golden(name, ys, x, rtol):
  golden_y, golden_x = GOLDEN[f"{name}/y"], GOLDEN[f"{name}/x"]
  # Relative to the scale of the trajectory: a few entries pass near zero.
  np.testing.assert_allclose(ys, golden_y, rtol=0,
                             atol=rtol * np.abs(golden_y).max())
  np.testing.assert_allclose(x, golden_x, rtol=0,
                             atol=rtol * np.abs(golden_x).max())


@pytest.mark.parametrize("name", CASES)
def test_matches_reference_float64(name, x64):
  ys, params, state = _train(_optimizer(name), jnp.float64)
  x = _flat(optfree.eval_params(state, params))
  _assert_matches_golden(name, ys, np.asarray(x), rtol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_float32_within_rounding_of_reference(name):
  ys, params, state = _train(_optimizer(name), jnp.float32)
  assert ys.dtype == np.float32
  x = _flat(optfree.eval_params(state, params))
  # A few float32 ulps after 120 steps. optax.adamw (the base of wrap_adamw)
  # rounds b2 = 0.999 to float32 before 1 - b2 (1.3e-5 relative), which
  # optfree's own optimizers avoid.
  rtol = 1e-5 if name == "wrap_adamw" else 2e-6
  _assert_matches_golden(name, ys, np.asarray(x), rtol=rtol)


def test_radam_rho_float32_accurate():
  # The textbook rho_t cancels catastrophically in float32 for b2 near 1.
  steps = np.arange(1, 5001, dtype=np.float64)
  b2 = np.array([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999])[:, None]
  power = b2**steps
  expected = 2 / (1 - b2) - 1 - 2 * steps * power / (1 - power)
  one_minus_b2 = jnp.asarray(1 - b2, jnp.float32)
  got = jax.jit(_radam_rho)(jnp.asarray(steps, jnp.float32), one_minus_b2,
                            jnp.log1p(-one_minus_b2))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


# --- Where optax.contrib differs from the reference (DESIGN principle 1) ---


# Where optax.contrib's Schedule-Free differs from the reference, optfree's
# behaviour is asserted here; optax's own numbers are measured by
# benchmarks/optax_contrib_differences.py and listed in the parity guide
# (docs/guides/parity.md), so that an improvement of optax fails nothing.


def _relative_error(ys, name):
  golden = GOLDEN[f"{name}/y"]
  return np.abs(ys - golden).max() / np.abs(golden).max()


def test_warmup_follows_the_reference_step_for_step(x64):
  ours, _, _ = _train(_optimizer("adamw_warmup_decay"), jnp.float64)
  assert _relative_error(ours, "adamw_warmup_decay") < 1e-10


def test_zero_warmup_means_no_warmup(x64):
  ours, _, _ = _train(optfree.schedule_free_adamw(0.05, warmup_steps=0),
                      jnp.float64)
  assert _relative_error(ours, "adamw_default") < 1e-10
  assert np.abs(ours[0] - GOLDEN["problem/init"]).max() > 1e-3


def test_wrapper_base_steps_on_z(x64):
  # The reference's base optimizer steps on z, so a base with weight decay
  # decays z.
  ours, _, _ = _train(_optimizer("wrap_adamw"), jnp.float64)
  assert _relative_error(ours, "wrap_adamw") < 1e-10


def test_polynomial_weighting_r(x64):
  for name in ("adamw_r_power", "sgd_r_power_b1"):
    ours, _, _ = _train(_optimizer(name), jnp.float64)
    assert _relative_error(ours, name) < 1e-10


def test_bfloat16_params_keep_weight_sum_growing():
  steps = 600
  params = {"w": jnp.ones(4, jnp.bfloat16)}
  grads = {"w": jnp.zeros(4, jnp.bfloat16)}
  optimizer = optfree.schedule_free_sgd(1.0)

  def step(state, _):
    return optimizer.update(grads, state, params)[1], None

  state = jax.jit(lambda: jax.lax.scan(
      step, optimizer.init(params), None, length=steps)[0])()
  # Kept in bfloat16 the sum would stop at 256 (8 significant bits), after
  # which c_t = 1/256 would no longer decay as 1/t.
  assert state.weight_sum.dtype == jnp.float32
  assert float(state.weight_sum) == steps


# --- State layout and dtypes ---

BUFFERS = {
    optfree.schedule_free_sgd: 1,
    optfree.schedule_free_adamw: 2,
    optfree.schedule_free_radam: 2,
}


@pytest.mark.parametrize("factory", list(BUFFERS), ids=lambda f: f.__name__)
def test_state_holds_only_the_needed_buffers(factory):
  params = {"a": jnp.zeros(5), "b": jnp.zeros((2, 3))}
  state = factory(weight_decay=0.1).init(params)
  assert isinstance(state, optfree.ScheduleFreeState)
  leaves = jax.tree.leaves(state)
  buffers = [leaf for leaf in leaves if leaf.ndim > 0]
  scalars = [leaf for leaf in leaves if leaf.ndim == 0]
  assert sorted(b.shape for b in buffers) == sorted(
      [(5,), (2, 3)] * BUFFERS[factory])
  # count, lr_max, weight_sum, weight_sum_compensation, b1.
  assert len(scalars) == 5


@pytest.mark.parametrize("factory", list(BUFFERS), ids=lambda f: f.__name__)
@pytest.mark.parametrize("state_dtype", [None, jnp.float32])
def test_dtypes_with_bfloat16_params(factory, state_dtype):
  params = {"a": jnp.full(3, 0.5, jnp.bfloat16)}
  optimizer = factory(0.1, weight_decay=0.01, state_dtype=state_dtype)
  state = optimizer.init(params)
  for _ in range(3):
    grads = {"a": jnp.full(3, 0.25, jnp.bfloat16)}
    updates, state = jax.jit(optimizer.update)(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert updates["a"].dtype == jnp.bfloat16
  assert params["a"].dtype == jnp.bfloat16
  assert state.count.dtype == jnp.int32 and int(state.count) == 3
  for scalar in (state.lr_max, state.weight_sum,
                 state.weight_sum_compensation, state.b1):
    assert scalar.shape == () and scalar.dtype == jnp.float32
  buffer_dtype = state_dtype or jnp.bfloat16
  for buffer in jax.tree.leaves((state.z, state.base_state)):
    assert buffer.dtype == buffer_dtype
  assert optfree.eval_params(state, params)["a"].dtype == jnp.bfloat16


def test_init_copies_params_into_a_distinct_z():
  params = jnp.arange(3.0)
  state = optfree.schedule_free_sgd().init(params)
  assert state.z is not params
  assert (state.z.unsafe_buffer_pointer()
          != params.unsafe_buffer_pointer())


# --- Long runs ---


def _scalar_state(count=0):
  f32 = jnp.float32
  return optfree.ScheduleFreeState(
      count=jnp.asarray(count, jnp.int32), lr_max=jnp.zeros([], f32),
      weight_sum=jnp.zeros([], f32), weight_sum_compensation=jnp.zeros([], f32),
      b1=jnp.asarray(0.9, f32), z=None, base_state=None)


@pytest.mark.parametrize("r", [0.0, 1.0])
def test_averaging_weight_right_far_past_2_24_steps_in_float32(r):
  steps = 2**25 + 1000
  lr, power = 0.5, 2.0

  @jax.jit
  def run(r):
    def body(carry, _):
      state, naive_sum = carry
      _, _, _, scalars = _averaging_step(state, lr, 0.9, r, power)
      weight = scalars["count"].astype(jnp.float32) ** r * lr**power
      return (state._replace(**scalars), naive_sum + weight), None
    (state, naive_sum), _ = jax.lax.scan(
        body, (_scalar_state(), jnp.zeros([], jnp.float32)), None,
        length=steps, unroll=16)
    _, _, c, _ = _averaging_step(state, lr, 0.9, r, power)
    return c, naive_sum

  c, naive_sum = run(r)
  t = steps + 1
  exact_sum = t if r == 0 else t * (t + 1) / 2
  assert float(c) == pytest.approx(t**r / exact_sum, rel=1e-6)
  if r == 0:
    # A plain float32 sum of equal weights stops growing at 2^24 of them.
    assert float(naive_sum) == 2**24 * lr**power


def test_step_counter_saturates_instead_of_wrapping():
  int32_max = np.iinfo(np.int32).max
  state = _scalar_state(count=int32_max - 1)
  for _ in range(3):
    _, _, c, scalars = _averaging_step(state, 0.5, 0.9, 1.0, 2.0)
    state = state._replace(**scalars)
    assert float(c) > 0
  assert int(state.count) == int32_max


# --- Options ---


def test_weight_decay_mask_leaves_masked_out_leaves_undecayed():
  def run(**kwargs):
    return _run(optfree.schedule_free_adamw(0.1, weight_decay=0.5, **kwargs),
                PARAMS, steps=4)[0]

  decayed = run()
  no_decay = run(mask={"a": False, "b": False})
  assert not np.allclose(decayed["b"], no_decay["b"])
  for mask in ({"a": True, "b": False}, lambda p: {"a": True, "b": False}):
    masked = run(mask=mask)
    np.testing.assert_array_equal(masked["a"], decayed["a"])
    np.testing.assert_array_equal(masked["b"], no_decay["b"])


def test_learning_rate_schedule_uses_one_count_for_step_and_weight():
  # With a schedule, the z-step and the averaging weight see the same lr:
  # after two steps of a rising schedule z has moved by lr_0 + lr_1.
  schedule = lambda count: 0.1 * (count + 1)
  optimizer = optfree.schedule_free_sgd(schedule)
  params = jnp.zeros(2)
  state = optimizer.init(params)
  for _ in range(2):
    updates, state = optimizer.update(jnp.ones(2), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(state.z, -(0.1 + 0.2), rtol=1e-6)
  np.testing.assert_allclose(state.lr_max, 0.2, rtol=1e-6)
  np.testing.assert_allclose(state.weight_sum, 0.1**2 + 0.2**2, rtol=1e-6)


# --- eval_params ---


def _sf():
  return optfree.schedule_free_adamw(0.05, warmup_steps=3, weight_decay=0.01)


def _run(optimizer, params, steps=5, between=None):
  state = optimizer.init(params)
  update = jax.jit(optimizer.update)
  for k in range(steps):
    grads = jax.tree.map(lambda p: (p - 1.25) * (k + 1) / 3, params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    if between is not None:
      state = between(k, state)
  return params, state


PARAMS = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}


@functools.cache
def _plain_eval_params():
  return optfree.eval_params(*_run(_sf(), PARAMS)[::-1])

NESTINGS = {
    "chain": lambda: optax.chain(optax.identity(), _sf()),
    "named_chain": lambda: optax.named_chain(("noop", optax.identity()),
                                             ("sf", _sf())),
    "inject_hyperparams": lambda: optax.inject_hyperparams(
        optfree.schedule_free_adamw)(learning_rate=0.05, warmup_steps=3,
                                     weight_decay=0.01),
    "multi_steps": lambda: optax.MultiSteps(_sf(), every_k_schedule=1),
    "masked": lambda: optax.masked(_sf(), {"a": True, "b": True}),
    # z is one vector here: the params raveled and concatenated.
    "flatten": lambda: optax.flatten(_sf()),
}


@pytest.mark.parametrize("nesting", list(NESTINGS))
def test_eval_params_finds_the_state_in_nested_optax_states(nesting):
  expected = _plain_eval_params()
  nested_params, nested_state = _run(NESTINGS[nesting](), PARAMS)
  x = jax.jit(optfree.eval_params)(nested_state, nested_params)
  for name in PARAMS:
    np.testing.assert_allclose(x[name], expected[name], rtol=1e-6)
  # x differs from y once the run has moved: eval_params is not a no-op.
  assert not np.allclose(x["a"], nested_params["a"])


def test_eval_params_under_partial_mask_returns_y_for_masked_out_leaves():
  params, state = _run(optax.masked(_sf(), {"a": True, "b": False}), PARAMS)
  x = optfree.eval_params(state, params)
  np.testing.assert_array_equal(x["b"], params["b"])
  only_a, only_a_state = _run(_sf(), {"a": PARAMS["a"]})
  np.testing.assert_allclose(x["a"], optfree.eval_params(only_a_state,
                                                        only_a)["a"], rtol=1e-6)


def test_eval_params_of_a_flattened_group_says_to_pass_that_group():
  # The flat z of optax.flatten does not say which leaves it holds.
  tx = optax.partition(
      {"sf": optax.flatten(_sf()), "frozen": optax.set_to_zero()},
      {"a": "sf", "b": "frozen"})
  params, state = _run(tx, PARAMS)
  with pytest.raises(ValueError, match="one vector of 3 elements.*only that "
                     "group's params"):
    optfree.eval_params(state, params)
  only_a, only_a_state = _run(optax.flatten(_sf()), {"a": PARAMS["a"]})
  np.testing.assert_allclose(
      optfree.eval_params(state, {"a": params["a"]})["a"],
      optfree.eval_params(only_a_state, only_a)["a"], rtol=1e-6)


def test_eval_params_uses_the_injected_b1_of_the_last_update():
  injected = optax.inject_hyperparams(optfree.schedule_free_sgd)(
      learning_rate=0.1, b1=0.9)

  def change_b1(k, state):
    if k == 2:
      state.hyperparams["b1"] = jnp.asarray(0.5, jnp.float32)
    return state

  params, state = _run(injected, PARAMS, between=change_b1)
  # The same run with two optimizers sharing one state.
  first, second = (optfree.schedule_free_sgd(0.1, b1=b1) for b1 in (0.9, 0.5))
  p, s = PARAMS, first.init(PARAMS)
  for k in range(5):
    grads = jax.tree.map(lambda q: (q - 1.25) * (k + 1) / 3, p)
    updates, s = (first if k <= 2 else second).update(grads, s, p)
    p = optax.apply_updates(p, updates)
  assert float(s.b1) == 0.5
  x, expected = optfree.eval_params(state, params), optfree.eval_params(s, p)
  for name in PARAMS:
    np.testing.assert_allclose(params[name], p[name], rtol=1e-6)
    np.testing.assert_allclose(x[name], expected[name], rtol=1e-6)


def test_eval_params_without_schedule_free_state_raises():
  state = optax.adam(1e-3).init(PARAMS)
  with pytest.raises(ValueError, match="no ScheduleFreeState"):
    optfree.eval_params(state, PARAMS)


def test_eval_params_with_two_schedule_free_states_raises():
  state = optax.chain(_sf(), optfree.schedule_free_sgd()).init(PARAMS)
  with pytest.raises(ValueError, match="2 ScheduleFreeStates"):
    optfree.eval_params(state, PARAMS)


def test_eval_params_with_mismatched_params_raises():
  state = _sf().init(PARAMS)
  with pytest.raises(ValueError, match="do not match"):
    optfree.eval_params(state, {"a": PARAMS["a"]})


def _eval_params_message(state, params):
  with pytest.raises(ValueError, match="do not match") as info:
    optfree.eval_params(state, params)
  return str(info.value)


def test_eval_params_with_other_keys_of_equal_shapes_raises():
  # Pairing leaves in order returned x under the wrong keys: {'a', 'c'}
  # against a state of {'a', 'b'} whose 'b' has the shape of 'c'.
  state = _sf().init(PARAMS)
  message = _eval_params_message(state, {"a": PARAMS["a"], "c": PARAMS["b"]})
  assert "only in the params: ['c'] (2, 2)" in message
  assert "only in the state: ['b'] (2, 2)" in message


def test_eval_params_with_a_list_for_the_dict_raises():
  state = _sf().init(PARAMS)
  message = _eval_params_message(state, [PARAMS["a"], PARAMS["b"]])
  assert "only in the params: [0] (3,)" in message
  assert "only in the state: ['a'] (3,)" in message


def test_eval_params_shape_mismatch_names_the_leaf_and_both_shapes():
  # The message used to print two identical PyTreeDefs and no shape.
  state = _sf().init(PARAMS)
  message = _eval_params_message(
      state, {"a": PARAMS["a"], "b": jnp.ones((2, 3))})
  assert "shape at ['b']: params (2, 3), state (2, 2)" in message
  assert "PyTreeDef" not in message


def test_eval_params_rejects_integer_params_naming_the_leaf():
  state = _sf().init(PARAMS)
  params = {"a": jnp.arange(3), "b": PARAMS["b"]}
  with pytest.raises(TypeError, match=r"^eval_params: .*\n  \['a'\]: int32"):
    optfree.eval_params(state, params)


def test_eval_params_returns_masked_out_integer_leaf_as_it_is():
  params = {"a": PARAMS["a"], "n": jnp.arange(4)}
  optimizer = optax.masked(_sf(), {"a": True, "n": False})
  state = optimizer.init(params)
  x = optfree.eval_params(state, params)
  assert x["n"] is params["n"]


# --- inject_hyperparams and jit ---

INJECTABLE = {
    "sgd": (optfree.schedule_free_sgd,
            dict(learning_rate=0.1, b1=0.8, warmup_steps=2, r=0.5,
                 weight_lr_power=1.0, weight_decay=0.01)),
    "adamw": (optfree.schedule_free_adamw,
              dict(learning_rate=0.05, b1=0.9, b2=0.99, eps=1e-7,
                   warmup_steps=2, r=0.5, weight_lr_power=1.0,
                   weight_decay=0.01)),
    "radam": (optfree.schedule_free_radam,
              dict(learning_rate=0.05, b1=0.9, b2=0.9, eps=1e-7, r=0.5,
                   weight_lr_power=1.0, weight_decay=0.01,
                   silent_sgd_phase=False)),
}


@pytest.mark.parametrize("name", list(INJECTABLE))
def test_inject_hyperparams_traces_under_jit_and_matches(name):
  factory, kwargs = INJECTABLE[name]
  schedule = optax.linear_schedule(0.0, kwargs["learning_rate"], 3)
  kwargs = {**kwargs, "learning_rate": schedule}
  expected, _ = _run(factory(**kwargs), PARAMS, steps=6)
  traces = []

  def counting_factory(**hyperparams):
    traces.append(1)
    return factory(**hyperparams)

  counting_factory.__signature__ = inspect.signature(factory)
  got, state = _run(optax.inject_hyperparams(counting_factory)(**kwargs),
                    PARAMS, steps=6)
  for leaf in PARAMS:
    np.testing.assert_allclose(got[leaf], expected[leaf], rtol=2e-6)
  assert isinstance(state.inner_state, optfree.ScheduleFreeState)
  # One call for init, one trace of the jitted update: changing the injected
  # values (the schedule moves every step) does not retrace.
  assert len(traces) == 2


def test_inject_hyperparams_over_the_wrapper():
  base = optax.sgd(0.1)
  expected, _ = _run(optfree.schedule_free(base, 0.1, b1=0.8,
                                           weight_decay_at_y=0.01), PARAMS)
  injected = optax.inject_hyperparams(optfree.schedule_free)(
      base_optimizer=base, learning_rate=0.1, b1=0.8, weight_decay_at_y=0.01)
  got, state = _run(injected, PARAMS)
  for leaf in PARAMS:
    np.testing.assert_allclose(got[leaf], expected[leaf], rtol=2e-6)
  np.testing.assert_allclose(optfree.eval_params(state, got)["a"],
                             optfree.eval_params(_run(optfree.schedule_free(
                                 base, 0.1, b1=0.8, weight_decay_at_y=0.01),
                                 PARAMS)[1], expected)["a"], rtol=2e-6)


# --- Bad input ---

SGD, ADAMW, RADAM = (optfree.schedule_free_sgd, optfree.schedule_free_adamw,
                     optfree.schedule_free_radam)
WRAPPER = lambda **kwargs: optfree.schedule_free(
    optax.sgd(0.1), kwargs.pop("learning_rate", 0.1), **kwargs)

BAD_INPUT = [
    (factory, argument, value)
    for factory in (SGD, ADAMW, RADAM, WRAPPER)
    for argument, value in (
        ("learning_rate", -0.1), ("b1", 0.0), ("b1", 1.0), ("b1", -0.5),
        ("r", -1.0), ("weight_lr_power", -0.5))
] + [
    (factory, argument, value)
    for factory in (SGD, ADAMW, RADAM)
    for argument, value in (("weight_decay", -1e-3), ("b1", float("nan")))
] + [
    (factory, argument, value)
    for factory in (SGD, ADAMW)
    for argument, value in (("warmup_steps", -1), ("warmup_steps", 2.5))
] + [
    (factory, argument, value)
    for factory in (ADAMW, RADAM)
    for argument, value in (("b2", 1.0), ("b2", -0.1), ("eps", -1e-8))
] + [(WRAPPER, "weight_decay_at_y", -0.1)]


@pytest.mark.parametrize("factory,argument,value", BAD_INPUT)
def test_out_of_range_hyperparameter_raises_at_construction(
    factory, argument, value):
  with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
    factory(**{argument: value})


@pytest.mark.parametrize("factory", [SGD, ADAMW, RADAM, WRAPPER])
def test_edge_values_are_accepted(factory):
  edges = dict(weight_decay=0.0, r=0.0, weight_lr_power=0.0,
               learning_rate=optax.constant_schedule(0.1))
  if factory in (ADAMW, RADAM):
    edges.update(b2=0.0, eps=0.0)
  if factory is RADAM:
    # With b2 = 0, rho_t never exceeds 4: a silent phase would last forever.
    edges.update(silent_sgd_phase=False)
  if factory in (SGD, ADAMW):
    edges.update(warmup_steps=0)
  if factory is WRAPPER:
    edges = dict(r=0.0, weight_lr_power=0.0, weight_decay_at_y=0.0)
  params, state = _run(factory(**edges), PARAMS, steps=3)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))
  assert not np.allclose(params["a"], PARAMS["a"])


@pytest.mark.parametrize("factory", [SGD, ADAMW, RADAM, WRAPPER])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_mismatched_trees_raise(factory, jit):
  optimizer = factory()
  state = optimizer.init(PARAMS)
  update = jax.jit(optimizer.update) if jit else optimizer.update
  with pytest.raises(ValueError, match="gradient tree does not match"):
    update({"a": PARAMS["a"]}, state, PARAMS)
  with pytest.raises(ValueError, match="params tree does not match"):
    update(PARAMS, state, {"a": PARAMS["a"], "c": PARAMS["b"]})
  with pytest.raises(ValueError, match="shapes"):
    update({"a": jnp.ones(4), "b": PARAMS["b"]}, state, PARAMS)
  with pytest.raises(ValueError, match="needs the current params"):
    update(PARAMS, state)


def test_eval_params_with_swapped_arguments_says_so():
  state = _sf().init(PARAMS)
  with pytest.raises(ValueError, match=r"call eval_params\(opt_state, params\)"):
    optfree.eval_params(PARAMS, state)


def test_guide_optax_table_is_the_measured_one():
  """The guide's optax.contrib table holds the committed measurements."""
  root = os.path.join(os.path.dirname(__file__), "..")
  with open(os.path.join(root, "benchmarks", "results",
                         "optax_contrib_differences.json")) as f:
    measured = json.load(f)
  with open(os.path.join(root, "docs", "guides", "schedule_free.md")) as f:
    guide = f.read()
  for key in ("warmup", "wrapper_base_params"):
    for side in ("optax", "optfree"):
      assert f"{measured[key][side]:.1e}" in guide
  assert f"{measured['zero_warmup']['optax_max_move']:.1e}" in guide
  sums = measured["bfloat16_weight_sum_after_600_steps"]
  assert f"| {sums['optax']:.0f} (stops) | {sums['optfree']:.0f} |" in guide


# --- Schedules where numbers go ---

SCHEDULE_FREE_FACTORIES = {
    "schedule_free_sgd": (optfree.schedule_free_sgd, 0.2),
    "schedule_free_adamw": (optfree.schedule_free_adamw, 0.05),
    "schedule_free_radam": (optfree.schedule_free_radam, 0.05),
}


@pytest.mark.parametrize("name", sorted(SCHEDULE_FREE_FACTORIES))
def test_weight_decay_schedule_is_native_and_equals_injecting_it(name, x64):
  factory, learning_rate = SCHEDULE_FREE_FACTORIES[name]
  decay = optax.linear_schedule(0.0, 0.2, 40)
  native = factory(learning_rate, weight_decay=decay)
  injected = optax.inject_hyperparams(factory)(
      learning_rate=learning_rate, weight_decay=decay)
  ours, _, _ = _train(native, jnp.float64, steps=60)
  theirs, _, _ = _train(injected, jnp.float64, steps=60)
  # The same math; XLA may round a product differently in the two programs.
  np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
  constant, _, _ = _train(factory(learning_rate), jnp.float64, steps=60)
  assert np.abs(ours - constant).max() > 1e-4  # the decay acted


@pytest.mark.parametrize("name", sorted(SCHEDULE_FREE_FACTORIES))
@pytest.mark.parametrize("argument", ["b1", "r", "weight_lr_power"])
def test_a_schedule_where_a_number_goes_fails_at_construction(name, argument):
  factory, learning_rate = SCHEDULE_FREE_FACTORIES[name]
  schedule = optax.linear_schedule(0.5, 0.9, 100)
  with pytest.raises(ValueError, match=(
      rf"(?s){argument} must be a number, got a schedule.*"
      rf"inject_hyperparams\(optfree\.{name}\)")):
    factory(learning_rate, **{argument: schedule})


@pytest.mark.parametrize("name, reference, ours", [
    ("schedule_free_sgd", "momentum", "b1"),
    ("schedule_free_adamw", "betas", "b1 and b2"),
    ("schedule_free_radam", "lr", "learning_rate"),
])
def test_reference_argument_names_get_optfree_s(name, reference, ours):
  factory, _ = SCHEDULE_FREE_FACTORIES[name]
  with pytest.raises(TypeError, match=f"{name} got {reference}=.*optfree "
                     f"calls it {ours}"):
    factory(**{reference: 0.9})
