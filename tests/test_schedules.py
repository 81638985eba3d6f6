"""Specification of optfree.schedules.

- Parity: every case of tests/reference/schedules.npz (values stepped out of
  torch.optim.lr_scheduler by tests/reference/gen_schedules.py) is matched at
  1e-9 relative in float64, eagerly, under jit and under vmap over counts, and
  at float32 rounding without x64.
- Where optax has a near-equivalent that differs from torch, the difference
  is pinned.
- Momentum schedules drive Adam's b1 through optax.inject_hyperparams, and the
  parameters then follow torch's Adam under OneCycleLR.
- Inputs torch accepts however degenerate they look (repeated milestones,
  step_size_down=0, a OneCycle phase no count reaches) are golden cases like
  the rest; every input optfree rejects is checked against what torch does
  with it (recorded by the generator): torch fails too, or it is listed in
  REJECTED_THOUGH_TORCH_ACCEPTS with the reason.
- Integer hyperparameters of any size work with int32 counts (no x64), at
  counts up to the int32 maximum.
- Properties over random valid hyperparameters (hypothesis), validation of
  bad input, and the plot helper.
"""

import inspect
import json
import math
import pathlib
import sys

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree
from optfree import schedules

GOLDEN = np.load(pathlib.Path(__file__).parent / "reference" / "schedules.npz")
CASES = json.loads(str(GOLDEN["cases"]))
# Exact zeros (a cosine at its minimum 0, a polynomial at its end) are compared
# with this absolute floor on top of the relative 1e-9.
ATOL = 1e-15
RTOL = 1e-9
# Every case is evaluated on the same counts (and compared on its golden
# prefix), so that eager evaluation reuses JAX's cached kernels across cases.
NUM_COUNTS = 512


def build(spec):
  """The optfree schedule a golden case's JSON spec describes."""
  kwargs = dict(spec["kwargs"])
  if spec["fn"] == "sequential_schedule":
    kwargs["schedules"] = [build(inner) for inner in kwargs["schedules"]]
  if spec["fn"] == "per_epoch":
    kwargs["schedule"] = build(kwargs["schedule"])
  return getattr(schedules, spec["fn"])(**kwargs)


def evaluate(schedule, counts, mode):
  if mode == "eager":
    return schedule(counts)
  if mode == "jit":
    return jax.jit(schedule)(counts)
  return jax.vmap(schedule)(counts)


