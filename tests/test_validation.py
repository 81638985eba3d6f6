"""Bad hyperparameters fail at construction; valid edge values work.

The tables below are the "Bad input" lists of the issues (Schedule-Free,
AdaBound/Lion, schedules) and docs/design.md, written out per public constructor.
Every out-of-range value must raise ``ValueError`` when the optimizer or
schedule is built (not at its first step), with a message naming the argument
and the value. Every valid edge value must build and give finite numbers.
"""

import dataclasses
import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree

NAN = float("nan")


def _wrapper(*, learning_rate=1.0, b1=0.9, weight_lr_power=2.0, r=0.0,
             weight_decay_at_y=0.0, rounding="nearest", seed=0):
  """``optfree.schedule_free`` over plain SGD, with its checked arguments."""
  return optfree.schedule_free(
      optax.sgd(1.0), learning_rate, b1=b1, weight_lr_power=weight_lr_power,
      r=r, weight_decay_at_y=weight_decay_at_y, rounding=rounding, seed=seed)


def _stochastic_rounding(*, seed=0):
  """``optfree.stochastic_rounding`` over plain SGD."""
  return optfree.stochastic_rounding(optax.sgd(1.0), seed=seed)


# Out-of-range values per argument, from the issues' "Bad input" lists. NaN is
# out of every range. A constructor is checked on those of its arguments that
# appear here.
SCHEDULE_FREE_BAD = {
    "learning_rate": [-1e-3, NAN],
    "b1": [0.0, 1.0, -0.1, 1.5, NAN],
    "b2": [-0.1, 1.0, NAN],
    "eps": [-1e-8, NAN],
    "warmup_steps": [-1, 2.5],
    "r": [-1.0, NAN],
    "weight_lr_power": [-0.5, NAN],
    "weight_decay": [-1e-4, NAN],
    "weight_decay_at_y": [-1e-4, NAN],
}
ADABOUND_BAD = {
    "learning_rate": [-1e-3, NAN],
    "final_lr": [-0.1, NAN],
    "gamma": [0.0, -1e-3, NAN],
    "b1": [-0.1, 1.0, NAN],
    "b2": [-0.1, 1.0, NAN],
    "eps": [-1e-8, NAN],
    "weight_decay": [-1e-4, NAN],
}
LION_BAD = {
    "learning_rate": [-1e-4, NAN],
    "b1": [-0.1, 1.1, NAN],
    "b2": [-0.1, 1.0, NAN],
    "weight_decay": [-1e-2, NAN],
}
# Every optimizer takes these (optfree.rounding).
ROUNDING_BAD = {
    "rounding": ["up", "Stochastic", None],
    "seed": [-1, 2**32, 1.5],
}
SCHEDULE_FREE_BAD.update(ROUNDING_BAD)
ADABOUND_BAD.update(ROUNDING_BAD)
LION_BAD.update(ROUNDING_BAD)
OPTIMIZER_RULES = {
    "schedule_free_sgd": (optfree.schedule_free_sgd, SCHEDULE_FREE_BAD),
    "schedule_free_adamw": (optfree.schedule_free_adamw, SCHEDULE_FREE_BAD),
    "schedule_free_radam": (optfree.schedule_free_radam, SCHEDULE_FREE_BAD),
    "schedule_free": (_wrapper, SCHEDULE_FREE_BAD),
    "scale_by_adabound": (optfree.scale_by_adabound, ADABOUND_BAD),
    "adabound": (optfree.adabound, ADABOUND_BAD),
    "amsbound": (optfree.amsbound, ADABOUND_BAD),
    "adaboundw": (optfree.adaboundw, ADABOUND_BAD),
    "scale_by_lion": (optfree.scale_by_lion, LION_BAD),
    "lion": (optfree.lion, LION_BAD),
    "stochastic_rounding": (_stochastic_rounding, ROUNDING_BAD),
}


@dataclasses.dataclass(frozen=True)
class Bad:
  """``factory(**kwargs, **overrides)`` must raise naming ``argument``."""
  constructor: str
  factory: Callable[..., Any]
  overrides: dict[str, Any]
  argument: str
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def id(self):
    shown = ",".join(f"{k}={v!r}" for k, v in self.overrides.items())
    return f"{self.constructor}-{shown}"


# A state kept in an integer dtype rounds every update away, silently.
DTYPE_BAD = {
    "state_dtype": [jnp.int32, "bool", jnp.complex64, "not a dtype"],
    "mu_dtype": [jnp.int8, "uint16", jnp.complex64],
}


def _optimizer_cases():
  cases = []
  for constructor, (factory, rules) in OPTIMIZER_RULES.items():
    parameters = inspect.signature(factory).parameters
    for argument, values in {**rules, **DTYPE_BAD}.items():
      if argument in parameters:
        cases.extend(Bad(constructor, factory, {argument: value}, argument)
                     for value in values)
  return cases


