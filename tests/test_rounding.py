"""Stochastic rounding: the primitive, its bits, and every optimizer using it.

The rounding of one value to bfloat16 or float16 is checked exactly by
enumerating every draw of the random bits it uses (the top 16 for bfloat16,
the top 23 for float16), statistically with the bits the optimizers draw, and
for float16 against an independent float64 reference over many values. The
optimizers are checked for what stochastic rounding promises them: the update
lands exactly on the rounded params, the run is deterministic and resumes bit
for bit from a checkpoint, replicas round alike, nothing retraces, and a
bfloat16 Schedule-Free run that stalls with nearest rounding converges.
"""

import functools

import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optfree
from optfree import rounding
from tests import distributed_problem as problem
from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS

BF16 = jnp.bfloat16
F16 = jnp.float16
LOW = [BF16, F16]
ROUND = {BF16: rounding.round_to_bfloat16, F16: rounding.round_to_float16}
# Enough draws to tell every outcome apart: bfloat16 drops 16 bits, float16 up
# to 23 (its subnormals); below 2**-24 float16 compares all 32 bits, so the
# float16 values below that tested over these draws are multiples of 2**-47.
DRAW_BITS = {BF16: 16, F16: 23}


def _all_draws(dtype):
  bits = DRAW_BITS[dtype]
  return jnp.arange(2**bits, dtype=jnp.uint32) << (32 - bits)


def _neighbours(value, dtype):
  """The ``dtype`` values around float32 ``value``: toward and away from 0."""
  value = np.float32(value)
  dtype = np.dtype(dtype)
  nearest = value.astype(dtype)
  if nearest.astype(np.float64) == np.float64(value):
    return float(value), float(value)
  toward = nearest
  if abs(np.float64(nearest)) > abs(np.float64(value)):
    toward = np.nextafter(nearest, dtype.type(0))
  away = np.nextafter(toward, np.copysign(np.inf, value).astype(dtype))
  return float(toward), float(away)


# 2**23 draws per value: jitted, the rounding is one loop.
_ROUND_JITTED = {dtype: jax.jit(round_fn) for dtype, round_fn in ROUND.items()}


def _round_all_ways(value, dtype):
  """``value`` rounded with each draw of ``_all_draws``, as float64."""
  bits = _all_draws(dtype)
  rounded = _ROUND_JITTED[dtype](jnp.full(bits.shape, value, jnp.float32), bits)
  assert rounded.dtype == dtype
  return np.asarray(rounded, np.float64)


# ------------------------------------------------------------------ primitive

UNBIASED = [
    (BF16, 1 + 2.0**-9),  # a quarter ulp above 1
    (BF16, -(1 + 3 * 2.0**-9)),  # negative, three quarters
    (BF16, 3.14159265),
    (BF16, -1e-3),
    (BF16, 1e-40),  # a float32 subnormal (bfloat16 has the same exponents)
    (BF16, np.nextafter(np.float32(2.0), np.float32(0))),  # below a binade
    (BF16, 3.0e38),  # just below the largest bfloat16 (3.39e38)
    (F16, 1 + 2.0**-12),  # a quarter ulp above 1
    (F16, -(1 + 3 * 2.0**-12)),
    (F16, 3.14159265),
    (F16, -1e-3),
    (F16, np.nextafter(np.float32(2.0), np.float32(0))),
    (F16, 6.1e-5),  # the top of float16's subnormals (2**-14 = 6.104e-5)
    (F16, -3.0e-6),  # a subnormal: 18 bits dropped
    (F16, 1.7 * 2.0**-24),  # the lowest subnormal binade: 23 bits dropped
    (F16, 2.0**-24 - 2.0**-47),  # just below the smallest float16
    (F16, -5 * 2.0**-30),  # below it: rounds to 0 or -2**-24
    (F16, 65500.0),  # just below the largest float16 (65504)
]


@pytest.mark.parametrize(
    "dtype, value", UNBIASED,
    ids=[f"{np.dtype(dtype).name}-{value:.4g}" for dtype, value in UNBIASED])
def test_rounding_is_exactly_unbiased_over_all_draws(dtype, value):
  rounded = _round_all_ways(value, dtype)
  toward, away = _neighbours(value, dtype)
  assert toward != away
  assert set(np.unique(rounded)) == {toward, away}
  # The mean over every possible draw is the value itself: exactly, because
  # the draws resolve every bit that rounding drops.
  assert np.mean(rounded) == float(np.float32(value))


HASHED = [(BF16, 1 + 2.0**-12), (BF16, -7.3e-5), (BF16, 123.456),
          (F16, 1 + 2.0**-14), (F16, -7.3e-5), (F16, 123.456),
          (F16, 3.0e-7),  # subnormal
          (F16, -1.0e-8)]  # below the smallest float16 (6e-8)


@pytest.mark.parametrize("dtype, value", HASHED)
def test_hashed_bits_round_without_bias_within_binomial_error(dtype, value):
  draws = 20_000
  bits = rounding.random_bits(jnp.uint32(12345), (draws,))
  values = jnp.full((draws,), value, jnp.float32)
  rounded = np.asarray(ROUND[dtype](values, bits), np.float64)
  toward, away = _neighbours(value, dtype)
  fraction = (np.float32(value) - toward) / (away - toward)
  # Binomial standard error of the mean; 5 of them is a 1 in 1.7M fluke.
  error = abs(away - toward) * np.sqrt(fraction * (1 - fraction) / draws)
  assert abs(rounded.mean() - float(np.float32(value))) < 5 * error
  assert 0 < fraction < 1 and error > 0