def test_golden_file_covers_every_schedule():
  covered = set()

  def collect(spec):
    covered.add(spec["fn"])
    for value in spec["kwargs"].values():
      for inner in value if isinstance(value, list) else [value]:
        if isinstance(inner, dict) and "fn" in inner:
          collect(inner)

  for spec in CASES.values():
    collect(spec)
  expected = set(schedules.__all__) - {"plot"}
  assert covered == expected
  assert "torch" in str(GOLDEN["meta"])


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_float64(name, mode, x64):
  del x64
  golden = GOLDEN[name]
  values = evaluate(build(CASES[name]), jnp.arange(NUM_COUNTS), mode)
  assert values.dtype == jnp.float64
  np.testing.assert_allclose(values[: len(golden)], golden, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_python_int_counts_match_torch(name, x64):
  del x64
  golden = GOLDEN[name]
  schedule = build(CASES[name])
  for count in (0, len(golden) // 2, len(golden) - 1):
    np.testing.assert_allclose(
        schedule(count), golden[count], rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_by_default_and_close_to_torch(name):
  golden = GOLDEN[name]
  values = build(CASES[name])(jnp.arange(NUM_COUNTS, dtype=jnp.int32))
  assert values.dtype == jnp.float32
  np.testing.assert_allclose(
      values[: len(golden)], golden, rtol=2e-6, atol=2e-7 * np.abs(golden).max()
  )


def test_int64_counts_under_x64(x64):
  del x64
  golden = GOLDEN["warm_restarts_mult2"]
  values = build(CASES["warm_restarts_mult2"])(
      jnp.arange(len(golden), dtype=jnp.int64)
  )
  np.testing.assert_allclose(values, golden, rtol=RTOL, atol=ATOL)


def test_cosine_annealing_matches_torch_recursion_over_a_long_run(x64):
  """torch's chainable CosineAnnealingLR drifts from the closed form by float
  rounding that grows with the number of updates; after 20,000 updates
  (200 half-periods) it is still far inside 1e-9 (about 1e-11 here)."""
  del x64
  config = json.loads(str(GOLDEN["cosine_long_run_config"]))
  schedule = schedules.cosine_annealing_schedule(
      config["init_value"], config["t_max"], config["eta_min"]
  )
  counts = GOLDEN["cosine_long_run_counts"]
  np.testing.assert_allclose(
      jax.jit(schedule)(jnp.asarray(counts)), GOLDEN["cosine_long_run_values"],
      rtol=RTOL, atol=ATOL,
  )


# --- Differences from optax, pinned ---------------------------------------


def test_cosine_annealing_equals_optax_cosine_decay_until_t_max_only(x64):
  del x64
  init_value, t_max, eta_min = 0.1, 10, 0.01
  ours = schedules.cosine_annealing_schedule(init_value, t_max, eta_min)
  theirs = optax.cosine_decay_schedule(
      init_value, decay_steps=t_max, alpha=eta_min / init_value
  )
  before = jnp.arange(t_max + 1)
  np.testing.assert_allclose(ours(before), theirs(before), rtol=1e-12)
  # optax holds the minimum after decay_steps; torch climbs back up.
  np.testing.assert_allclose(theirs(2 * t_max), eta_min, rtol=1e-12)
  np.testing.assert_allclose(ours(2 * t_max), init_value, rtol=1e-12)


def test_onecycle_peaks_one_update_before_optax(x64):
  del x64
  golden = GOLDEN["onecycle_default"]
  total_steps = len(golden)
  ours = schedules.onecycle_schedule(0.1, total_steps)(jnp.arange(total_steps))
  # optax's onecycle takes one count at a time.
  theirs = jax.jit(jax.vmap(optax.cosine_onecycle_schedule(total_steps, 0.1)))(
      jnp.arange(total_steps)
  )
  torch_peak = int(np.argmax(golden))
  assert torch_peak == 29  # pct_start * total_steps - 1
  assert int(jnp.argmax(ours)) == torch_peak
  assert int(jnp.argmax(theirs)) == torch_peak + 1
  assert not np.allclose(theirs, golden, rtol=1e-3)


def test_warm_restarts_keep_restarting_where_optax_sgdr_stops(x64):
  del x64
  init_value, t_0, cycles = 0.1, 5, 3
  ours = schedules.cosine_warm_restarts_schedule(init_value, t_0)
  theirs = optax.sgdr_schedule([
      dict(init_value=init_value, peak_value=init_value, warmup_steps=0,
           decay_steps=t_0, end_value=0.0)
  ] * cycles)
  listed = jnp.arange(cycles * t_0)
  np.testing.assert_allclose(ours(listed), theirs(listed), rtol=1e-12, atol=ATOL)
  # Past its list optax stays at the end of the last cycle; torch restarts.
  after = cycles * t_0 + 2 * t_0
  assert float(theirs(after)) == 0.0
  np.testing.assert_allclose(ours(after), init_value, rtol=1e-12)


# --- Momentum schedules drive Adam's b1 -----------------------------------


def onecycle_adam():
  config = json.loads(str(GOLDEN["adam_onecycle_config"]))
  shape = dict(total_steps=config["total_steps"], pct_start=config["pct_start"])
  learning_rate = schedules.onecycle_schedule(config["max_lr"], **shape)
  b1 = schedules.onecycle_momentum_schedule(
      base_momentum=config["base_momentum"],
      max_momentum=config["max_momentum"], **shape,
  )
  optimizer = optax.inject_hyperparams(optax.adam)(
      learning_rate=learning_rate, b1=b1
  )
  return optimizer, learning_rate, b1


def test_onecycle_momentum_is_the_b1_adam_uses(x64):
  del x64
  optimizer, learning_rate, b1 = onecycle_adam()
  params = jnp.asarray(GOLDEN["adam_onecycle_init"])
  state = optimizer.init(params)
  update = jax.jit(optimizer.update)
  for count, grad in enumerate(GOLDEN["adam_onecycle_grads"]):
    updates, state = update(jnp.asarray(grad), state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(state.hyperparams["b1"], b1(count), rtol=1e-14)
    np.testing.assert_allclose(
        state.hyperparams["learning_rate"], learning_rate(count), rtol=1e-14
    )
    # torch Adam under OneCycleLR(cycle_momentum=True), same gradients.
    np.testing.assert_allclose(
        params, GOLDEN["adam_onecycle_params"][count], rtol=1e-10
    )


def test_b1_really_changes_the_trajectory(x64):
  """A constant b1 at the schedule's start gives a different run from torch's."""
  del x64
  config = json.loads(str(GOLDEN["adam_onecycle_config"]))
  optimizer = optax.inject_hyperparams(optax.adam)(
      learning_rate=schedules.onecycle_schedule(
          config["max_lr"], config["total_steps"], config["pct_start"]),
      b1=config["max_momentum"],
  )
  params = jnp.asarray(GOLDEN["adam_onecycle_init"])
  state = optimizer.init(params)
  for grad in GOLDEN["adam_onecycle_grads"]:
    updates, state = optimizer.update(jnp.asarray(grad), state, params)
    params = optax.apply_updates(params, updates)
  assert not np.allclose(params, GOLDEN["adam_onecycle_params"][-1], rtol=1e-6)


@pytest.mark.parametrize(
    "optimizer", [optax.adam, optfree.lion, optfree.adabound],
    ids=["optax.adam", "optfree.lion", "optfree.adabound"],
)
def test_cyclic_momentum_drives_b1_of_optax_and_optfree_optimizers(optimizer):
  b1 = schedules.cyclic_momentum_schedule(0.8, 0.95, step_size_up=3)
  learning_rate = schedules.cyclic_schedule(1e-3, 1e-2, step_size_up=3)
  grads = jax.random.normal(jax.random.key(0), (12, 4))

  def run(b1_value):
    transform = optax.inject_hyperparams(optimizer)(
        learning_rate=learning_rate, b1=b1_value
    )
    params = jnp.zeros(4)
    state = transform.init(params)
    update = jax.jit(transform.update)
    used = []
    for grad in grads:
      updates, state = update(grad, state, params)
      params = optax.apply_updates(params, updates)
      used.append(state.hyperparams["b1"])
    return params, jnp.stack(used)

  params, used = run(b1)
  np.testing.assert_allclose(used, b1(jnp.arange(len(grads))), rtol=1e-6)
  constant_params, _ = run(0.95)
  assert not np.allclose(params, constant_params, rtol=1e-4)


# --- Behaviour beyond the golden range ------------------------------------


@pytest.mark.parametrize("three_phase", [False, True])
def test_onecycle_holds_its_last_value_past_total_steps(three_phase, x64):
  del x64
  total_steps = 40
  for schedule in (
      schedules.onecycle_schedule(0.1, total_steps, three_phase=three_phase),
      schedules.onecycle_momentum_schedule(total_steps, three_phase=three_phase),
  ):
    last = schedule(total_steps - 1)
    after = schedule(jnp.arange(total_steps, total_steps + 50))
    np.testing.assert_array_equal(after, jnp.full_like(after, last))


@pytest.mark.parametrize("t_0,t_mult", [(1, 2), (3, 2), (2, 3), (7, 5)])
def test_warm_restarts_restart_exactly_at_every_cycle_start(t_0, t_mult, x64):
  """Unbounded restarts: the log-based cycle index is right at each boundary."""
  del x64
  schedule = jax.jit(schedules.cosine_warm_restarts_schedule(1.0, t_0, t_mult))
  starts, start, length = [], 0, t_0
  while start < 2**40:
    starts.append(start)
    start, length = start + length, length * t_mult
  starts = np.asarray(starts, np.int64)
  np.testing.assert_array_equal(schedule(starts), np.ones(len(starts)))
  before = starts[1:] - 1  # the last update of each cycle, near the minimum
  lengths = t_0 * np.asarray(t_mult, np.float64) ** np.arange(len(before))
  expected = (1 + np.cos(np.pi * (lengths - 1) / lengths)) / 2
  np.testing.assert_allclose(schedule(before), expected, rtol=1e-9)


@pytest.mark.parametrize("total_steps", [3, 10, 49, 100])
def test_linear_and_polynomial_decays_end_at_exactly_zero_under_jit(
    total_steps, x64
):
  """optax's linear/polynomial schedules end slightly off 0 under jit (NaN for
  a fractional power): XLA computes their 1 - count / T as 1 - count * (1 / T).
  torch ends at exactly 0."""
  del x64
  counts = jnp.arange(total_steps, total_steps + 3)
  for ours, theirs in (
      (schedules.linear_factor_schedule(0.3, 1.0, 0.0, total_steps),
       optax.linear_schedule(0.3, 0.0, total_steps)),
      (schedules.polynomial_decay_schedule(0.3, total_steps, 0.5),
       optax.polynomial_schedule(0.3, 0.0, 0.5, total_steps)),
  ):
    np.testing.assert_array_equal(jax.jit(ours)(counts), 0.0)
    assert not np.all(jax.jit(theirs)(counts) == 0.0)


@pytest.mark.parametrize("t_0,t_mult", [(1, 2), (3, 2), (2, 3)])
def test_warm_restarts_in_float32_at_counts_float32_cannot_hold(t_0, t_mult):
  schedule = jax.jit(schedules.cosine_warm_restarts_schedule(1.0, t_0, t_mult))
  start, length = 0, t_0
  while start + length < 2**28:
    start, length = start + length, length * t_mult
  offsets = np.array([0, 1, 3, 5, length // 3, length - 1])
  values = schedule(jnp.asarray(start + offsets, jnp.int32))
  assert values.dtype == jnp.float32
  expected = (1 + np.cos(np.pi * offsets / length)) / 2
  np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)


def test_cosine_annealing_is_exactly_periodic_at_large_counts():
  schedule = schedules.cosine_annealing_schedule(0.1, 1000)
  counts = jnp.arange(0, 2000, 7, dtype=jnp.int32)
  np.testing.assert_array_equal(schedule(counts + 2000 * 500_000), schedule(counts))


def test_traced_hyperparameters_pass_validation_and_give_the_same_values():
  counts = jnp.arange(30)
  for make in (
      lambda lr: schedules.step_schedule(lr, 4, 0.5),
      lambda lr: schedules.cosine_annealing_schedule(lr, 10),
      lambda lr: schedules.onecycle_schedule(lr, 30),
      lambda lr: schedules.cyclic_schedule(lr / 10, lr, step_size_up=5),
      lambda lr: schedules.warmup_stable_decay_schedule(lr, 30, warmup_steps=3),
  ):
    traced = jax.jit(lambda lr, make=make: make(lr)(counts))(0.1)
    np.testing.assert_allclose(traced, make(0.1)(counts), rtol=1e-6, atol=1e-8)


# --- Properties over random valid hyperparameters --------------------------

PROPERTY_SETTINGS = hypothesis.settings(max_examples=15, deadline=None)
lrs = st.floats(1e-4, 1.0)
sizes = st.integers(1, 30)
# Fractions of a learning rate; kept clear of subnormals, which XLA flushes.
fractions = st.one_of(st.just(0.0), st.floats(1e-3, 1.0))


# One shape for every example, so that eager evaluation reuses JAX's cached
# kernels instead of compiling new ones for each example's length.
PROPERTY_COUNTS = 512


def values_of(schedule, num_counts):
  assert num_counts <= PROPERTY_COUNTS
  with jax.enable_x64(True):
    return np.asarray(schedule(jnp.arange(PROPERTY_COUNTS)))[:num_counts]


def nonincreasing(values, slack=1e-12):
  return bool(np.all(np.diff(values) <= slack * np.abs(values).max()))


@PROPERTY_SETTINGS
@hypothesis.given(
    init_value=lrs, t_max=sizes, eta_min_fraction=fractions
)
def test_cosine_annealing_bounded_monotone_then_periodic(
    init_value, t_max, eta_min_fraction
):
  eta_min = init_value * eta_min_fraction
  values = values_of(
      schedules.cosine_annealing_schedule(init_value, t_max, eta_min), 4 * t_max
  )
  assert np.all(np.isfinite(values))
  assert np.all(values >= eta_min * (1 - 1e-12))
  assert np.all(values <= init_value * (1 + 1e-12))
  assert nonincreasing(values[: t_max + 1])
  np.testing.assert_allclose(values[2 * t_max:], values[: 2 * t_max], rtol=1e-12)


@PROPERTY_SETTINGS
@hypothesis.given(
    init_value=lrs, t_0=sizes, t_mult=st.integers(1, 4),
    eta_min_fraction=st.floats(0.0, 0.9).filter(lambda f: f == 0 or f > 1e-3),
)
def test_warm_restarts_bounded_and_decreasing_within_each_cycle(
    init_value, t_0, t_mult, eta_min_fraction
):
  eta_min = init_value * eta_min_fraction
  values = values_of(
      schedules.cosine_warm_restarts_schedule(init_value, t_0, t_mult, eta_min),
      300,
  )
  assert np.all(np.isfinite(values))
  assert np.all(values >= eta_min * (1 - 1e-12))
  assert np.all(values <= init_value * (1 + 1e-12))
  jumps = np.flatnonzero(np.diff(values) > 1e-12 * init_value) + 1
  start, length, expected_jumps = 0, t_0, []
  while start + length < 300:
    if length > 1:  # a one-update cycle never leaves init_value
      expected_jumps.append(start + length)
    start, length = start + length, length * t_mult
  if init_value - eta_min > 1e-9:
    np.testing.assert_array_equal(jumps, expected_jumps)
  if t_mult == 1:
    np.testing.assert_allclose(values[t_0:], values[:-t_0], rtol=1e-12)


@PROPERTY_SETTINGS
@hypothesis.given(
    base_lr=lrs, span=lrs, step_size_up=sizes, step_size_down=sizes,
    mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
    gamma=st.floats(0.9, 1.0),
)
def test_cyclic_bounded_and_periodic(
    base_lr, span, step_size_up, step_size_down, mode, gamma
):
  max_lr = base_lr + span
  cycle = step_size_up + step_size_down
  shape = dict(step_size_up=step_size_up, step_size_down=step_size_down,
               mode=mode, gamma=gamma)
  lr = values_of(schedules.cyclic_schedule(base_lr, max_lr, **shape), 3 * cycle)
  momentum = values_of(schedules.cyclic_momentum_schedule(0.8, 0.9, **shape),
                       3 * cycle)
  assert np.all(lr >= base_lr * (1 - 1e-12)) and np.all(lr <= max_lr * (1 + 1e-12))
  assert np.all(momentum >= 0.8 - 1e-12) and np.all(momentum <= 0.9 + 1e-12)
  # Momentum moves against the learning rate, by the same fraction.
  np.testing.assert_allclose(
      (lr - base_lr) / span, (0.9 - momentum) / 0.1, rtol=1e-6, atol=1e-9
  )
  if mode == "triangular":
    np.testing.assert_allclose(lr[cycle:], lr[:-cycle], rtol=1e-12)
  if mode == "triangular2":
    np.testing.assert_allclose(
        lr[cycle:] - base_lr, (lr[:-cycle] - base_lr) / 2, rtol=1e-9, atol=1e-15
    )
  if mode != "exp_range":
    assert np.argmax(lr[:cycle]) == step_size_up


@PROPERTY_SETTINGS
@hypothesis.given(
    max_lr=lrs, total_steps=st.integers(10, 200), pct_start=st.floats(0.05, 0.45),
    anneal_strategy=st.sampled_from(["cos", "linear"]),
    three_phase=st.booleans(),
)
def test_onecycle_rises_to_its_peak_then_falls(
    max_lr, total_steps, pct_start, anneal_strategy, three_phase
):
  hypothesis.assume(pct_start * total_steps > 1.5)
  lr = values_of(
      schedules.onecycle_schedule(max_lr, total_steps, pct_start,
                                  anneal_strategy, three_phase=three_phase),
      total_steps,
  )
  momentum = values_of(
      schedules.onecycle_momentum_schedule(total_steps, pct_start,
                                           anneal_strategy,
                                           three_phase=three_phase),
      total_steps,
  )
  # The last count of the rise; torch's peak may fall between two counts.
  peak = math.floor(pct_start * total_steps - 1)
  assert np.all(lr > 0) and np.all(lr <= max_lr * (1 + 1e-12))
  assert np.all(momentum >= 0.85 - 1e-12) and np.all(momentum <= 0.95 + 1e-12)
  assert nonincreasing(-lr[: peak + 1])
  assert nonincreasing(momentum[: peak + 1])
  if not three_phase:
    assert nonincreasing(lr[peak + 1:])
    assert nonincreasing(-momentum[peak + 1:])
  np.testing.assert_allclose(lr[-1], max_lr / 25.0 / 1e4, rtol=1e-9)


@PROPERTY_SETTINGS
@hypothesis.given(
    init_value=lrs, size=sizes, gamma=st.floats(0.05, 1.0),
    power=st.floats(0.0, 3.0), milestones=st.lists(sizes, max_size=4, unique=True),
)
def test_decays_are_positive_and_nonincreasing(
    init_value, size, gamma, power, milestones
):
  for schedule in (
      schedules.step_schedule(init_value, size, gamma),
      schedules.multistep_schedule(init_value, sorted(milestones), gamma),
      schedules.exponential_schedule(init_value, gamma),
      schedules.polynomial_decay_schedule(init_value, size, power),
      schedules.linear_factor_schedule(init_value, 1.0, gamma, size),
  ):
    values = values_of(schedule, 3 * size + 5)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert nonincreasing(values)
    assert values[0] == pytest.approx(init_value, rel=1e-12)
  assert np.all(values_of(schedules.exponential_schedule(init_value, gamma), 60) > 0)


@PROPERTY_SETTINGS
@hypothesis.given(
    peak_value=lrs, total_steps=st.integers(1, 100),
    warmup_fraction=st.floats(0.0, 0.5), decay_fraction=st.floats(0.0, 0.5),
    init_fraction=fractions, end_fraction=fractions,
    decay_shape=st.sampled_from(["linear", "cosine", "1-sqrt"]),
)
def test_warmup_stable_decay_rises_holds_falls(
    peak_value, total_steps, warmup_fraction, decay_fraction, init_fraction,
    end_fraction, decay_shape,
):
  warmup_steps = int(warmup_fraction * total_steps)
  decay_steps = int(decay_fraction * total_steps)
  init_value, end_value = init_fraction * peak_value, end_fraction * peak_value
  values = values_of(
      schedules.warmup_stable_decay_schedule(
          peak_value, total_steps, warmup_steps=warmup_steps,
          decay_steps=decay_steps, init_value=init_value, end_value=end_value,
          decay_shape=decay_shape),
      total_steps + 10,
  )
  assert np.all(np.isfinite(values)) and np.all(values >= 0)
  assert nonincreasing(-values[: warmup_steps + 1])
  assert nonincreasing(values[warmup_steps:])
  stable = values[warmup_steps: total_steps - decay_steps]
  np.testing.assert_allclose(stable, peak_value, rtol=1e-12)
  np.testing.assert_array_equal(values[total_steps:], end_value)
  if warmup_steps:
    assert values[0] == init_value


@PROPERTY_SETTINGS
@hypothesis.given(
    base_lr=lrs, max_lr=lrs, step_size=sizes, hold=st.integers(0, 20)
)
def test_trapezoidal_up_hold_down(base_lr, max_lr, step_size, hold):
  anneal_start = step_size + hold
  values = values_of(
      schedules.trapezoidal_schedule(base_lr, max_lr, step_size, anneal_start),
      anneal_start + 2 * step_size,
  )
  np.testing.assert_allclose(values[step_size: anneal_start + 1], max_lr,
                             rtol=1e-12)
  np.testing.assert_array_equal(values[anneal_start + step_size:], base_lr)
  np.testing.assert_allclose(values[: step_size + 1][::-1],
                             values[anneal_start: anneal_start + step_size + 1],
                             rtol=1e-12)
  rising = np.sign(max_lr - base_lr)
  assert nonincreasing(-rising * values[: step_size + 1])


@PROPERTY_SETTINGS
@hypothesis.given(steps_per_epoch=sizes, count=st.integers(0, 10_000))
def test_per_epoch_is_the_epoch_schedule_at_the_epoch_index(
    steps_per_epoch, count
):
  epoch_schedule = schedules.cosine_annealing_schedule(0.1, 7)
  schedule = schedules.per_epoch(epoch_schedule, steps_per_epoch)
  assert schedule(count) == epoch_schedule(count // steps_per_epoch)


# --- Validation -----------------------------------------------------------

S = schedules
BAD_INPUT = [
    (S.step_schedule, dict(init_value=-0.1, step_size=3), "init_value", -0.1),
    (S.step_schedule, dict(init_value=0.1, step_size=0), "step_size", 0),
    (S.step_schedule, dict(init_value=0.1, step_size=2.5), "step_size", 2.5),
    (S.multistep_schedule, dict(init_value=0.1, milestones=[2], gamma=-0.5),
     "gamma", -0.5),
    (S.multistep_schedule, dict(init_value=0.1, milestones=[2, 4.5]),
     "milestones[1]", 4.5),
    (S.exponential_schedule, dict(init_value=0.1, gamma=-0.5), "gamma", -0.5),
    (S.exponential_schedule, dict(init_value=-1.0, gamma=0.9), "init_value", -1.0),
    (S.constant_factor_schedule, dict(init_value=0.1, factor=1.5), "factor", 1.5),
    (S.constant_factor_schedule, dict(init_value=0.1, factor=-0.1), "factor", -0.1),
    (S.linear_factor_schedule, dict(init_value=0.1, start_factor=0.0),
     "start_factor", 0.0),
    (S.linear_factor_schedule, dict(init_value=0.1, end_factor=-0.5),
     "end_factor", -0.5),
    (S.polynomial_decay_schedule, dict(init_value=0.1, power=-1.0), "power", -1.0),
    (S.cosine_annealing_schedule, dict(init_value=0.1, t_max=0), "t_max", 0),
    (S.cosine_annealing_schedule, dict(init_value=0.1, t_max=5, eta_min=-0.01),
     "eta_min", -0.01),
    (S.cosine_warm_restarts_schedule, dict(init_value=0.1, t_0=0), "t_0", 0),
    (S.cosine_warm_restarts_schedule, dict(init_value=0.1, t_0=5, t_mult=0),
     "t_mult", 0),
    (S.cosine_warm_restarts_schedule, dict(init_value=0.1, t_0=5, t_mult=1.5),
     "t_mult", 1.5),
    (S.cyclic_schedule, dict(base_lr=-0.1, max_lr=0.1), "base_lr", -0.1),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=-0.1), "max_lr", -0.1),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, step_size_up=0),
     "step_size_up", 0),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, mode="sine"), "mode", "sine"),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, step_size_down=-1),
     "step_size_down", -1),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, mode="exp_range",
                             gamma=-0.5), "gamma", -0.5),
    (S.cyclic_momentum_schedule, dict(base_momentum=1.5), "base_momentum", 1.5),
    (S.cyclic_momentum_schedule, dict(max_momentum=-0.1), "max_momentum", -0.1),
    (S.cyclic_momentum_schedule, dict(mode="cos"), "mode", "cos"),
    (S.onecycle_schedule, dict(max_lr=-1.0, total_steps=100), "max_lr", -1.0),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=0), "total_steps", 0),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=100, pct_start=-0.1),
     "pct_start", -0.1),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=10, pct_start=0.1),
     "pct_start", 0.1),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=100,
                               anneal_strategy="cosine"), "anneal_strategy", "cosine"),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=100, div_factor=0.0),
     "div_factor", 0.0),
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=100, final_div_factor=-1.0),
     "final_div_factor", -1.0),
    (S.onecycle_momentum_schedule, dict(total_steps=100, pct_start=1.2),
     "pct_start", 1.2),
    (S.onecycle_momentum_schedule, dict(total_steps=100, base_momentum=-0.5),
     "base_momentum", -0.5),
    (S.onecycle_momentum_schedule, dict(total_steps=100, anneal_strategy="exp"),
     "anneal_strategy", "exp"),
    (S.trapezoidal_schedule, dict(base_lr=-0.1, max_lr=1.0, step_size=5,
                                  anneal_start=10), "base_lr", -0.1),
    (S.trapezoidal_schedule, dict(base_lr=0.1, max_lr=1.0, step_size=0,
                                  anneal_start=10), "step_size", 0),
    (S.trapezoidal_schedule, dict(base_lr=0.1, max_lr=1.0, step_size=5,
                                  anneal_start=3), "anneal_start", 3),
    (S.warmup_stable_decay_schedule, dict(peak_value=-0.1, total_steps=10),
     "peak_value", -0.1),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=0),
     "total_steps", 0),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          warmup_steps=-1), "warmup_steps", -1),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          decay_steps=-1), "decay_steps", -1),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          warmup_steps=6, decay_steps=5),
     "warmup_steps + decay_steps", None),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          init_value=-0.1), "init_value", -0.1),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          end_value=-0.1), "end_value", -0.1),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                          decay_shape="sqrt"), "decay_shape", "sqrt"),
    (S.per_epoch, dict(schedule=lambda count: 0.1, steps_per_epoch=0),
     "steps_per_epoch", 0),
    (S.per_epoch, dict(schedule=0.1, steps_per_epoch=10), "schedule", 0.1),
    (S.sequential_schedule, dict(schedules=[], milestones=[]), "schedules", None),
    (S.sequential_schedule, dict(schedules=[optax.constant_schedule(0.1), 0.1],
                                 milestones=[3]), "schedules[1]", 0.1),
    (S.sequential_schedule, dict(schedules=[optax.constant_schedule(0.1)] * 2,
                                 milestones=[]), "milestones", None),
    (S.sequential_schedule, dict(schedules=[optax.constant_schedule(0.1)] * 3,
                                 milestones=[6, 3]), "milestones", None),
    (S.sequential_schedule, dict(schedules=[optax.constant_schedule(0.1)] * 2,
                                 milestones=[2.5]), "milestones[0]", 2.5),
]