S = optfree.schedules
_CONSTANT = optax.constant_schedule(0.1)


def _schedule_cases():
  table = [
      (S.step_schedule, dict(init_value=0.1, step_size=3, gamma=0.5), {
          "init_value": [-0.1, NAN], "step_size": [0, -1, 2.5],
          "gamma": [-0.5, NAN]}),
      (S.multistep_schedule,
       dict(init_value=0.1, milestones=[2, 5], gamma=0.5), {
          "init_value": [-0.1], "milestones": [[2, 4.5]],
          "gamma": [-0.5]}),
      (S.exponential_schedule, dict(init_value=0.1, gamma=0.9), {
          "init_value": [-0.1], "gamma": [-0.9, NAN]}),
      (S.constant_factor_schedule,
       dict(init_value=0.1, factor=0.5, total_steps=4), {
          "init_value": [-0.1], "factor": [-0.5, NAN], "total_steps": [2.5]}),
      (S.linear_factor_schedule,
       dict(init_value=0.1, start_factor=0.5, end_factor=1.0, total_steps=4), {
           "init_value": [-0.1], "start_factor": [-0.5], "end_factor": [-0.5],
           "total_steps": [2.5]}),
      (S.polynomial_decay_schedule,
       dict(init_value=0.1, total_steps=4, power=1.0), {
          "init_value": [-0.1], "total_steps": [2.5]}),
      (S.cosine_annealing_schedule,
       dict(init_value=0.1, t_max=4, eta_min=0.0), {
          "init_value": [-0.1], "t_max": [0, -1], "eta_min": [-0.01]}),
      (S.cosine_warm_restarts_schedule,
       dict(init_value=0.1, t_0=3, t_mult=2, eta_min=0.0), {
           "init_value": [-0.1], "t_0": [0, -3], "t_mult": [0, 1.5],
           "eta_min": [-0.01]}),
      (S.cyclic_schedule,
       dict(base_lr=0.01, max_lr=0.1, step_size_up=4, mode="exp_range",
            gamma=0.99), {
           "base_lr": [-0.01], "max_lr": [-0.1], "step_size_up": [0, -4],
           "step_size_down": [-1], "mode": ["cosine", "Triangular"],
           "gamma": [-0.99]}),
      (S.cyclic_momentum_schedule,
       dict(base_momentum=0.8, max_momentum=0.9, step_size_up=4), {
           "base_momentum": [-0.1], "max_momentum": [-0.1],
           "step_size_up": [0], "mode": ["sawtooth"]}),
      (S.onecycle_schedule, dict(max_lr=0.1, total_steps=20), {
          "max_lr": [-0.1], "total_steps": [0, -1],
          "pct_start": [1.5, -0.1, 0.05],
          "anneal_strategy": ["cosine"], "div_factor": [0.0, -25.0],
          "final_div_factor": [0.0, -1e4]}),
      (S.onecycle_momentum_schedule, dict(total_steps=20), {
          "total_steps": [0], "pct_start": [1.5, 0.05],
          "anneal_strategy": ["exp"], "base_momentum": [-0.1],
          "max_momentum": [-0.1]}),
      (S.trapezoidal_schedule,
       dict(base_lr=0.01, max_lr=0.1, step_size=3, anneal_start=8), {
           "base_lr": [-0.01], "max_lr": [-0.1], "step_size": [0, -3],
           "anneal_start": [-1]}),
      (S.warmup_stable_decay_schedule,
       dict(peak_value=0.1, total_steps=20, warmup_steps=2, decay_steps=4), {
           "peak_value": [-0.1], "total_steps": [0, -20],
           "warmup_steps": [-1, 19], "decay_steps": [-1, 19],
           "init_value": [-0.1], "end_value": [-0.1],
           "decay_shape": ["exponential", "sqrt"]}),
      (S.per_epoch, dict(schedule=_CONSTANT, steps_per_epoch=3), {
          "steps_per_epoch": [0, -1]}),
      (S.sequential_schedule,
       dict(schedules=[_CONSTANT, _CONSTANT, _CONSTANT], milestones=[3, 6]), {
           "milestones": [[6, 3], [3], [3, 6, 9]]}),
  ]
  cases = []
  for factory, kwargs, rules in table:
    for argument, values in rules.items():
      cases.extend(Bad(factory.__name__, factory, {argument: value}, argument,
                       kwargs)
                   for value in values)
  # warmup_steps + decay_steps > total_steps, each fine on its own.
  cases.append(Bad("warmup_stable_decay_schedule",
                   S.warmup_stable_decay_schedule,
                   dict(warmup_steps=10, decay_steps=11), "decay_steps",
                   dict(peak_value=0.1, total_steps=20)))
  return cases