@pytest.mark.parametrize("dtype, ulp", [(BF16, 2.0**-7), (F16, 2.0**-10)])
def test_the_bits_of_one_element_over_steps_are_unbiased_too(dtype, ulp):
  # What a training run sees: one element, rounded once per step.
  value, steps = 1 + ulp / 4, 20_000
  key = jax.vmap(lambda step: rounding._key(7, step, 2, rounding.Z))(
      jnp.arange(steps))
  bits = jax.vmap(lambda k: rounding.random_bits(k, (3,))[1])(key)
  rounded = np.asarray(ROUND[dtype](
      jnp.full((steps,), value, jnp.float32), bits), np.float64)
  error = ulp * np.sqrt(0.25 * 0.75 / steps)
  assert abs(rounded.mean() - value) < 5 * error


REPRESENTABLE = {
    BF16: ([-30, 30], [0.0, 1.0, -2.0, 3.3895314e38, -3.3895314e38, 9.2e-41]),
    F16: ([-8, 4], [0.0, 1.0, -2.0, 65504.0, -65504.0, 2.0**-24, -2.0**-24,
                    2.0**-14, 2.0**-14 - 2.0**-24, -(2.0**-15 + 2.0**-24)]),
}


@pytest.mark.parametrize("dtype", LOW)
def test_representable_values_are_unchanged_by_every_draw(dtype):
  rng = np.random.default_rng(0)
  powers, special = REPRESENTABLE[dtype]
  values = np.concatenate([
      rng.normal(size=64) * 10.0 ** rng.integers(*powers, 64), special])
  values = values.astype(dtype).astype(np.float32)
  assert np.isfinite(values).all()
  # Every value of the top 16 bits, with the lower 16 all zeros and all ones:
  # the bits a rounding drops are zero here, so the largest draw for each
  # top is the one that could carry.
  top = np.arange(2**16, dtype=np.uint32) << 16
  bits = np.concatenate([top, top | np.uint32(0xFFFF)])
  rounded = ROUND[dtype](jnp.asarray(np.repeat(values, bits.size)),
                         jnp.asarray(np.tile(bits, values.size)))
  rounded = np.asarray(rounded, np.float32).reshape(values.size, bits.size)
  for value, row in zip(values, rounded):
    assert np.all(row == value), value


@pytest.mark.parametrize("dtype", LOW)
def test_nan_and_infinities_pass_and_zero_keeps_its_sign(dtype):
  special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0], jnp.float32)
  for bits in (0, 2**31, 2**32 - 1):
    rounded = ROUND[dtype](special, jnp.full((5,), bits, jnp.uint32))
    assert rounded.dtype == dtype
    rounded = np.asarray(rounded, np.float32)
    assert np.isnan(rounded[0])
    assert rounded[1] == np.inf and rounded[2] == -np.inf
    np.testing.assert_array_equal(np.signbit(rounded[3:]), [False, True])
    assert np.all(rounded[3:] == 0)


@pytest.mark.parametrize("dtype", LOW)
def test_a_payload_nan_stays_nan(dtype):
  # Truncating 0x7F800001 would give Inf: NaNs are not rounded at all.
  nan = jnp.asarray(np.uint32(0x7F800001).view(np.float32))
  assert np.isnan(_round_all_ways(nan, dtype)).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("dtype", LOW)
def test_no_finite_value_rounds_to_infinity_unless_nearest_does(dtype, sign):
  largest = np.float64(ml_dtypes.finfo(dtype).max)
  below_largest = np.float64(np.nextafter(np.asarray(largest, dtype),
                                          np.asarray(0, dtype)))
  # Halfway to the next power of two past the largest: where nearest
  # rounding (ties to even) starts to give Inf. A float32 for both dtypes.
  tie = np.float32(sign * (largest + (largest - below_largest) / 2))
  assert np.float64(tie) == sign * (largest + (largest - below_largest) / 2)
  below_tie = np.nextafter(tie, np.float32(0))
  for value in (np.float32(largest * sign), below_tie,
                np.nextafter(np.float32(largest * sign), np.float32(0)),
                np.float32(sign * (largest + below_largest) / 2)):
    rounded = _round_all_ways(value, dtype)
    assert np.isfinite(rounded).all(), value
    assert abs(float(jnp.asarray(value).astype(dtype))) <= largest
  assert float(jnp.asarray(below_tie).astype(dtype)) == largest * sign
  # From the tie on, nearest rounding overflows, and so does this.
  assert np.isinf(float(jnp.asarray(tie).astype(dtype)))
  assert np.all(_round_all_ways(tie, dtype) == np.inf * sign)