@pytest.mark.parametrize(
    "constructor,kwargs,name,value", BAD_INPUT,
    ids=[f"{c.__name__}-{n}-{v!r}" for c, _, n, v in BAD_INPUT],
)
def test_bad_input_raises_naming_argument_and_value(constructor, kwargs, name,
                                                    value):
  with pytest.raises(ValueError) as error:
    constructor(**kwargs)
  message = str(error.value)
  assert name in message
  if value is not None:
    assert repr(value) in message


# One valid call of every constructor; each number in it is replaced by a
# schedule in turn.
VALID_CALLS = {
    S.step_schedule: dict(init_value=0.1, step_size=3, gamma=0.5),
    S.multistep_schedule: dict(init_value=0.1, milestones=[2, 5], gamma=0.5),
    S.exponential_schedule: dict(init_value=0.1, gamma=0.9),
    S.constant_factor_schedule: dict(init_value=0.1, factor=0.5, total_steps=3),
    S.linear_factor_schedule: dict(init_value=0.1, start_factor=0.5,
                                   end_factor=1.0, total_steps=3),
    S.polynomial_decay_schedule: dict(init_value=0.1, total_steps=5, power=2.0),
    S.cosine_annealing_schedule: dict(init_value=0.1, t_max=10, eta_min=0.0),
    S.cosine_warm_restarts_schedule: dict(init_value=0.1, t_0=5, t_mult=2,
                                          eta_min=0.0),
    S.cyclic_schedule: dict(base_lr=0.01, max_lr=0.1, step_size_up=5,
                            step_size_down=3, mode="exp_range", gamma=0.99),
    S.cyclic_momentum_schedule: dict(base_momentum=0.8, max_momentum=0.9,
                                     step_size_up=5, step_size_down=3,
                                     mode="exp_range", gamma=0.99),
    S.onecycle_schedule: dict(max_lr=0.1, total_steps=100, pct_start=0.3,
                              div_factor=25.0, final_div_factor=1e4),
    S.onecycle_momentum_schedule: dict(total_steps=100, pct_start=0.3,
                                       base_momentum=0.85, max_momentum=0.95),
    S.trapezoidal_schedule: dict(base_lr=0.01, max_lr=0.1, step_size=5,
                                 anneal_start=10),
    S.warmup_stable_decay_schedule: dict(peak_value=0.1, total_steps=100,
                                         warmup_steps=10, decay_steps=20,
                                         init_value=0.0, end_value=0.0),
    S.per_epoch: dict(schedule=optax.constant_schedule(0.1),
                      steps_per_epoch=10),
    S.sequential_schedule: dict(schedules=[optax.constant_schedule(0.1)] * 2,
                                milestones=[5]),
}
NUMBER_ARGUMENTS = [
    (constructor, name, index)
    for constructor, kwargs in VALID_CALLS.items()
    for name, value in kwargs.items()
    for index in (range(len(value)) if name == "milestones" else [None])
    if name == "milestones" or (isinstance(value, (int, float))
                                and not isinstance(value, bool))
]