BAD_CASES = _optimizer_cases() + _schedule_cases()


def _names_value(message, value):
  if isinstance(value, float) and math.isnan(value):
    return "nan" in message.lower()
  shown = [repr(value), str(value)]
  if isinstance(value, list):
    shown.append(repr(tuple(value)))
  return any(text in message for text in shown)


@pytest.mark.parametrize("case", BAD_CASES, ids=[case.id for case in BAD_CASES])
def test_out_of_range_raises_at_construction_naming_argument_and_value(case):
  with pytest.raises(ValueError) as info:
    case.factory(**{**case.kwargs, **case.overrides})
  message = str(info.value)
  argument, value = case.argument, case.overrides.get(case.argument)
  if argument not in case.overrides:  # a rule on two arguments together
    argument, value = next(iter(case.overrides.items()))
    assert case.argument in message or argument in message, message
  else:
    assert argument in message, message
  assert _names_value(message, value), message


def test_every_public_constructor_is_in_a_table():
  # A new public optimizer or schedule must get its validation rules here.
  checked = set(OPTIMIZER_RULES) | {case.constructor for case in BAD_CASES}
  # Constructors only: not eval_params, nor the state NamedTuples.
  public = {name for name in optfree.__all__
            if callable(getattr(optfree, name)) and name != "eval_params"
            and not name.endswith("State")}
  assert public <= checked, public - checked


# Valid edge values ------------------------------------------------------------

PARAMS = {"kernel": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3),
          "bias": jnp.full((3,), 0.5, jnp.float32)}
GRADIENTS = [jax.tree.map(lambda p, i=i: jnp.cos(p * (i + 2.0)) + 0.1, PARAMS)
             for i in range(3)]
WARMUP_FROM_ZERO = optax.linear_schedule(0.0, 0.1, 5)

OPTIMIZER_EDGES = [
    # (constructor, kwargs, params must stay exactly where they are)
    ("schedule_free_sgd", dict(weight_decay=0.0, warmup_steps=0, r=0.0), False),
    ("schedule_free_sgd", dict(weight_lr_power=0.0), False),
    ("schedule_free_sgd", dict(learning_rate=0.0), True),
    ("schedule_free_sgd", dict(learning_rate=WARMUP_FROM_ZERO), False),
    ("schedule_free_sgd", dict(b1=1e-3, warmup_steps=1), False),
    ("schedule_free_adamw", dict(b2=0.0, warmup_steps=0, weight_decay=0.0),
     False),
    ("schedule_free_adamw", dict(eps=0.0), False),
    ("schedule_free_adamw", dict(learning_rate=0.0, warmup_steps=3), True),
    ("schedule_free_adamw", dict(learning_rate=WARMUP_FROM_ZERO), False),
    # b2=0 keeps RAdam's rho_t at 1 <= 4: the SGD phase lasts forever, silent
    # (no step at all, as the reference) unless silent_sgd_phase=False.
    ("schedule_free_radam", dict(b2=0.0), True),
    ("schedule_free_radam", dict(b2=0.0, silent_sgd_phase=False), False),
    ("schedule_free_radam", dict(silent_sgd_phase=False, r=0.0), False),
    ("schedule_free_radam", dict(learning_rate=0.0), True),
    ("schedule_free", dict(weight_decay_at_y=0.0, r=0.0, weight_lr_power=0.0),
     False),
    ("schedule_free", dict(learning_rate=WARMUP_FROM_ZERO), False),
    ("scale_by_adabound", dict(b1=0.0, b2=0.0), False),
    ("adabound", dict(weight_decay=0.0, eps=0.0), False),
    ("adabound", dict(final_lr=0.0), True),
    ("adabound", dict(gamma=1.0, learning_rate=optax.exponential_decay(
        1e-2, 2, 0.5)), False),
    ("amsbound", dict(b1=0.0, b2=0.0, weight_decay=0.0), False),
    ("adaboundw", dict(weight_decay=0.0, final_lr=0.0), True),
    ("scale_by_lion", dict(b1=0.0, b2=0.0), False),
    ("lion", dict(b1=1.0, weight_decay=0.0), False),
    ("lion", dict(learning_rate=0.0, weight_decay=0.1), True),
]


def _run(tx):
  @jax.jit
  def step(params, state, gradient):
    updates, state = tx.update(gradient, state, params)
    return optax.apply_updates(params, updates), state

  params, state = PARAMS, tx.init(PARAMS)
  for gradient in GRADIENTS:
    params, state = step(params, state, gradient)
  return params


@pytest.mark.parametrize(
    "constructor, kwargs, frozen", OPTIMIZER_EDGES,
    ids=[f"{c}-{','.join(k)}" for c, k, _ in OPTIMIZER_EDGES])