def _float16_reference(values, bits):
  """Stochastic rounding to float16 computed independently, in float64.

  With the float16 neighbours lo <= |v| < hi (from numpy's float16 and
  nextafter) and p = (|v| - lo) / (hi - lo), a draw of 32 bits b rounds up
  when b / 2**32 >= 1 - p: large draws round up, as the pattern arithmetic
  does. p is floored to a multiple of 2**-32 first: a no-op (p is a
  multiple of 2**-23) except below 2**-33, where it is the documented bias.
  Above the largest float16, nearest rounding.
  """
  values = np.asarray(values, np.float32).astype(np.float64)
  magnitude = np.abs(values)
  with np.errstate(over="ignore"):
    nearest = magnitude.astype(np.float16)
    lo = np.where(nearest.astype(np.float64) > magnitude,
                  np.nextafter(nearest, np.float16(0)), nearest)
    hi = np.nextafter(lo, np.float16(np.inf)).astype(np.float64)
  lo = lo.astype(np.float64)
  with np.errstate(invalid="ignore"):  # Inf - Inf, NaN: not used
    probability = np.where(lo == magnitude, 0.0,
                           (magnitude - lo) / np.where(hi > lo, hi - lo, 1))
  threshold = np.floor(probability * 2.0**32)
  up = (threshold > 0) & (np.asarray(bits, np.float64) >= 2.0**32 - threshold)
  rounded = np.where(up, hi, lo)
  rounded = np.where(magnitude > 65504, nearest.astype(np.float64), rounded)
  return np.where(np.isnan(values), np.nan, np.copysign(rounded, values))


def test_float16_rounding_matches_an_independent_reference():
  rng = np.random.default_rng(2)
  count = 200_000
  edges = np.array([
      0.0, 2.0**-149, 2.0**-126, 2.0**-60, 2.0**-34, 2.0**-33, 2.0**-33 * 1.5,
      2.0**-25, 2.0**-24 - 2.0**-48, 2.0**-24, 2.0**-24 + 2.0**-48,
      1.5 * 2.0**-24, 2.0**-23 - 2.0**-47, 2.0**-15, 2.0**-14 - 2.0**-40,
      2.0**-14, 2.0**-14 + 2.0**-37, 1.0, 2.0 - 2.0**-23, 65472.0, 65488.0,
      65500.0, 65503.99, 65504.0, 65504.01, 65519.99, 65520.0, 65536.0, 1e10,
      np.inf, np.nan])
  values = np.concatenate([
      # every binade from float32's subnormals to past float16's largest
      rng.normal(size=count) * 2.0 ** rng.uniform(-150, 18, count),
      rng.uniform(-2.0**-13, 2.0**-13, count),  # float16's subnormals
      np.repeat(edges, 64), -np.repeat(edges, 64),
  ]).astype(np.float32)
  bits = rng.integers(0, 2**32, values.size, dtype=np.uint64).astype(
      np.uint32)
  # Draws at the edge of each decision too: all zeros, all ones.
  bits[-len(edges) * 128::2] = np.uint32(0)
  bits[-len(edges) * 128 + 1::2] = np.uint32(2**32 - 1)
  rounded = rounding.round_to_float16(jnp.asarray(values), jnp.asarray(bits))
  np.testing.assert_array_equal(np.asarray(rounded, np.float64),
                                _float16_reference(values, bits))
  np.testing.assert_array_equal(np.signbit(np.asarray(rounded)),
                                np.signbit(values))


def test_float16_probability_is_exact_from_2_to_the_minus_33():
  # Below 2**-24 a value rounds up on the draws b >= 2**32 - |v| 2**56: the
  # boundary draw decides, one below it does not.
  for value in (2.0**-33, 3 * 2.0**-33, 2.0**-25, 2.0**-24 - 2.0**-48):
    threshold = int(value * 2.0**56)
    assert threshold == value * 2.0**56
    bits = jnp.array([2**32 - threshold - 1, 2**32 - threshold], jnp.uint32)
    rounded = rounding.round_to_float16(jnp.full(2, value, jnp.float32), bits)
    np.testing.assert_array_equal(np.asarray(rounded, np.float64),
                                  [0.0, 2.0**-24])
  # Below 2**-33 the probability is floored to a multiple of 2**-32: a value
  # under 2**-56 never rounds up (bias under 2**-56, toward zero).
  rounded = rounding.round_to_float16(
      jnp.full(2, 2.0**-57, jnp.float32),
      jnp.array([2**32 - 1, 2**32 - 2], jnp.uint32))
  assert np.all(np.asarray(rounded, np.float64) == 0)


# ----------------------------------------------------------------------- bits


def test_bits_depend_on_seed_step_leaf_and_buffer():
  keys = [rounding._key(*args) for args in
          [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0),
           (0, 0, 0, 1)]]
  draws = [np.asarray(rounding.random_bits(key, (64,))) for key in keys]
  for i in range(len(draws)):
    for j in range(i):
      assert np.mean(draws[i] == draws[j]) < 0.05
  np.testing.assert_array_equal(
      rounding.random_bits(keys[0], (64,)), draws[0])


def test_bits_use_the_global_element_index():
  key = jnp.uint32(99)
  flat = rounding.random_bits(key, (24,))
  np.testing.assert_array_equal(rounding.random_bits(key, (4, 6)),
                                flat.reshape(4, 6))
  np.testing.assert_array_equal(rounding.random_bits(key, (2, 3, 4)),
                                flat.reshape(2, 3, 4))


# ------------------------------------------------------------------ the update


def _exponent(x):
  """The exponent of each float16/bfloat16 value, subnormals at the least
  normal one (their last place is that binade's)."""
  x = np.asarray(x, np.float64)
  _, exponent = np.frexp(x)
  return np.maximum(exponent - 1, -14 if x.dtype == np.float16 else -126)


# The largest difference of exponents of a param and its new value for which
# the float32 update is exact: 8 significant bits for bfloat16, 11 for float16.
MAX_EXPONENT_GAP = {BF16: 15, F16: 13}