def test_every_number_argument_of_every_schedule_is_covered():
  names = {constructor.__name__ for constructor, _, _ in NUMBER_ARGUMENTS}
  assert names == set(S.__all__) - {"plot"}
  for constructor, kwargs in VALID_CALLS.items():
    constructor(**kwargs)  # valid as written
    numbers = {name for name, parameter in inspect.signature(
        constructor).parameters.items()
               if parameter.annotation in ("float", "int", "int | None",
                                           "Sequence[int]")}
    assert numbers <= set(kwargs), (constructor.__name__, numbers)


@pytest.mark.parametrize(
    "constructor,name,index", NUMBER_ARGUMENTS,
    ids=[f"{c.__name__}-{n}" + ("" if i is None else f"[{i}]")
         for c, n, i in NUMBER_ARGUMENTS])
def test_a_schedule_where_a_number_goes_fails_at_construction(
    constructor, name, index):
  """The issue's onecycle_schedule(<schedule>, total_steps=100) and
  cosine_annealing_schedule(<schedule>, t_max=10), for every argument."""
  inner = optax.cosine_onecycle_schedule(100, 0.1)
  kwargs = dict(VALID_CALLS[constructor])
  if index is None:
    kwargs[name] = inner
    shown = name
  else:
    kwargs[name] = [inner if i == index else m
                    for i, m in enumerate(kwargs[name])]
    shown = f"{name}[{index}]"
  with pytest.raises(ValueError) as info:
    constructor(**kwargs)
  message = str(info.value)
  assert message.startswith(f"{shown} must be a number, got a schedule")
  assert "lambda count: schedule_a(count) * schedule_b(count)" in message