def test_valid_edge_values_construct_and_step(constructor, kwargs, frozen):
  params = _run(OPTIMIZER_RULES[constructor][0](**kwargs))
  for name, leaf in params.items():
    assert leaf.dtype == PARAMS[name].dtype
    assert np.all(np.isfinite(leaf)), (name, leaf)
  moved = any(not np.array_equal(params[name], PARAMS[name]) for name in params)
  # A zero learning rate (or a zero final_lr, which clips every step to 0)
  # must leave the params exactly in place: no NaN from a zero weight sum.
  assert moved != frozen


@pytest.mark.parametrize("constructor", OPTIMIZER_RULES)
def test_defaults_construct_and_step(constructor):
  params = _run(OPTIMIZER_RULES[constructor][0]())
  assert all(np.all(np.isfinite(leaf)) for leaf in params.values())


SCHEDULE_EDGES = [
    (S.step_schedule, dict(init_value=0.1, step_size=1, gamma=1.0)),
    (S.multistep_schedule, dict(init_value=0.1, milestones=[])),
    (S.multistep_schedule, dict(init_value=0.1, milestones=[0, 1])),
    (S.exponential_schedule, dict(init_value=0.1, gamma=1.0)),
    (S.exponential_schedule, dict(init_value=0.0, gamma=0.5)),
    (S.constant_factor_schedule,
     dict(init_value=0.1, factor=0.0, total_steps=1)),
    (S.constant_factor_schedule, dict(init_value=0.1, factor=1.0)),
    (S.linear_factor_schedule,
     dict(init_value=0.1, start_factor=1.0, end_factor=0.0, total_steps=1)),
    (S.polynomial_decay_schedule,
     dict(init_value=0.1, total_steps=1, power=0.0)),
    (S.cosine_annealing_schedule, dict(init_value=0.1, t_max=1, eta_min=0.1)),
    (S.cosine_warm_restarts_schedule, dict(init_value=0.1, t_0=1, t_mult=1)),
    (S.cosine_warm_restarts_schedule, dict(init_value=0.1, t_0=1, t_mult=3)),
    (S.cyclic_schedule, dict(base_lr=0.1, max_lr=0.1, step_size_up=1)),
    (S.cyclic_schedule,
     dict(base_lr=0.0, max_lr=0.1, step_size_up=1, step_size_down=1,
          mode="triangular2")),
    (S.cyclic_schedule,
     dict(base_lr=0.0, max_lr=0.1, step_size_up=2, mode="exp_range",
          gamma=1.0)),
    (S.cyclic_momentum_schedule,
     dict(step_size_up=1, mode="exp_range", gamma=1.0)),
    # Each phase needs an update: pct_start * total_steps > 1 (three-phase:
    # also < (total_steps + 1) / 2), where torch would divide by zero at = 1.
    (S.onecycle_schedule, dict(max_lr=0.1, total_steps=4)),
    (S.onecycle_schedule,
     dict(max_lr=0.1, total_steps=20, pct_start=0.06, anneal_strategy="linear",
          three_phase=True)),
    (S.onecycle_momentum_schedule, dict(total_steps=20, pct_start=0.5,
                                        three_phase=True)),
    (S.trapezoidal_schedule, dict(base_lr=0.0, max_lr=0.1, step_size=1,
                                  anneal_start=1)),
    (S.warmup_stable_decay_schedule, dict(peak_value=0.1, total_steps=1)),
    (S.warmup_stable_decay_schedule,
     dict(peak_value=0.1, total_steps=10, warmup_steps=0, decay_steps=0)),
    (S.warmup_stable_decay_schedule,
     dict(peak_value=0.1, total_steps=10, warmup_steps=4, decay_steps=6,
          decay_shape="1-sqrt")),
    (S.warmup_stable_decay_schedule,
     dict(peak_value=0.1, total_steps=10, warmup_steps=10, decay_steps=0,
          decay_shape="cosine")),
    (S.per_epoch, dict(schedule=_CONSTANT, steps_per_epoch=1)),
    (S.sequential_schedule, dict(schedules=[_CONSTANT], milestones=[])),
]


@pytest.mark.parametrize(
    "factory, kwargs", SCHEDULE_EDGES,
    ids=[f"{factory.__name__}-{index}"
         for index, (factory, _) in enumerate(SCHEDULE_EDGES)])
def test_schedule_edge_values_give_finite_non_negative_values(factory, kwargs):
  schedule = factory(**kwargs)
  counts = jnp.arange(0, 40)
  values = np.asarray(jax.jit(jax.vmap(schedule))(counts))
  assert values.shape == (40,)
  assert np.all(np.isfinite(values)), values
  assert np.all(values >= 0), values
  np.testing.assert_allclose(values[:3], [float(schedule(c)) for c in range(3)],
                             rtol=1e-6)