def _adversarial_pairs(dtype):
  """(param, new param) pairs whose exponents differ by MAX_EXPONENT_GAP at
  most: large jumps, sign changes, subnormals, zeros, the largest values."""
  rng = np.random.default_rng(1)
  gap = MAX_EXPONENT_GAP[dtype]
  finfo = ml_dtypes.finfo(dtype)
  low, high = np.log2(float(finfo.smallest_subnormal)), np.log2(
      float(finfo.max))
  y = rng.choice([-1, 1], 4000) * 2.0 ** rng.uniform(low, high, 4000)
  ratio = rng.choice([-1, 1], 4000) * 2.0 ** rng.uniform(-gap, gap, 4000)
  tiny = float(finfo.smallest_subnormal)
  pairs = [(y, y * ratio),
           # crossing zero, halving, doubling, from and to zero, subnormals,
           # the largest value
           (np.array([0.01, 1.0, 1.0, 0.0, 3.0, 3 * tiny, -tiny, 5.0,
                      float(finfo.max), 2.0**-10]),
            np.array([-0.003, 0.49, 1.99, 3.0, 0.0, -2 * tiny, 5 * tiny, -5.0,
                      -float(finfo.max) / 2**gap, tiny]))]
  with np.errstate(over="ignore"):
    y = np.concatenate([p[0] for p in pairs]).astype(dtype)
    t = np.concatenate([p[1] for p in pairs]).astype(dtype)
  keep = (np.isfinite(t) & (np.abs(_exponent(y) - _exponent(t)) <= gap)
          | (y == 0) | (t == 0))
  assert keep.mean() > 0.9
  return jnp.asarray(y[keep]), jnp.asarray(t[keep])


@pytest.mark.parametrize("dtype", LOW)
def test_the_update_lands_exactly_on_the_rounded_target(dtype):
  y, target = _adversarial_pairs(dtype)
  # A float32 step towards the target that is not a distance in ``dtype``.
  step = (target.astype(jnp.float32) - y.astype(jnp.float32)) * (
      1 + 2.0**-12)
  count = jnp.asarray(5, jnp.int32)
  update = rounding.params_update("stochastic", 3, count)(step, y, 4)
  expected = ROUND[dtype](
      y.astype(jnp.float32) + step,
      rounding.random_bits(rounding._key(3, count, 4, rounding.PARAMS),
                           y.shape))
  assert update.dtype == jnp.float32
  landed = optax.apply_updates(y, update)
  assert landed.dtype == dtype
  np.testing.assert_array_equal(np.asarray(landed, np.float32),
                                np.asarray(expected, np.float32))
  # The rounding moved most params (not only a no-op landing)...
  assert np.mean(np.asarray(landed != y)) > 0.9
  # ...and in ``dtype`` the difference would not be representable.
  inexact = (target.astype(jnp.float32) - y.astype(jnp.float32)).astype(dtype)
  assert not np.array_equal(np.asarray(y + inexact, np.float32),
                            np.asarray(target, np.float32))


def _cast(tree, dtype):
  return jax.tree.map(lambda p: jnp.asarray(p, dtype), tree)


# float16 reaches down to 6e-8 only: Adam's second moment (1 - b2) g**2
# underflows to 0 for |g| < 8e-3, and its step g / (sqrt(nu) + eps) then
# overflows with eps=1e-8, whatever the rounding (nearest overflows alike).
# With float16 state, Adam needs an eps that float16 can hold. (The wrapper's
# base, optax.adam, computes g**2 in the gradients' dtype: it underflows even
# with a float32 state.)
FLOAT16_OPTIONS = {
    "schedule_free_adamw": lambda entry: entry.make(
        rounding="stochastic", eps=1e-4),
    "schedule_free_wrapper": lambda entry: optfree.schedule_free(
        optax.adam(1e-2, b1=0.0, eps=1e-4), 1e-2, rounding="stochastic"),
}


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_every_optimizer_lands_exactly_and_keeps_dtypes(entry, dtype):
  make = functools.partial(entry.make, rounding="stochastic")
  if dtype == F16 and entry.name in FLOAT16_OPTIONS:
    make = functools.partial(FLOAT16_OPTIONS[entry.name], entry)
  tx = make()
  params = _cast(problem.init_params(), dtype)
  state = tx.init(params)
  state_dtypes = [leaf.dtype for leaf in jax.tree.leaves(state)]
  # The param-sized state is in the params' dtype, written stochastically.
  assert dtype in state_dtypes

  @jax.jit
  def step(params, state, batch):
    value, grads = jax.value_and_grad(problem.loss)(params, batch)
    updates, state = tx.update(grads, state, params, value=value)
    return updates, optax.apply_updates(params, updates), state

  for batch in problem.batches():
    updates, new_params, state = step(params, state, batch)
    # Exact: new param - old param is the update, with no rounding left.
    for new, old, update in zip(*map(jax.tree.leaves,
                                     (new_params, params, updates))):
      assert new.dtype == dtype and update.dtype == jnp.float32
      assert np.isfinite(np.asarray(new, np.float32)).all()
      np.testing.assert_array_equal(
          np.asarray(new, np.float64),
          np.asarray(old, np.float64) + np.asarray(update, np.float64))
    params = new_params
  assert [leaf.dtype for leaf in jax.tree.leaves(state)] == state_dtypes


# ------------------------------------------------------- optimizers: contracts


def _bf16(tree):
  return _cast(tree, BF16)