def test_the_issue_s_two_calls_say_how_to_combine_schedules():
  decay = optax.exponential_decay(0.1, 10, 0.5)
  with pytest.raises(ValueError, match="^max_lr must be a number, got a "
                     "schedule"):
    S.onecycle_schedule(decay, total_steps=100)
  with pytest.raises(ValueError, match="^init_value must be a number, got a "
                     "schedule"):
    S.cosine_annealing_schedule(decay, t_max=10)
  # What the message suggests instead works: the product of two schedules.
  product = lambda count: decay(count) * S.cosine_annealing_schedule(  # noqa: E731
      1.0, t_max=10)(count)
  np.testing.assert_allclose(product(jnp.arange(3)), [
      decay(c) * S.cosine_annealing_schedule(1.0, 10)(c) for c in range(3)],
      rtol=1e-6)


def test_cyclic_gamma_is_read_only_in_exp_range_but_never_a_schedule():
  # torch ignores gamma outside 'exp_range'; a schedule there is still a
  # mistake.
  S.cyclic_schedule(0.01, 0.1, 5, mode="triangular", gamma=-3.0)
  with pytest.raises(ValueError, match="^gamma must be a number, got a "
                     "schedule"):
    S.cyclic_schedule(0.01, 0.1, 5, mode="triangular",
                      gamma=optax.constant_schedule(0.9))


