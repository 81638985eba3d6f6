"""Lion: parity with lion-pytorch and optax.lion, state, dtypes, errors.

Golden trajectories: tests/reference/lion.npz, written by
tests/reference/gen_lion.py from lion-pytorch 0.2.5 under torch schedulers.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from test_adabound import _on_other_platforms
from test_adabound import assert_reproduces
from test_adabound import assert_schedule_is_native
from test_adabound import config_names
from test_adabound import load_config
from test_adabound import NUM_TENSORS
from test_adabound import SCHEDULES
from test_adabound import torch_schedule

GOLDEN = "lion.npz"


def make_from_config(config):
  decayed = config["decay_tensors"]
  return optfree.lion(
      learning_rate=torch_schedule(config),
      b1=config["betas"][0],
      b2=config["betas"][1],
      weight_decay=config["weight_decay"],
      mask=None if decayed is None else [
          i in decayed for i in range(NUM_TENSORS)],
  )


@pytest.mark.parametrize("name", config_names(GOLDEN))
def test_matches_lion_pytorch_every_step(x64, name):
  tx = make_from_config(load_config(GOLDEN, name))
  assert_reproduces(tx, name, jnp.float64, rtol=1e-10, atol=1e-12,
                    filename=GOLDEN)


def test_defaults_are_lion_pytorch_defaults(x64):
  assert_reproduces(optfree.lion(), "lion_default", jnp.float64,
                    rtol=1e-10, atol=1e-12, filename=GOLDEN)


@pytest.mark.parametrize("name", ["lion_betas_weight_decay",
                                  "lion_exponential_lr_masked_weight_decay"])
def test_float32_close_to_float64_reference(name):
  tx = make_from_config(load_config(GOLDEN, name))
  assert_reproduces(tx, name, jnp.float32, rtol=1e-5, atol=1e-5,
                    filename=GOLDEN)


def test_inject_hyperparams_under_jit_matches_reference(x64):
  name = "lion_exponential_lr_masked_weight_decay"
  config = load_config(GOLDEN, name)
  tx = optax.inject_hyperparams(optfree.lion)(
      learning_rate=torch_schedule(config), b1=config["betas"][0],
      b2=config["betas"][1], weight_decay=config["weight_decay"],
      mask=[i in config["decay_tensors"] for i in range(NUM_TENSORS)])
  assert set(tx.init([jnp.zeros(1)] * NUM_TENSORS).hyperparams) == {
      "learning_rate", "b1", "b2", "weight_decay", "seed"}
  assert_reproduces(tx, name, jnp.float64, rtol=1e-10, atol=1e-12,
                    filename=GOLDEN)


@pytest.mark.parametrize("weight_decay, mask", [
    (0.0, None),
    (0.3, None),
    (0.3, {"w": True, "b": False}),
])
def test_equals_optax_lion(weight_decay, mask):
  params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3),
            "b": jnp.array([0.5, -0.25])}
  schedule = optax.cosine_decay_schedule(1e-2, 20)
  ours = optfree.lion(schedule, b1=0.8, b2=0.95, weight_decay=weight_decay,
                      mask=mask)
  theirs = optax.lion(schedule, b1=0.8, b2=0.95, weight_decay=weight_decay,
                      mask=mask)

  def trajectory(tx):
    def step(carry, t):
      params, state = carry
      grads = jax.tree.map(lambda p: jnp.sin(3.0 * p + t), params)
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), params

    return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(20.0))

  (_, our_state), ours_params = jax.jit(lambda: trajectory(ours))()
  (_, their_state), theirs_params = jax.jit(lambda: trajectory(theirs))()
  jax.tree.map(np.testing.assert_array_equal, ours_params, theirs_params)
  assert jax.tree.structure(our_state) == jax.tree.structure(their_state)
  jax.tree.map(np.testing.assert_array_equal, our_state, their_state)


def _bfloat16_momentum_case():
  """b1, b2, a bfloat16 momentum m and gradient g, Lion and its state at m."""
  b1, b2 = 0.9, 0.99
  rng = np.random.default_rng(0)
  m, g = (jnp.asarray(rng.normal(size=1 << 16), jnp.bfloat16)
          for _ in range(2))
  tx = optfree.scale_by_lion(b1=b1, b2=b2)
  return b1, b2, m, g, tx, tx.init(m)._replace(mu=m)


def test_bfloat16_momentum_signs_differ_only_within_rounding_of_zero():
  # With bfloat16 momentum, c is formed from the rounded new momentum m'
  # (no copy of m): its sign may differ from exact b1 m + (1 - b1) g only
  # where c is within m's rounding (2^-9 relative) of 0.
  b1, b2, m, g, tx, state = _bfloat16_momentum_case()
  signs, state = tx.update(g, state)
  m64, g64 = (np.asarray(x, np.float64) for x in (m, g))
  exact = b1 * m64 + (1 - b1) * g64
  rounding = b1 / b2 * 2.0**-9 * np.abs(np.asarray(state.mu, np.float64))
  differs = np.asarray(signs) != np.sign(exact)
  assert np.all(np.abs(exact[differs]) <= rounding[differs])
  assert differs.mean() < 1e-3


def test_state_is_one_momentum_buffer_per_param():
  params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(5, jnp.bfloat16)}
  state = optfree.lion(weight_decay=0.1).init(params)
  (inner,) = [s for s in state if isinstance(s, optax.ScaleByLionState)]
  assert jax.tree.map(lambda m: (m.shape, m.dtype), inner.mu) == jax.tree.map(
      lambda p: (p.shape, p.dtype), params)
  buffers = [s for s in jax.tree.leaves(state) if s.ndim > 0]
  assert len(buffers) == len(jax.tree.leaves(params))


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
def test_mu_dtype_bfloat16_stays_bfloat16(param_dtype):
  params = jnp.linspace(-1.0, 1.0, 8, dtype=param_dtype)
  tx = optfree.lion(1e-2, mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(3):
    updates, state = update((3.0 * params).astype(jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
  assert state[0].mu.dtype == jnp.bfloat16
  assert updates.dtype == jnp.float32
  assert params.dtype == param_dtype
  assert jnp.all(state[0].mu != 0)


def test_momentum_keeps_params_dtype_with_wider_gradients():
  # bfloat16 params with float32 gradients: optax's own scale_by_lion would
  # return a float32 momentum here, changing the state's dtypes after a step.
  params = jnp.linspace(-1.0, 1.0, 8, dtype=jnp.bfloat16)
  tx = optfree.scale_by_lion()
  state = tx.init(params)
  updates, new_state = jax.jit(tx.update)(
      jnp.ones(8, jnp.float32), state, params)
  assert jax.tree.map(lambda s: s.dtype, new_state) == jax.tree.map(
      lambda s: s.dtype, state)
  assert updates.dtype == jnp.float32


BAD_ARGUMENTS = [
    ("learning_rate", -1e-4),
    ("b1", 1.5),
    ("b1", -0.1),
    ("b2", 1.0),
    ("b2", -0.1),
    ("weight_decay", -1e-2),
]


@pytest.mark.parametrize("argument, value", BAD_ARGUMENTS)
def test_bad_hyperparameter_raises_naming_it(argument, value):
  with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
    optfree.lion(**{argument: value})


@pytest.mark.parametrize("argument, value", BAD_ARGUMENTS[1:5])
def test_scale_by_lion_validates(argument, value):
  with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
    optfree.scale_by_lion(**{argument: value})


def test_edge_values_are_accepted():
  params = jnp.array([1.0, -1.0])
  tx = optfree.lion(learning_rate=0.0, b1=1.0, b2=0.0, weight_decay=0.0)
  updates, _ = tx.update(params, tx.init(params), params)
  np.testing.assert_array_equal(updates, 0.0)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("argument", sorted(SCHEDULES))
def test_schedules_equal_inject_hyperparams(argument, rounding):
  # b1 cycling against the learning rate, as torch's OneCycleLR does.
  assert_schedule_is_native(optfree.lion, argument, SCHEDULES[argument],
                            rounding, learning_rate=1e-2)


@pytest.mark.parametrize("argument", ["b1", "b2"])
def test_scale_by_lion_takes_momentum_schedules(argument):
  assert_schedule_is_native(optfree.scale_by_lion, argument,
                            SCHEDULES[argument], "nearest")


def test_every_platform_takes_c_from_the_new_momentum():
  # c = g + (b1 / b2) (m' - g) on every platform (optfree/lion.py: XLA:TPU
  # needs it as much as XLA:CPU): its signs differ from the reference form's
  # only where c is within rounding of 0.
  b1, b2, m, g, tx, state = _bfloat16_momentum_case()
  with mock.patch.object(jax.lax, "platform_dependent", _on_other_platforms):
    elsewhere, _ = tx.update(g, state)
  on_cpu, _ = tx.update(g, state)
  np.testing.assert_array_equal(elsewhere, on_cpu)
  m32, g32 = m.astype(jnp.float32), g.astype(jnp.float32)
  reference = jnp.sign(b1 * m32 + (1 - b1) * g32).astype(jnp.bfloat16)
  assert 0 < np.sum(on_cpu != reference) < 1e-3 * m.size