def _step(tx, params, state, batch):
  # The loss too (tests/optimizer_table.py: ScheduleFree+ needs it).
  value, grads = jax.value_and_grad(problem.loss)(params, batch)
  updates, state = tx.update(grads, state, params, value=value)
  return optax.apply_updates(params, updates), state


@functools.lru_cache(maxsize=None)
def _jitted_step(tx):
  # One compilation per optimizer object: runs of the same tx share it.
  return jax.jit(functools.partial(_step, tx))


def _train(tx, params, state, batches):
  step = _jitted_step(tx)
  for batch in batches:
    params, state = step(params, state, batch)
  return params, state


def _assert_identical(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.dtype == e.dtype
    np.testing.assert_array_equal(np.asarray(a, np.float64),
                                  np.asarray(e, np.float64))


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_rounding_and_seed_are_checked_at_construction(entry):
  with pytest.raises(ValueError, match="rounding"):
    entry.make(rounding="up")
  with pytest.raises(ValueError, match="seed"):
    entry.make(rounding="stochastic", seed=-1)
  with pytest.raises(ValueError, match="seed"):
    entry.make(rounding="stochastic", seed=2**32)
  with pytest.raises(ValueError, match="seed"):
    entry.make(seed=1.5)


# Floats narrower than float32 that stochastic rounding does not handle.
NARROW = [jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float8_e4m3b11fnuz,
          jnp.float4_e2m1fn]


def _refused(dtype):
  """The message of check_dtypes: jax's TypePromotionError is a ValueError
  too, and a float8 tree fails with one in some inits without the check."""
  name = jnp.dtype(dtype).name
  return f"stochastic' rounds bfloat16 and float16 .* not {name}"


@pytest.mark.parametrize("narrow", NARROW, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_other_narrow_floats_with_stochastic_rounding_fail_at_init(
    entry, narrow):
  tx = entry.make(rounding="stochastic")
  with pytest.raises(ValueError, match=_refused(narrow)):
    tx.init(_cast(problem.init_params(), narrow))


@pytest.mark.parametrize("entry", [
    entry for entry in OPTIMIZERS
    if entry.name in ("schedule_free_adamw", "schedule_free_wrapper", "lion",
                      "adabound")], ids=lambda entry: entry.name)
def test_a_narrow_state_dtype_with_stochastic_rounding_fails_at_init(entry):
  option = "mu_dtype" if entry.name in ("lion", "adabound") else "state_dtype"
  params = _cast(problem.init_params(), jnp.float32)
  tx = entry.make(rounding="stochastic", **{option: jnp.float8_e4m3fn})
  with pytest.raises(ValueError, match=_refused(jnp.float8_e4m3fn)):
    tx.init(params)
  # float16 state is rounded stochastically: accepted.
  entry.make(rounding="stochastic", **{option: F16}).init(params)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_float32_params_are_unaffected_by_stochastic_rounding(entry):
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32),
                        problem.init_params())
  runs = [_train(entry.make(**options), params,
                 entry.make(**options).init(params), problem.batches())[0]
          for options in ({}, {"rounding": "stochastic", "seed": 3})]
  _assert_identical(runs[1], runs[0])


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_runs_are_deterministic_and_depend_on_the_seed(entry):
  params = _bf16(problem.init_params())

  def run(seed):
    tx = entry.make(rounding="stochastic", seed=seed)
    return _train(tx, params, tx.init(params), problem.batches())

  first, again, other = run(0), run(0), run(1)
  _assert_identical(again, first)
  def kernel(run):
    return np.asarray(run[0]["hidden"]["kernel"], np.float32)
  assert not np.array_equal(kernel(first), kernel(other))
  # Stochastic rounding moves params that nearest rounding leaves alone.
  nearest = entry.make()
  nearest = _train(nearest, params, nearest.init(params), problem.batches())
  assert not np.array_equal(kernel(first), kernel(nearest))


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_resumed_from_an_orbax_checkpoint_is_bit_identical(entry, tmp_path):
  tx = entry.make(rounding="stochastic", seed=11)
  params = _bf16(problem.init_params())
  batches = problem.batches()
  uninterrupted = _train(tx, params, tx.init(params), batches)
  midway = _train(tx, params, tx.init(params), batches[:2])
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "checkpoint", midway)
  checkpointer.wait_until_finished()
  restarted = entry.make(rounding="stochastic", seed=11)
  template = jax.eval_shape(lambda: (params, restarted.init(params)))
  abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype,
      sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])), template)
  restored = checkpointer.restore(tmp_path / "checkpoint", abstract)
  checkpointer.close()
  resumed = _train(restarted, *restored, batches[2:])
  _assert_identical(resumed, uninterrupted)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_a_jitted_stochastic_step_compiles_once(entry):
  # Hyperparameters in float32: by default inject_hyperparams casts them to
  # the params' dtype, and bfloat16 rounds b2=0.999 to 1.
  tx = optax.inject_hyperparams(entry.factory, hyperparam_dtype=jnp.float32)(
      **entry.kwargs, rounding="stochastic", seed=5)
  traces = []

  @jax.jit
  def step(params, state, batch):
    traces.append(None)
    return _step(tx, params, state, batch)

  params = _bf16(problem.init_params())
  state = tx.init(params)
  for index, batch in enumerate(problem.batches()):
    if index == 2:  # a new seed mid-run is a new value, not a new program
      # weakly typed, as inject_hyperparams stores an int seed
      state.hyperparams["seed"] = jnp.asarray(6)
    params, state = step(params, state, batch)
  assert len(traces) == 1
  assert step._cache_size() == 1  # pylint: disable=protected-access