@pytest.mark.parametrize(
    "constructor,kwargs",
    [
        (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                              warmup_steps=0, decay_steps=0)),
        (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=10,
                                              warmup_steps=4, decay_steps=6)),
        (S.constant_factor_schedule, dict(init_value=0.1, factor=0.0)),
        (S.linear_factor_schedule, dict(init_value=0.1, end_factor=0.0)),
        (S.polynomial_decay_schedule, dict(init_value=0.0, power=0.0)),
        (S.exponential_schedule, dict(init_value=0.1, gamma=1.0)),
        (S.exponential_schedule, dict(init_value=0.1, gamma=0.0)),
        (S.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, step_size_down=0,
                                 mode="exp_range", gamma=0.0)),
        (S.onecycle_schedule, dict(max_lr=0.1, total_steps=1,
                                   three_phase=True)),
        (S.multistep_schedule, dict(init_value=0.1, milestones=[])),
        (S.cyclic_momentum_schedule, dict(base_momentum=0.0, max_momentum=1.0)),
        (S.trapezoidal_schedule, dict(base_lr=0.0, max_lr=0.1, step_size=3,
                                      anneal_start=3)),
        (S.sequential_schedule, dict(schedules=[S.exponential_schedule(0.1, 0.9)],
                                     milestones=[])),
    ],
)
def test_valid_edge_values_work(constructor, kwargs):
  values = constructor(**kwargs)(jnp.arange(20))
  assert values.shape == (20,) and bool(jnp.all(jnp.isfinite(values)))