# ------------------------------------------------------------------ replicas

DEVICES = 8
MESH = jax.make_mesh((DEVICES,), ("model",), axis_types=(AxisType.Auto,))
SHARDINGS = {
    "hidden": {"kernel": NamedSharding(MESH, PartitionSpec(None, "model")),
               "bias": NamedSharding(MESH, PartitionSpec("model"))},
    "out": {"kernel": NamedSharding(MESH, PartitionSpec("model", None))},
}


@functools.lru_cache(maxsize=None)
def _one_device_run(name):
  (entry,) = [e for e in OPTIMIZERS if e.name == name]
  tx = entry.make(rounding="stochastic", seed=2)
  params = _bf16(problem.init_params())
  return _train(tx, params, tx.init(params), problem.batches())


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_sharded_jit_rounds_like_one_device(entry):
  tx = entry.make(rounding="stochastic", seed=2)
  params = jax.device_put(_bf16(problem.init_params()), SHARDINGS)
  state = tx.init(params)
  batches = [jax.device_put(batch, NamedSharding(MESH, PartitionSpec()))
             for batch in problem.batches()]
  params, state = _train(tx, params, state, batches)
  for leaf, sharding in zip(jax.tree.leaves(params),
                            jax.tree.leaves(SHARDINGS)):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
  _assert_identical((params, state), _one_device_run(entry.name))


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_pmap_replicas_round_identically(entry):
  tx = entry.make(rounding="stochastic", seed=2)

  def step(params, state, batch):
    value, grads = jax.lax.pmean(
        jax.value_and_grad(problem.loss)(params, batch), "devices")
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  step = jax.pmap(step, axis_name="devices")
  replicate = lambda tree: jax.tree.map(  # noqa: E731
      lambda leaf: jnp.broadcast_to(leaf, (DEVICES,) + jnp.shape(leaf)), tree)
  params = replicate(_bf16(problem.init_params()))
  state = jax.pmap(tx.init)(params)
  for inputs, targets in problem.batches():
    shard = lambda a: a.reshape((DEVICES, -1) + a.shape[1:])  # noqa: E731
    params, state = step(params, state, (shard(inputs), shard(targets)))
  for leaf in jax.tree.leaves((params, state)):
    leaf = np.asarray(leaf, np.float64)
    assert all(np.array_equal(leaf[0], leaf[i]) for i in range(DEVICES))
  # The batch is split over devices, so the mean gradient is summed in
  # another order than on one device: compare replicas, not to one device.
  initial = _bf16(problem.init_params())["hidden"]["kernel"]
  moved = np.asarray(params["hidden"]["kernel"][0], np.float32)
  assert not np.array_equal(moved, np.asarray(initial, np.float32))


# --------------------------------------------------------- it trains: SF run


def _regression_losses(tx, dtype, steps=3000, dim=32):
  rng = np.random.default_rng(0)
  w_true = jnp.asarray(rng.choice([-1, 1], dim) * rng.uniform(8, 12, dim),
                       jnp.float32)

  def loss(w, key):
    x = jax.random.normal(key, (64, dim))
    y = x @ w_true + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (64,))
    return 0.5 * jnp.mean((x @ w.astype(jnp.float32) - y) ** 2)

  @jax.jit
  def train(w, state):
    def step(carry, index):
      w, state = carry
      grads = jax.grad(loss)(w, jax.random.PRNGKey(index))
      updates, state = tx.update(grads, state, w)
      return (optax.apply_updates(w, updates), state), None
    (w, state), _ = jax.lax.scan(step, (w, state), jnp.arange(steps))
    x = optfree.eval_params(state, w).astype(jnp.float32)
    return jnp.sum((x - w_true) ** 2)

  w = jnp.zeros(dim, dtype)
  return float(train(w, tx.init(w)))


def test_bfloat16_schedule_free_converges_with_stochastic_rounding_only():
  make = functools.partial(optfree.schedule_free_adamw, 0.1,
                           warmup_steps=100)
  float32 = _regression_losses(make(), jnp.float32)
  nearest = _regression_losses(make(), BF16)
  stochastic = _regression_losses(make(rounding="stochastic"), BF16)
  # Squared distance of x to the solution over 32 weights near 10, where the
  # bfloat16 ulp is 2**-4: storing x in bfloat16 alone costs about
  # 32 * (2**-4)**2 / 12 = 0.01, and 0.5 is an error of 2 ulps per weight.
  # Measured: float32 2e-5, nearest 616 (y freezes, x drifts), stochastic
  # 0.13.
  assert float32 < 1e-3
  assert nearest > 100
  assert stochastic < 0.5


# ------------------------------------------------------------- composition

# optax wrappers that leave the update alone here: a clip above the gradients'
# norm, one group holding every leaf, and gradient accumulation over one step.
TRANSPARENT = {
    "chain_after_clip": lambda tx: optax.chain(
        optax.clip_by_global_norm(1e6), tx),
    "multi_transform": lambda tx: optax.multi_transform(
        {"all": tx}, lambda params: jax.tree.map(lambda _: "all", params)),
    "masked": lambda tx: optax.masked(
        tx, lambda params: jax.tree.map(lambda _: True, params)),
    "multisteps_every_1": lambda tx: optax.MultiSteps(tx, every_k_schedule=1),
}


def _trajectory(tx, params):
  params, state = _train(tx, params, tx.init(params), problem.batches())
  return params


@pytest.mark.parametrize("wrap", TRANSPARENT.values(), ids=TRANSPARENT.keys())
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optax_wrappers_keep_the_rounding_bit_for_bit(entry, wrap):
  make = functools.partial(entry.make, rounding="stochastic")
  params = _bf16(problem.init_params())
  _assert_identical(_trajectory(wrap(make()), params),
                    _trajectory(make(), params))


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_accumulated_updates_land_exactly(entry):
  tx = optax.MultiSteps(entry.make(rounding="stochastic"), every_k_schedule=2)
  params = _bf16(problem.init_params())
  state = tx.init(params)
  step = jax.jit(lambda params, state, grads, value: tx.update(
      grads, state, params, value=value))
  moved = False
  # 15 micro-steps, 7 updates: past SF-RAdam's first steps, which do not move.
  for batch in problem.batches() * 3:
    value, grads = jax.value_and_grad(problem.loss)(params, batch)
    updates, state = step(params, state, grads, value)
    new_params = optax.apply_updates(params, updates)
    for new, old, update in zip(*map(jax.tree.leaves,
                                     (new_params, params, updates))):
      np.testing.assert_array_equal(
          np.asarray(new, np.float64),
          np.asarray(old, np.float64) + np.asarray(update, np.float64))
      moved |= bool(np.any(np.asarray(update) != 0))
    params = new_params
  assert moved


# Not the schedule_free wrapper over optax.adam: optax.adam moves its moments
# to the gradients' dtype, so float32 gradients change its state's dtype, and
# apply_if_finite's two branches differ in the state instead.
OWN_STATE_DTYPES = [entry for entry in OPTIMIZERS
                    if entry.name != "schedule_free_wrapper"]


@pytest.mark.parametrize("entry", OWN_STATE_DTYPES,
                         ids=[entry.name for entry in OWN_STATE_DTYPES])
def test_apply_if_finite_takes_float32_gradients(entry):
  # apply_if_finite swaps a rejected update for zeros of the gradients'
  # dtype, and the update of a bfloat16 param is float32: with bfloat16
  # gradients the two branches of its lax.cond differ (a TypeError when it
  # is traced, not a wrong step). Given float32 gradients, it runs the
  # optimizer as it is, bit for bit, and skips a non-finite step.
  make = functools.partial(entry.make, rounding="stochastic")
  params = _bf16(problem.init_params())
  batches = problem.batches()
  value, grads = jax.value_and_grad(problem.loss)(params, batches[0])
  guarded = optax.apply_if_finite(make(), 3)
  with pytest.raises(TypeError):
    guarded.update(grads, guarded.init(params), params, value=value)

  widen = lambda tree: jax.tree.map(  # noqa: E731
      lambda g: g.astype(jnp.float32), tree)
  bare_tx = make()
  bare_step, guarded_step = _step_with(bare_tx), _step_with(guarded)
  bare, bare_state = params, bare_tx.init(params)
  wrapped, wrapped_state = params, guarded.init(params)
  for batch in batches:
    value, grads = jax.value_and_grad(problem.loss)(bare, batch)
    bare, bare_state = bare_step(bare, bare_state, grads, value)
    value, grads = jax.value_and_grad(problem.loss)(wrapped, batch)
    wrapped, wrapped_state = guarded_step(wrapped, wrapped_state,
                                          widen(grads), value)
  _assert_identical(wrapped, bare)
  nan = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), grads)
  skipped, _ = guarded_step(wrapped, wrapped_state, widen(nan), value)
  _assert_identical(skipped, wrapped)


def _step_with(tx):
  @jax.jit
  def step(params, state, grads, value):
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state
  return step


def _below_half_an_ulp_run(tx):
  # Steps of 1e-3 at 1.0, a quarter of bfloat16's ulp below 1.0 (2**-8):
  # nearest rounding keeps every param at 1.0, stochastic rounding moves a
  # quarter of them down one ulp per step.
  params = jnp.ones(4096, BF16)
  state = tx.init(params)
  for _ in range(4):
    updates, state = tx.update(jnp.ones_like(params), state, params)
    params = optax.apply_updates(params, updates)
  return float(np.mean(np.asarray(params, np.float64)))


def test_a_transformation_after_the_rounding_undoes_it():
  # Halving the update after the optimizer rounded the params lands between
  # bfloat16 values, and apply_updates rounds that to nearest: the run
  # stalls. Inside stochastic_rounding the halving is part of the step.
  after = optax.chain(optfree.stochastic_rounding(optax.sgd(2e-3)),
                      optax.scale(0.5))
  inside = optfree.stochastic_rounding(
      optax.chain(optax.sgd(2e-3), optax.scale(0.5)))
  assert _below_half_an_ulp_run(after) == 1.0
  # 4 steps of 1e-3: the mean moves by 4e-3, within a few binomial sigmas.
  assert abs(_below_half_an_ulp_run(inside) - (1 - 4e-3)) < 5e-4


def test_groups_of_a_multi_transform_need_their_own_seeds():
  # Each group numbers its leaves from 0: with one seed, the first leaves of
  # two groups draw the same bits.
  params = {"a": jnp.full(4096, 1.0, BF16), "b": jnp.full(4096, 1.0, BF16)}
  labels = {"a": "a", "b": "b"}

  def run(seed_b):
    tx = optax.multi_transform(
        {"a": optfree.stochastic_rounding(optax.sgd(1e-3), seed=0),
         "b": optfree.stochastic_rounding(optax.sgd(1e-3), seed=seed_b)},
        labels)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params),
                           tx.init(params), params)
    return optax.apply_updates(params, updates)

  shared = run(seed_b=0)
  np.testing.assert_array_equal(np.asarray(shared["a"], np.float32),
                                np.asarray(shared["b"], np.float32))
  distinct = run(seed_b=1)
  assert np.any(np.asarray(distinct["a"], np.float32)
                != np.asarray(distinct["b"], np.float32))