def test_warmup_stable_decay_without_decay_steps_drops_at_total_steps():
  schedule = S.warmup_stable_decay_schedule(
      1.0, 10, decay_steps=0, end_value=0.25
  )
  np.testing.assert_array_equal(
      schedule(jnp.arange(12)), [1.0] * 10 + [0.25] * 2
  )


def test_warmup_stable_decay_default_decays_over_the_last_fifth():
  schedule = S.warmup_stable_decay_schedule(1.0, 50)
  values = np.asarray(schedule(jnp.arange(52)))
  np.testing.assert_array_equal(values[:41], 1.0)
  assert np.all(np.diff(values[40:51]) < 0)
  np.testing.assert_array_equal(values[50:], 0.0)


# --- What torch does with the inputs optfree rejects ----------------------

REJECTED = json.loads(str(GOLDEN["rejected"]))
# Inputs torch runs on (it checks none of these) that optfree still rejects.
NEGATIVE_RATES = "negative learning rates, which torch checks only in the"\
                 " optimizer's constructor"
SIGN_FLIPS = "learning rates of alternating sign (a negative gamma)"
FLOAT_COUNT = ("a non-integer count, which torch's int-typed argument only"
               " tolerates by accident of float arithmetic")
REJECTED_THOUGH_TORCH_ACCEPTS = {
    "step_size_float": FLOAT_COUNT + " (2.5 decays at 5, 10, ...)",
    "step_size_negative": "a negative step size acts as its absolute value",
    "step_gamma_negative": SIGN_FLIPS,
    "multistep_gamma_negative": SIGN_FLIPS,
    "multistep_float_milestone": FLOAT_COUNT + " (never reached)",
    "exponential_gamma_negative": SIGN_FLIPS,
    "constant_factor_total_float": FLOAT_COUNT,
    "linear_total_float": FLOAT_COUNT,
    "polynomial_total_float": FLOAT_COUNT,
    "cosine_t_max_float": FLOAT_COUNT,
    "cosine_t_max_negative": "a negative period acts as its absolute value",
    "cosine_eta_min_negative": NEGATIVE_RATES,
    "warm_restarts_eta_min_negative": NEGATIVE_RATES,
    "cyclic_base_lr_negative": NEGATIVE_RATES,
    "cyclic_max_lr_negative": NEGATIVE_RATES,
    "cyclic_step_size_up_negative": "negative step sizes",
    "cyclic_step_size_down_negative": "negative step sizes",
    "cyclic_step_sizes_float": FLOAT_COUNT + "; optfree's cycle arithmetic"
                               " is in integers, so that no boundary moves in"
                               " float32",
    "cyclic_exp_range_gamma_negative": SIGN_FLIPS,
    "cyclic_momentum_above_1": "a momentum above 1 (Adam's betas[0] >= 1)",
    "onecycle_max_lr_negative": NEGATIVE_RATES,
    "onecycle_div_factor_negative": NEGATIVE_RATES,
    "onecycle_final_div_factor_negative": NEGATIVE_RATES,
    "onecycle_momentum_negative": "a negative momentum",
    "sequential_decreasing_milestones": "torch bisects the milestones as a"
                                        " sorted list: [6, 3] acts as [3, 3]",
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_input_raises_and_torch_fails_too_or_is_listed(name):
  case = REJECTED[name]
  with pytest.raises(ValueError):
    build(case["spec"])
  if name in REJECTED_THOUGH_TORCH_ACCEPTS:
    assert "values" in case, f"torch now fails on {name}: {case}"
  else:
    assert "error" in case, f"torch accepts {name}: {case}"


def test_the_named_torch_inputs_of_issue_14_are_golden_cases():
  for name in ("multistep_repeated", "sequential_repeated_milestones",
               "cyclic_sawtooth", "onecycle_three_phase_pct_above_half"):
    assert name in CASES


# --- Integer hyperparameters larger than the count's dtype -----------------

LARGE = [2**30 + 1, 2**31 - 1, 2**31, 10**10]
# Counts near the int32 maximum, where count + 1 or 2 * count overflow.
COUNTS = np.array([0, 1, 7, 10**9, 2**31 - 2, 2**31 - 1])


def large_integer_cases(n):
  return {
      "step": S.step_schedule(1.0, step_size=n),
      "multistep": S.multistep_schedule(1.0, [10, n, n]),
      "constant_factor": S.constant_factor_schedule(1.0, total_steps=n),
      "linear_factor": S.linear_factor_schedule(1.0, total_steps=n),
      "polynomial": S.polynomial_decay_schedule(1.0, total_steps=n, power=2.0),
      "cosine": S.cosine_annealing_schedule(1000.0, t_max=n),
      "warm_restarts": S.cosine_warm_restarts_schedule(1.0, t_0=n),
      "warm_restarts_t_mult": S.cosine_warm_restarts_schedule(1.0, n, 2),
      "warm_restarts_large_t_mult": S.cosine_warm_restarts_schedule(1.0, 3, n),
      "warm_restarts_small": S.cosine_warm_restarts_schedule(1.0, 1, 2),
      "cyclic_up": S.cyclic_schedule(0.1, 1.0, step_size_up=n),
      "cyclic_down": S.cyclic_schedule(0.1, 1.0, 5, n, mode="triangular2"),
      "cyclic_momentum": S.cyclic_momentum_schedule(
          step_size_up=n, mode="exp_range", gamma=0.999),
      "onecycle": S.onecycle_schedule(1.0, total_steps=n),
      "onecycle_momentum": S.onecycle_momentum_schedule(n, three_phase=True),
      "trapezoidal": S.trapezoidal_schedule(0.1, 1.0, n, n),
      "trapezoidal_anneal_start": S.trapezoidal_schedule(0.1, 1.0, 5, n),
      "wsd": S.warmup_stable_decay_schedule(1.0, n),
      "wsd_warmup": S.warmup_stable_decay_schedule(
          1.0, n, warmup_steps=n // 2, decay_steps=n // 4, decay_shape="cosine"),
      "per_epoch": S.per_epoch(S.step_schedule(1.0, 2), steps_per_epoch=n),
      "sequential": S.sequential_schedule(
          [S.exponential_schedule(1.0, 0.5), S.cosine_annealing_schedule(1.0, n),
           S.step_schedule(1.0, 3)],
          [5, n]),
  }


@pytest.mark.parametrize("n", LARGE)
def test_large_integer_hyperparameters_with_int32_counts(n):
  """Without x64 the count is int32 and no Python int may be mixed into its
  arithmetic; the values are those of the same schedules in float64 with
  int64 counts (where the integers fit, and which the golden cases check
  against torch), at float32 rounding."""
  counts = jnp.asarray(COUNTS, jnp.int32)
  float32 = {name: np.asarray(jax.jit(schedule)(counts))
             for name, schedule in large_integer_cases(n).items()}
  with jax.enable_x64(True):
    for name, schedule in large_integer_cases(n).items():
      exact = np.asarray(schedule(jnp.asarray(COUNTS, jnp.int64)))
      assert float32[name].dtype == np.float32
      scale = np.abs(exact).max()
      np.testing.assert_allclose(float32[name], exact, rtol=1e-5,
                                 atol=1e-6 * scale, err_msg=name)


def test_cosine_with_t_max_beyond_int32_is_optax_cosine():
  """The issue's example: optax.cosine_decay_schedule gives 975.53."""
  ours = S.cosine_annealing_schedule(1000.0, t_max=10**10)(10**9)
  theirs = optax.cosine_decay_schedule(1000.0, decay_steps=10**10)(10**9)
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# --- plot -----------------------------------------------------------------


def test_plot_draws_each_schedule_with_its_values():
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cosine = S.cosine_annealing_schedule(0.1, 20)
  onecycle = S.onecycle_schedule(0.1, 50)
  ax = S.plot({"cosine": cosine, "onecycle": onecycle}, 50, title="two")
  lines = ax.get_lines()
  assert [line.get_label() for line in lines] == ["cosine", "onecycle"]
  np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(50))
  np.testing.assert_allclose(lines[1].get_ydata(), onecycle(jnp.arange(50)))
  assert ax.get_title() == "two"
  _, own_ax = plt.subplots()
  assert S.plot(cosine, [0, 5, 10], ax=own_ax) is own_ax
  np.testing.assert_allclose(
      own_ax.get_lines()[0].get_ydata(), cosine(jnp.array([0, 5, 10]))
  )
  plt.close("all")


def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  with pytest.raises(ImportError, match="pip install matplotlib"):
    S.plot(S.step_schedule(0.1, 3), 10)


def _plotted(ax):
  return [(line.get_label(), np.asarray(line.get_ydata()))
          for line in ax.get_lines()]


def test_plot_draws_optax_schedules_next_to_optfree_ones():
  """The issue's call: plot({"x": optax.cosine_onecycle_schedule(1000, 0.1)},
  1000) raised "le got incompatible shapes"."""
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  theirs = optax.cosine_onecycle_schedule(1000, 0.1)
  ours = S.onecycle_schedule(0.1, total_steps=1000)
  ax = S.plot({"x": theirs}, 1000)
  (label, values), = _plotted(ax)
  assert label == "x"
  # Eager and vmapped float32 differ in the last bits.
  np.testing.assert_allclose(values, [theirs(c) for c in range(0, 1000)],
                             rtol=1e-4)
  ax = S.plot({"optax": theirs, "optfree": ours,
               "warmup-cosine": optax.warmup_cosine_decay_schedule(
                   0.0, 0.1, 100, 1000)}, [0, 299, 300, 999])
  curves = dict(_plotted(ax))
  np.testing.assert_allclose(curves["optfree"], ours(jnp.array([0, 299, 300,
                                                                999])))
  # optax peaks one update after torch (and optfree).
  assert curves["optax"][1] < curves["optfree"][1] == pytest.approx(0.1)
  assert curves["optax"][2] == pytest.approx(0.1)
  plt.close("all")


def test_plot_draws_python_functions_of_the_count():
  matplotlib = pytest.importorskip("matplotlib")
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  branching = lambda count: 0.1 if count < 5 else 0.01  # noqa: E731
  ax = S.plot([branching, lambda count: 0.5], 8)
  (_, steps), (_, constant) = _plotted(ax)
  np.testing.assert_allclose(steps, [0.1] * 5 + [0.01] * 3)
  np.testing.assert_allclose(constant, [0.5] * 8)
  plt.close("all")