# -------------------------------------------------------------- the wrapper


@pytest.mark.parametrize("dtype, learning_rate, ulp", [
    (BF16, 1e-3, 2.0**-8), (F16, 1e-4, 2.0**-11)])
def test_wrapper_steps_below_half_an_ulp_move_params_on_average(
    dtype, learning_rate, ulp):
  # The ulp just below 1.0, where the params go; each step is below half of it.
  assert learning_rate < ulp / 2
  params = jnp.full((4096,), 1.0, dtype)
  tx = optfree.stochastic_rounding(optax.sgd(learning_rate))
  state = tx.init(params)
  grads = jnp.ones_like(params)
  for _ in range(10):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert params.dtype == dtype
  mean = float(np.mean(np.asarray(params, np.float64)))
  # 10 steps of the learning rate below 1.0: about 4 sigma.
  assert abs(mean - (1 - 10 * learning_rate)) < 4 * ulp * np.sqrt(
      0.25 / 4096 * 10)
  nearest = optax.sgd(learning_rate)
  kept = jnp.full((4096,), 1.0, dtype)
  kept = optax.apply_updates(kept, nearest.update(grads, nearest.init(kept))[0])
  assert np.all(np.asarray(kept, np.float32) == 1.0)


def test_wrapper_runs_the_inner_optimizer_in_float32():
  params = {"w": jnp.ones((3,), BF16), "h": jnp.ones((3,), F16),
            "b": jnp.zeros((2,), jnp.float32)}
  tx = optfree.stochastic_rounding(optax.adam(1e-3))
  state = tx.init(params)
  assert isinstance(state, optfree.StochasticRoundingState)
  assert all(leaf.dtype in (jnp.float32, jnp.int32)
             for leaf in jax.tree.leaves(state))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, state = tx.update(grads, state, params)
  assert int(state.count) == 1
  assert all(update.dtype == jnp.float32
             for update in jax.tree.leaves(updates))
  # Leaves that are not rounded get the inner update unchanged.
  inner = optax.adam(1e-3)
  expected, _ = inner.update(grads, inner.init(params), params)
  np.testing.assert_array_equal(updates["b"], expected["b"])


@pytest.mark.parametrize("narrow", NARROW, ids=lambda d: jnp.dtype(d).name)
def test_wrapper_needs_params_and_rejects_other_narrow_floats(narrow):
  tx = optfree.stochastic_rounding(optax.sgd(0.1))
  params = jnp.ones(2, BF16)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))
  # Before, float8 params went to the inner optimizer, rounded to nearest.
  with pytest.raises(ValueError, match=_refused(narrow)):
    tx.init(jnp.ones(2, narrow))
  with pytest.raises(ValueError, match="seed"):
    optfree.stochastic_rounding(optax.sgd(0.1), seed=-3)



@pytest.mark.parametrize("factory", [optax.adam, optax.sgd,
                                     optfree.schedule_free_adamw])
def test_wrapper_given_an_optimizer_factory_says_to_call_it(factory):
  """The issue's stochastic_rounding(optax.adam): it failed at init with
  "'function' object has no attribute 'init'"."""
  package = factory.__module__.split(".")[0]
  name = f"{package}.{factory.__name__}"
  with pytest.raises(TypeError) as info:
    optfree.stochastic_rounding(factory)
  message = str(info.value)
  assert message.startswith("stochastic_rounding: inner must be an optax "
                            "GradientTransformation")
  assert f"got the function {name}" in message
  assert f"stochastic_rounding({name}(learning_rate=1e-3))" in message
  # What the message says to write works.
  tx = optfree.stochastic_rounding(factory(learning_rate=1e-3))
  params = jnp.ones(4, BF16)
  updates, _ = tx.update(jnp.ones(4, BF16), tx.init(params), params)
  assert updates.dtype == jnp.float32


def test_wrapper_given_something_else_names_it():
  with pytest.raises(TypeError, match=r"inner must be an optax "
                     r"GradientTransformation .*, got 'adam'\.$"):
    optfree.stochastic_rounding("adam")


# ------------------------------------------------------------- eval_params


def test_eval_params_of_bfloat16_y_and_z_is_computed_in_float32():
  tx = optfree.schedule_free_sgd(0.5, rounding="stochastic")
  y = jnp.asarray(np.random.default_rng(0).normal(size=256), BF16)
  state = tx.init(y)
  for index in range(3):
    grads = jnp.sin(y.astype(jnp.float32) * (index + 1)).astype(BF16)
    updates, state = tx.update(grads, state, y)
    y = optax.apply_updates(y, updates)
  x = optfree.eval_params(state, y)
  b1 = np.float32(state.b1)
  expected = ((np.asarray(y, np.float32)
               - (np.float32(1) - b1) * np.asarray(state.z, np.float32))
              / b1).astype(ml_dtypes.bfloat16)
  assert x.dtype == BF16
  np.testing.assert_array_equal(np.asarray(x, np.float32),
                                expected.astype(np.float32))
