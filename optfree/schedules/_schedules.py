"""torch.optim.lr_scheduler's schedules, and a few newer ones, as pure functions.

Each constructor validates its hyperparameters and returns ``schedule(count)``.
``count`` is the number of updates already applied; the value is the one that
update uses. Integer arithmetic decides everything discrete (which cycle, which
phase, which milestone) so that float32 does not move a boundary, and no Python
branch looks at ``count``, so the schedules trace under ``jit`` and ``vmap``.

Where torch updates the learning rate recursively (the "chainable" form of
StepLR, CosineAnnealingLR, PolynomialLR, LinearLR, ...), these are the closed
forms; the two agree to a few float64 ulps per step (the tests hold them to
1e-9 relative against values stepped out of torch itself).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

import jax
import jax.numpy as jnp

from optfree._checks import check_choice
from optfree._checks import check_int
from optfree._checks import check_interval
from optfree._checks import check_non_negative
from optfree._checks import check_number
from optfree._checks import check_positive
from optfree._checks import REFERENCE_NAMES
from optfree._checks import reference_names

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]
_Constructor = TypeVar("_Constructor", bound=Callable[..., Schedule])


def _torch_names(constructor: _Constructor) -> _Constructor:
  """torch's keyword names (``T_max``, ``total_iters``) get a TypeError that
  gives optfree's (``t_max``, ``total_steps``); see the porting table."""
  return reference_names(**REFERENCE_NAMES[constructor.__name__])(constructor)


def _float_dtype() -> jnp.dtype:
  # Looked up at call time so that a schedule built outside `jax.enable_x64`
  # still returns float64 when called inside it.
  return jax.dtypes.canonicalize_dtype(jnp.float64)


def _as_float(value: jax.typing.ArrayLike) -> jax.Array:
  return jnp.asarray(value, _float_dtype())


def _int_max(count: jax.Array) -> int | float:
  """The largest value of ``count``'s integer dtype (static under ``jit``).

  Integer hyperparameters are Python ints of any size, while counts are int32
  without x64: each schedule compares a hyperparameter with this bound in
  Python (never with the traced count) and takes the branch that cannot
  overflow, so that ``t_max=10**10`` works with int32 counts.
  """
  if jnp.issubdtype(count.dtype, jnp.integer):
    return int(jnp.iinfo(count.dtype).max)
  return math.inf


def _fits(count: jax.Array, value) -> bool:
  """Whether an integer hyperparameter can meet ``count`` in its dtype.

  A traced hyperparameter already has a dtype, so it fits by definition.
  """
  return not isinstance(value, int) or value <= _int_max(count)


def _floor_div(count: jax.Array, divisor: int) -> jax.Array:
  """``count // divisor`` for an integer ``divisor >= 1`` of any size."""
  if _fits(count, divisor):
    return count // divisor
  # |count| < divisor: 0 for counts >= 0, -1 below.
  return -(count < 0).astype(count.dtype)


def _less(count: jax.Array, bound: int) -> jax.Array:
  """``count < bound`` for an integer ``bound`` of any size."""
  if _fits(count, bound):
    return count < bound
  return jnp.ones(jnp.shape(count), bool)


def _clip(count: jax.Array, low: int, high: int) -> jax.Array:
  """``clip(count, low, high)`` for ``0 <= low <= high`` of any size.

  No count exceeds its dtype's maximum, so a larger bound clips nothing and
  is lowered to it.
  """
  if _fits(count, high):
    return jnp.clip(count, low, high)
  return jnp.clip(count, low, _int_max(count))


def _fraction_left(count: jax.Array, total: int) -> jax.Array:
  """``(total - clip(count, 0, total)) / total`` as a float, for ``total >= 1``.

  In integers where ``total`` fits the count's dtype, so the last value is
  exactly 0; in floats otherwise (the count never reaches such a total).
  """
  done = _clip(count, 0, total)
  if _fits(count, total):
    return _as_float(total - done) / _as_float(total)
  return (_as_float(total) - _as_float(done)) / _as_float(total)


def _check_numbers(**values) -> None:
  """Raises ValueError, naming the argument, for any that is not a number.

  A schedule passed where a number goes (``onecycle_schedule(schedule,
  total_steps=100)``) would otherwise be accepted here and fail with an
  unrelated error when the schedule is first evaluated; the message says how
  to combine schedules instead.
  """
  for name, value in values.items():
    check_number(name, value)


def _check_count(name: str, value, minimum: float = -math.inf):
  """Validates an integer hyperparameter; returns it as a Python int.

  numpy integers become Python ints, which the overflow-safe helpers above
  compare with the count's dtype; a tracer is returned as it is.
  """
  check_number(name, value)
  check_int(name, value, minimum)
  return value if isinstance(value, jax.core.Tracer) else int(value)


def _check_milestones(name: str, milestones: Sequence[int]) -> tuple:
  milestones = tuple(milestones)
  try:
    return tuple(_check_count(f"{name}[{index}]", milestone)
                 for index, milestone in enumerate(milestones))
  except ValueError as error:
    raise ValueError(f"{error} (in {name}={milestones!r})") from None


@_torch_names
def step_schedule(
    init_value: float, step_size: int, gamma: float = 0.1
) -> Schedule:
  r"""Decays by ``gamma`` every ``step_size`` updates (torch ``StepLR``).

  .. math::
    \eta_t = \eta_0 \, \gamma^{\lfloor t / \mathrm{step\_size} \rfloor}

  Args:
    init_value: the initial learning rate :math:`\eta_0` (>= 0).
    step_size: updates between two decays (integer >= 1).
    gamma: the multiplicative decay (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `StepLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html>`_

  Example:
    >>> from optfree.schedules import step_schedule
    >>> schedule = step_schedule(1.0, step_size=2, gamma=0.5)
    >>> [float(schedule(t)) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
  """
  _check_numbers(init_value=init_value, gamma=gamma)
  check_non_negative("init_value", init_value)
  step_size = _check_count("step_size", step_size, 1)
  check_non_negative("gamma", gamma)

  def schedule(count):
    decays = _as_float(_floor_div(jnp.asarray(count), step_size))
    return _as_float(init_value * jnp.power(gamma, decays))

  return schedule


@_torch_names
def multistep_schedule(
    init_value: float, milestones: Sequence[int], gamma: float = 0.1
) -> Schedule:
  r"""Decays by ``gamma`` at each milestone (torch ``MultiStepLR``).

  .. math::
    \eta_t = \eta_0 \, \gamma^{\#\{m \in \mathrm{milestones} : m \le t\}}

  Args:
    init_value: the initial learning rate :math:`\eta_0` (>= 0).
    milestones: update counts (integers) at which the decay applies, in any
      order; a count listed ``k`` times decays by ``gamma ** k`` (as torch's
      ``Counter`` of milestones), and a negative one never applies.
    gamma: the multiplicative decay (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `MultiStepLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html>`_

  Example:
    >>> from optfree.schedules import multistep_schedule
    >>> schedule = multistep_schedule(1.0, milestones=[2, 3], gamma=0.1)
    >>> [round(float(schedule(t)), 4) for t in range(5)]
    [1.0, 1.0, 0.1, 0.01, 0.01]
  """
  _check_numbers(init_value=init_value, gamma=gamma)
  check_non_negative("init_value", init_value)
  milestones = _check_milestones("milestones", tuple(milestones))
  check_non_negative("gamma", gamma)
  # torch counts the milestones (a Counter) and decays by gamma ** multiplicity
  # when its count reaches one; a negative milestone is never reached.
  milestones = tuple(sorted(m for m in milestones if m >= 0))

  def schedule(count):
    count = jnp.asarray(count)
    passed = jnp.zeros(jnp.shape(count), jnp.int32)
    for milestone in milestones:
      passed = passed + ~_less(count, milestone)
    return _as_float(init_value * jnp.power(gamma, _as_float(passed)))

  return schedule


@_torch_names
def exponential_schedule(init_value: float, gamma: float) -> Schedule:
  r"""Decays by ``gamma`` every update (torch ``ExponentialLR``).

  .. math::
    \eta_t = \eta_0 \, \gamma^t

  Args:
    init_value: the initial learning rate :math:`\eta_0` (>= 0).
    gamma: the multiplicative decay per update (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `ExponentialLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ExponentialLR.html>`_

  Example:
    >>> from optfree.schedules import exponential_schedule
    >>> schedule = exponential_schedule(1.0, gamma=0.5)
    >>> [float(schedule(t)) for t in range(4)]
    [1.0, 0.5, 0.25, 0.125]
  """
  _check_numbers(init_value=init_value, gamma=gamma)
  check_non_negative("init_value", init_value)
  check_non_negative("gamma", gamma)

  def schedule(count):
    return _as_float(init_value * jnp.power(gamma, _as_float(count)))

  return schedule


@_torch_names
def constant_factor_schedule(
    init_value: float, factor: float = 1.0 / 3, total_steps: int = 5
) -> Schedule:
  r"""Scales by ``factor`` for the first ``total_steps`` updates (torch ``ConstantLR``).

  .. math::
    \eta_t = \eta_0 \cdot (\mathrm{factor} \text{ if } t < \mathrm{total\_steps}
    \text{ else } 1)

  Args:
    init_value: the learning rate :math:`\eta_0` after ``total_steps`` (>= 0).
    factor: the scale of the first ``total_steps`` updates, in [0, 1].
    total_steps: how many updates are scaled (integer); with ``<= 0`` every
      update is scaled, as torch does (it applies ``factor`` at count 0 and
      would undo it only at count ``total_steps``).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `ConstantLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ConstantLR.html>`_

  Example:
    >>> from optfree.schedules import constant_factor_schedule
    >>> schedule = constant_factor_schedule(1.0, factor=0.5, total_steps=2)
    >>> [float(schedule(t)) for t in range(4)]
    [0.5, 0.5, 1.0, 1.0]
  """
  _check_numbers(init_value=init_value, factor=factor)
  check_non_negative("init_value", init_value)
  check_interval("factor", factor, 0.0, 1.0)
  total_steps = _check_count("total_steps", total_steps, -math.inf)

  def schedule(count):
    count = jnp.asarray(count)
    if total_steps <= 0:
      return _as_float(init_value * factor * jnp.ones(jnp.shape(count)))
    scale = jnp.where(_less(count, total_steps), factor, 1.0)
    return _as_float(init_value * scale)

  return schedule


@_torch_names
def linear_factor_schedule(
    init_value: float,
    start_factor: float = 1.0 / 3,
    end_factor: float = 1.0,
    total_steps: int = 5,
) -> Schedule:
  r"""Scales by a factor moving linearly over ``total_steps`` (torch ``LinearLR``).

  .. math::
    \eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)

  with :math:`s` = ``start_factor``, :math:`e` = ``end_factor``, :math:`T` =
  ``total_steps``. Not ``optax.linear_schedule``: under ``jit`` XLA turns its
  ``1 - count / T`` into ``1 - count * (1 / T)``, so with ``end_factor=0`` it
  ends at about -1e-17 instead of 0. Here the remaining fraction is
  ``(T - min(t, T)) / T``, exactly 0 at the end.

  Args:
    init_value: the learning rate :math:`\eta_0` that the factors scale (>= 0).
    start_factor: the factor of the first update, in (0, 1].
    end_factor: the factor from update ``total_steps`` on, in [0, 1].
    total_steps: the length of the ramp (integer); with ``<= 0`` the factor
      stays ``start_factor``, as torch does.

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `LinearLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.LinearLR.html>`_

  Example:
    >>> from optfree.schedules import linear_factor_schedule
    >>> schedule = linear_factor_schedule(1.0, start_factor=0.25, total_steps=3)
    >>> [float(schedule(t)) for t in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
  """
  _check_numbers(init_value=init_value, start_factor=start_factor,
                 end_factor=end_factor)
  check_non_negative("init_value", init_value)
  check_interval("start_factor", start_factor, 0.0, 1.0, low_closed=False)
  check_interval("end_factor", end_factor, 0.0, 1.0)
  total_steps = _check_count("total_steps", total_steps, -math.inf)

  def schedule(count):
    count = jnp.asarray(count)
    if total_steps <= 0:
      return _as_float(init_value * start_factor * jnp.ones(jnp.shape(count)))
    fraction = _fraction_left(count, total_steps)
    factor = end_factor + (start_factor - end_factor) * fraction
    return _as_float(init_value * factor)

  return schedule


@_torch_names
def polynomial_decay_schedule(
    init_value: float, total_steps: int = 5, power: float = 1.0
) -> Schedule:
  r"""Decays polynomially to zero over ``total_steps`` updates (torch ``PolynomialLR``).

  .. math::
    \eta_t = \eta_0 \left(1 - \frac{\min(t, T)}{T}\right)^{p}

  Not ``optax.polynomial_schedule`` (``end_value=0``), which returns NaN at
  and after ``total_steps`` under ``jit`` for a fractional power: XLA turns its
  ``1 - count / T`` into ``1 - count * (1 / T)``, a tiny negative number. Here
  the remaining fraction is ``(T - min(t, T)) / T``, exactly 0 at the end.

  Args:
    init_value: the initial learning rate :math:`\eta_0` (>= 0).
    total_steps: :math:`T`, after which the value stays 0 (integer); with
      ``<= 0`` the value stays ``init_value``, as torch does.
    power: the exponent :math:`p` (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `PolynomialLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.PolynomialLR.html>`_

  Example:
    >>> from optfree.schedules import polynomial_decay_schedule
    >>> schedule = polynomial_decay_schedule(1.0, total_steps=4, power=2.0)
    >>> [float(schedule(t)) for t in range(6)]
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
  """
  _check_numbers(init_value=init_value, power=power)
  check_non_negative("init_value", init_value)
  total_steps = _check_count("total_steps", total_steps, -math.inf)
  check_non_negative("power", power)

  def schedule(count):
    count = jnp.asarray(count)
    if total_steps <= 0:
      return _as_float(init_value * jnp.ones(jnp.shape(count)))
    fraction = _fraction_left(count, total_steps)
    return _as_float(init_value * jnp.power(fraction, power))

  return schedule


@_torch_names
def cosine_annealing_schedule(
    init_value: float, t_max: int, eta_min: float = 0.0
) -> Schedule:
  r"""Cosine annealing that keeps going past ``t_max`` (torch ``CosineAnnealingLR``).

  .. math::
    \eta_t = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
    \left(1 + \cos\frac{\pi t}{T_{\max}}\right)

  for every :math:`t`: after ``t_max`` the value climbs back to ``init_value``
  at ``2 t_max`` and so on (period ``2 t_max``), which is what torch's
  recursive update does. ``optax.cosine_decay_schedule`` instead holds the
  minimum after its ``decay_steps``.

  Args:
    init_value: the starting (maximum) learning rate :math:`\eta_0` (>= 0).
    t_max: :math:`T_{\max}`, updates from maximum to minimum (integer >= 1).
    eta_min: the minimum :math:`\eta_{\min}` (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `CosineAnnealingLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CosineAnnealingLR.html>`_
    Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts <https://arxiv.org/abs/1608.03983>`_, 2017

  Example:
    >>> from optfree.schedules import cosine_annealing_schedule
    >>> schedule = cosine_annealing_schedule(1.0, t_max=2)
    >>> [round(float(schedule(t)), 4) for t in range(6)]
    [1.0, 0.5, 0.0, 0.5, 1.0, 0.5]
  """
  _check_numbers(init_value=init_value, eta_min=eta_min)
  check_non_negative("init_value", init_value)
  t_max = _check_count("t_max", t_max, 1)
  check_non_negative("eta_min", eta_min)

  def schedule(count):
    # Reducing modulo the period in integers keeps the cosine's argument
    # small, hence exact periodicity and full float32 precision at any count.
    # A period beyond the count's dtype is never completed (and the cosine is
    # even, so a negative count needs no reduction either).
    count = jnp.asarray(count)
    period = 2 * t_max
    phase = _as_float(count % period if _fits(count, period) else count)
    cosine = (1 + jnp.cos(jnp.pi * phase / _as_float(t_max))) / 2
    return _as_float(eta_min + (init_value - eta_min) * cosine)

  return schedule


@_torch_names
def cosine_warm_restarts_schedule(
    init_value: float, t_0: int, t_mult: int = 1, eta_min: float = 0.0
) -> Schedule:
  r"""Cosine annealing with warm restarts, SGDR (torch ``CosineAnnealingWarmRestarts``).

  .. math::
    \eta_t = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
    \left(1 + \cos\frac{\pi\, T_{cur}}{T_i}\right)

  Cycle :math:`i` lasts :math:`T_i = T_0\, m^i` updates and starts at
  :math:`S_i = T_0 (m^i - 1)/(m - 1)` (:math:`S_i = i\,T_0` when
  :math:`m = 1`); :math:`T_{cur} = t - S_i`. With :math:`m > 1` the cycle
  starts that the count's dtype can hold (at most 31 for int32, 63 for int64)
  form a table of exact integers; the cycle of ``count`` is found in it by
  binary search, so :math:`T_{cur}` is exact at every count and float32
  rounds only the ratio :math:`T_{cur}/T_i`. The restarts go on to the end of
  the dtype (``optax.sgdr_schedule`` needs a list of cycles and stays at its
  last value once the list is used up).

  Args:
    init_value: the learning rate :math:`\eta_0` at each restart (>= 0).
    t_0: :math:`T_0`, the length of the first cycle (integer >= 1).
    t_mult: :math:`m`, the growth of the cycle length (integer >= 1).
    eta_min: the minimum :math:`\eta_{\min}` (>= 0).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `CosineAnnealingWarmRestarts <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CosineAnnealingWarmRestarts.html>`_
    Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts <https://arxiv.org/abs/1608.03983>`_, 2017

  Example:
    >>> from optfree.schedules import cosine_warm_restarts_schedule
    >>> schedule = cosine_warm_restarts_schedule(1.0, t_0=2, t_mult=2)
    >>> [round(float(schedule(t)), 4) for t in range(8)]
    [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0, 0.9619]
  """
  _check_numbers(init_value=init_value, eta_min=eta_min)
  check_non_negative("init_value", init_value)
  t_0 = _check_count("t_0", t_0, 1)
  t_mult = _check_count("t_mult", t_mult, 1)
  check_non_negative("eta_min", eta_min)

  def cycle_table(dtype):
    """Starts S_i that the dtype holds, and the lengths T_i, of the cycles."""
    # (Float counts, outside the contract, get the starts below 2**63.)
    limit = min(_int_max(jnp.zeros((), dtype)), 2**63)
    starts, lengths, start, length = [], [], 0, t_0
    while start <= limit:
      starts.append(start)
      lengths.append(length)
      start, length = start + length, length * t_mult
    return jnp.asarray(starts, dtype), jnp.asarray(lengths, _float_dtype())

  def schedule(count):
    count = jnp.asarray(count)
    if t_mult == 1:
      t_cur = _as_float(count % t_0 if _fits(count, t_0) else count)
      t_i = _as_float(t_0)
    else:
      starts, lengths = cycle_table(count.dtype)
      # Negative counts (which sequential_schedule evaluates and discards)
      # stay in cycle 0.
      cycle = jnp.maximum(jnp.searchsorted(starts, count, side="right") - 1, 0)
      t_cur = _as_float(count - starts[cycle])
      t_i = lengths[cycle]
    cosine = (1 + jnp.cos(jnp.pi * t_cur / t_i)) / 2
    return _as_float(eta_min + (init_value - eta_min) * cosine)

  return schedule


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def _cyclic_height(
    step_size_up: int, step_size_down: int | None, mode: str, gamma: float
) -> Schedule:
  """Validates CyclicLR's shape and returns its height in [0, 1] at a count."""
  step_size_up = _check_count("step_size_up", step_size_up, 1)
  if step_size_down is None:
    step_size_down = step_size_up
  step_size_down = _check_count("step_size_down", step_size_down, 0)
  check_choice("mode", mode, _CYCLIC_MODES)
  # torch reads gamma in 'exp_range' mode only; a schedule is a mistake in
  # every mode.
  if mode == "exp_range" or callable(gamma):
    _check_numbers(gamma=gamma)
  if mode == "exp_range":
    check_non_negative("gamma", gamma)
  cycle_length = step_size_up + step_size_down

  def height(count):
    count = jnp.asarray(count)
    if _fits(count, cycle_length):
      position = count % cycle_length
      left = _as_float(cycle_length - position)
    else:  # the first cycle never ends
      position = count
      left = _as_float(cycle_length) - _as_float(position)
    rise = _as_float(position) / _as_float(step_size_up)
    # With step_size_down == 0 the fall is never taken: a sawtooth.
    fall = left / _as_float(max(step_size_down, 1))
    triangle = jnp.where(_less(position, step_size_up + 1), rise, fall)
    if mode == "triangular2":
      cycle = _floor_div(count, cycle_length)
      return triangle * jnp.power(0.5, _as_float(cycle))
    if mode == "exp_range":
      return triangle * jnp.power(gamma, _as_float(count))
    return triangle

  return height


@_torch_names
def cyclic_schedule(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
  r"""Cyclical learning rate, CLR (torch ``CyclicLR``).

  .. math::
    \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\, h_t\, s_t

  where the triangle :math:`h_t` rises from 0 to 1 over ``step_size_up``
  updates and falls back over ``step_size_down``, and the amplitude scale
  :math:`s_t` is 1 (``'triangular'``), :math:`2^{-k}` in cycle :math:`k`
  counted from 0 (``'triangular2'``) or :math:`\gamma^t` (``'exp_range'``).

  Args:
    base_lr: the lower boundary :math:`\eta_{base}` (>= 0).
    max_lr: the upper boundary :math:`\eta_{max}` (>= 0).
    step_size_up: updates in the rising half (integer >= 1).
    step_size_down: updates in the falling half (integer >= 0); ``None``
      means ``step_size_up``; 0 gives a sawtooth (rise, then drop to
      ``base_lr``), as in torch.
    mode: ``'triangular'``, ``'triangular2'`` or ``'exp_range'``.
    gamma: the per-update amplitude decay of ``'exp_range'`` (>= 0; read in
      that mode only, as torch does).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `CyclicLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html>`_
    Smith, `Cyclical Learning Rates for Training Neural Networks <https://arxiv.org/abs/1506.01186>`_, 2017

  Example:
    >>> from optfree.schedules import cyclic_schedule
    >>> schedule = cyclic_schedule(0.0, 1.0, step_size_up=2, mode='triangular2')
    >>> [float(schedule(t)) for t in range(9)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.25, 0.5, 0.25, 0.0]
  """
  _check_numbers(base_lr=base_lr, max_lr=max_lr)
  check_non_negative("base_lr", base_lr)
  check_non_negative("max_lr", max_lr)
  height = _cyclic_height(step_size_up, step_size_down, mode, gamma)
  return lambda count: _as_float(base_lr + (max_lr - base_lr) * height(count))


def cyclic_momentum_schedule(
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
  r"""The momentum that torch ``CyclicLR`` cycles inversely to the learning rate.

  .. math::
    \beta_t = \beta_{max} - (\beta_{max} - \beta_{base})\, h_t\, s_t

  with :math:`h_t, s_t` as in :func:`cyclic_schedule` (pass it the same
  ``step_size_up``, ``step_size_down``, ``mode`` and ``gamma``). Use it as
  ``b1`` of ``optax.inject_hyperparams(optax.adam)`` (torch cycles Adam's
  ``betas[0]``) or as SGD's momentum.

  Args:
    base_momentum: the momentum at the learning-rate peak, in [0, 1].
    max_momentum: the momentum at the start of each cycle, in [0, 1].
    step_size_up: updates in the rising half of the learning rate (>= 1).
    step_size_down: updates in its falling half (>= 0); ``None`` means
      ``step_size_up``.
    mode: ``'triangular'``, ``'triangular2'`` or ``'exp_range'``.
    gamma: the per-update amplitude decay of ``'exp_range'`` (>= 0).

  Returns:
    A schedule ``count -> momentum``.

  References:
    PyTorch, `CyclicLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html>`_ (``cycle_momentum=True``)
    Smith, `A disciplined approach to neural network hyper-parameters <https://arxiv.org/abs/1803.09820>`_, 2018

  Example:
    >>> from optfree.schedules import cyclic_momentum_schedule
    >>> schedule = cyclic_momentum_schedule(0.8, 0.9, step_size_up=2)
    >>> [round(float(schedule(t)), 4) for t in range(5)]
    [0.9, 0.85, 0.8, 0.85, 0.9]
  """
  _check_numbers(base_momentum=base_momentum, max_momentum=max_momentum)
  check_interval("base_momentum", base_momentum, 0.0, 1.0)
  check_interval("max_momentum", max_momentum, 0.0, 1.0)
  height = _cyclic_height(step_size_up, step_size_down, mode, gamma)
  return lambda count: _as_float(
      max_momentum - (max_momentum - base_momentum) * height(count)
  )


_ANNEAL_STRATEGIES = ("cos", "linear")


def _onecycle(
    total_steps: int,
    pct_start: float,
    anneal_strategy: str,
    three_phase: bool,
    levels: Sequence[float],
) -> Schedule:
  """OneCycleLR's piecewise anneal through ``levels`` (one per phase boundary).

  The phase ends are torch's floats (``pct_start * total_steps - 1``, ...);
  an integer count lies in the first phase whose end it does not exceed, that
  is, whose ``floor(end)`` it does not exceed, which is an integer comparison.
  The last phase takes the counts after every other end. A phase no count
  reaches (with ``three_phase`` and ``pct_start > 0.5`` the last; with
  ``pct_start * total_steps < 1`` the first) is skipped, as in torch.
  """
  total_steps = _check_count("total_steps", total_steps, 1)
  _check_numbers(pct_start=pct_start)
  check_interval("pct_start", pct_start, 0.0, 1.0)
  check_choice("anneal_strategy", anneal_strategy, _ANNEAL_STRATEGIES)
  warmup_end = float(pct_start * total_steps) - 1
  ends: tuple[float, ...]
  if three_phase:
    ends = (warmup_end, float(2 * pct_start * total_steps) - 2, total_steps - 1)
  else:
    ends = (warmup_end, total_steps - 1)
  starts = (0.0,) + ends[:-1]
  # torch divides by the length of the phase a count falls in; it fails
  # (ZeroDivisionError) only where a count in [0, total_steps) reaches a phase
  # of length 0, which happens when pct_start * total_steps == 1 exactly.
  after = -1
  for index, (start, end) in enumerate(zip(starts, ends)):
    last = total_steps - 1 if index == len(ends) - 1 else min(
        math.floor(end), total_steps - 1)
    if end == start and after + 1 <= last:
      raise ValueError(
          "pct_start must not give a phase that a count reaches a length of"
          " 0 (pct_start * total_steps == 1 exactly, where torch divides by"
          f" zero), got pct_start={pct_start!r} with"
          f" total_steps={total_steps!r}"
      )
    after = max(after, math.floor(end))

  def anneal(start, end, pct):
    if anneal_strategy == "cos":
      return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
    return (end - start) * pct + start

  def schedule(count):
    # torch refuses to step past total_steps; the last value is held instead.
    count = jnp.asarray(count)
    count = jnp.minimum(count, min(total_steps - 1, _int_max(count)))
    step = _as_float(count)

    def phase(index):
      pct = (step - starts[index]) / (ends[index] - starts[index])
      return anneal(levels[index], levels[index + 1], pct)

    value = phase(len(ends) - 1)
    for index in reversed(range(len(ends) - 1)):
      value = jnp.where(_less(count, math.floor(ends[index]) + 1),
                        phase(index), value)
    return _as_float(value)

  return schedule


@_torch_names
def onecycle_schedule(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
  r"""The 1cycle learning-rate policy (torch ``OneCycleLR``).

  With :math:`\eta_{init} = \eta_{max}/\mathrm{div\_factor}` and
  :math:`\eta_{min} = \eta_{init}/\mathrm{final\_div\_factor}`, the value
  anneals (cosine :math:`e + (s - e)(1 + \cos \pi p)/2` or linear
  :math:`s + (e - s) p`) from :math:`\eta_{init}` to :math:`\eta_{max}` over
  counts :math:`[0, \; \mathrm{pct\_start} \cdot T - 1]`, then to
  :math:`\eta_{min}` at :math:`T - 1`. With ``three_phase`` it goes back to
  :math:`\eta_{init}` at :math:`2\,\mathrm{pct\_start} \cdot T - 2` first, then
  to :math:`\eta_{min}`. These are torch's phase ends, in float64, so the peak
  is at count ``pct_start * T - 1``; ``optax.cosine_onecycle_schedule`` peaks
  one update later. Past ``T - 1`` (where torch raises) the last value is held.

  Args:
    max_lr: the peak learning rate :math:`\eta_{max}` (>= 0).
    total_steps: :math:`T`, the number of updates in the cycle (integer >= 1).
    pct_start: the fraction of the cycle spent rising, in [0, 1]; as in
      torch, a phase that no count reaches is skipped (the rise when
      ``pct_start * total_steps < 1``; with ``three_phase`` the last phase when
      ``pct_start > 0.5``, so the value ends on the way back down, not at
      :math:`\eta_{min}`), and ``pct_start * total_steps == 1``, where torch
      divides by zero, is an error.
    anneal_strategy: ``'cos'`` or ``'linear'``.
    div_factor: :math:`\eta_{init} = \eta_{max} / \mathrm{div\_factor}` (> 0).
    final_div_factor: :math:`\eta_{min} = \eta_{init} /
      \mathrm{final\_div\_factor}` (> 0).
    three_phase: whether to use the three-phase schedule of the paper
      instead of fastai's two phases.

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `OneCycleLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html>`_
    Smith & Topin, `Super-Convergence <https://arxiv.org/abs/1708.07120>`_, 2019

  Example:
    OneCycle on the learning rate and, inversely, on Adam's ``b1`` (what torch
    does to ``betas[0]`` with ``cycle_momentum=True``):

    >>> import jax.numpy as jnp
    >>> import optax
    >>> from optfree.schedules import onecycle_momentum_schedule
    >>> from optfree.schedules import onecycle_schedule
    >>> optimizer = optax.inject_hyperparams(optax.adam)(
    ...     learning_rate=onecycle_schedule(0.1, total_steps=10),
    ...     b1=onecycle_momentum_schedule(total_steps=10))
    >>> params = jnp.zeros(3)
    >>> state = optimizer.init(params)
    >>> for _ in range(5):
    ...   updates, state = optimizer.update(jnp.ones(3), state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print(round(float(state.hyperparams['learning_rate']), 4),
    ...         round(float(state.hyperparams['b1']), 4))
    0.004 0.95
    0.052 0.9
    0.1 0.85
    0.095 0.855
    0.0812 0.8688
  """
  _check_numbers(max_lr=max_lr, div_factor=div_factor,
                 final_div_factor=final_div_factor)
  check_non_negative("max_lr", max_lr)
  check_positive("div_factor", div_factor)
  check_positive("final_div_factor", final_div_factor)
  initial_lr = max_lr / div_factor
  min_lr = initial_lr / final_div_factor
  levels: tuple[float, ...]
  if three_phase:
    levels = (initial_lr, max_lr, initial_lr, min_lr)
  else:
    levels = (initial_lr, max_lr, min_lr)
  return _onecycle(
      total_steps, pct_start, anneal_strategy, three_phase, levels
  )


def onecycle_momentum_schedule(
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    three_phase: bool = False,
) -> Schedule:
  r"""The momentum that torch ``OneCycleLR`` cycles inversely to the learning rate.

  Over the phases of :func:`onecycle_schedule` (same ``total_steps``,
  ``pct_start``, ``anneal_strategy`` and ``three_phase``), the momentum
  anneals from ``max_momentum`` to ``base_momentum`` while the learning rate
  rises, then back to ``max_momentum`` (and, with ``three_phase``, stays there
  in the last phase). Use it as ``b1`` of
  ``optax.inject_hyperparams(optax.adam)`` (see :func:`onecycle_schedule`)
  or as SGD's momentum.

  Args:
    total_steps: the number of updates in the cycle (integer >= 1).
    pct_start: the fraction of the cycle spent rising, in [0, 1] (see
      :func:`onecycle_schedule`).
    anneal_strategy: ``'cos'`` or ``'linear'``.
    base_momentum: the momentum at the learning-rate peak, in [0, 1].
    max_momentum: the momentum at the start and end, in [0, 1].
    three_phase: whether to use the three-phase schedule.

  Returns:
    A schedule ``count -> momentum``.

  References:
    PyTorch, `OneCycleLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html>`_ (``cycle_momentum=True``)
    Smith, `A disciplined approach to neural network hyper-parameters <https://arxiv.org/abs/1803.09820>`_, 2018

  Example:
    >>> from optfree.schedules import onecycle_momentum_schedule
    >>> schedule = onecycle_momentum_schedule(5, pct_start=0.6,
    ...                                       anneal_strategy='linear')
    >>> [round(float(schedule(t)), 4) for t in range(5)]
    [0.95, 0.9, 0.85, 0.9, 0.95]
  """
  _check_numbers(base_momentum=base_momentum, max_momentum=max_momentum)
  check_interval("base_momentum", base_momentum, 0.0, 1.0)
  check_interval("max_momentum", max_momentum, 0.0, 1.0)
  levels: tuple[float, ...]
  if three_phase:
    levels = (max_momentum, base_momentum, max_momentum, max_momentum)
  else:
    levels = (max_momentum, base_momentum, max_momentum)
  return _onecycle(
      total_steps, pct_start, anneal_strategy, three_phase, levels
  )


def trapezoidal_schedule(
    base_lr: float, max_lr: float, step_size: int, anneal_start: int
) -> Schedule:
  r"""Warm up, hold, cool down: a trapezoid (the seed article's schedule).

  .. math::
    \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})
    \frac{\min(t, s) - \mathrm{clip}(t - a, 0, s)}{s}

  rises linearly from ``base_lr`` to ``max_lr`` over the first ``step_size``
  updates (:math:`s`), holds ``max_lr`` until ``anneal_start`` (:math:`a`),
  falls back to ``base_lr`` over the next ``step_size`` updates and stays
  there. The same values as torch's ``SequentialLR`` of two ``LinearLR``.

  Args:
    base_lr: the value at the start and after the cool-down (>= 0).
    max_lr: the plateau value (>= 0).
    step_size: the length of the ramps (integer >= 1).
    anneal_start: the count at which the cool-down starts (integer >=
      ``step_size``).

  Returns:
    A schedule ``count -> value``.

  Example:
    >>> from optfree.schedules import trapezoidal_schedule
    >>> schedule = trapezoidal_schedule(0.0, 1.0, step_size=2, anneal_start=3)
    >>> [float(schedule(t)) for t in range(7)]
    [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
  """
  _check_numbers(base_lr=base_lr, max_lr=max_lr)
  check_non_negative("base_lr", base_lr)
  check_non_negative("max_lr", max_lr)
  step_size = _check_count("step_size", step_size, 1)
  anneal_start = _check_count("anneal_start", anneal_start, step_size)

  def schedule(count):
    count = jnp.asarray(count)
    up = _clip(count, 0, step_size)
    if _fits(count, anneal_start):
      down = _clip(count - anneal_start, 0, step_size)
    else:  # the cool-down never starts
      down = jnp.zeros_like(count)
    fraction = _as_float(up - down) / _as_float(step_size)
    return _as_float(base_lr + (max_lr - base_lr) * fraction)

  return schedule


_DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


def warmup_stable_decay_schedule(
    peak_value: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
    init_value: float = 0.0,
    end_value: float = 0.0,
    decay_shape: str = "linear",
) -> Schedule:
  r"""Warmup-stable-decay (WSD), the schedule of current LLM training.

  .. math::
    \eta_t = \begin{cases}
      \eta_{init} + (\eta_{peak} - \eta_{init})\, t / W & t < W \\
      \eta_{end} + (\eta_{peak} - \eta_{end})\, f(p_t) & t \ge W
    \end{cases}
    \qquad p_t = \mathrm{clip}\left(\frac{t - (T - D)}{D}, 0, 1\right)

  with :math:`W` = ``warmup_steps``, :math:`D` = ``decay_steps``, :math:`T` =
  ``total_steps`` and the decay shape :math:`f(p) = 1 - p` (``'linear'``),
  :math:`(1 + \cos \pi p)/2` (``'cosine'``) or :math:`1 - \sqrt{p}`
  (``'1-sqrt'``). The value is ``peak_value`` between warmup and decay and
  ``end_value`` from ``total_steps`` on. No torch class has it; the tests
  check it against torch's ``SequentialLR`` of ``LinearLR``, ``ConstantLR``,
  ``CosineAnnealingLR`` and ``LambdaLR`` pieces.

  Args:
    peak_value: the plateau learning rate (>= 0).
    total_steps: :math:`T`, the end of the decay (integer >= 1).
    warmup_steps: :math:`W`, the length of the linear warmup (integer >= 0).
    decay_steps: :math:`D`, the length of the decay (integer >= 0);
      ``None`` means 20% of ``total_steps`` (``total_steps // 5``).
      ``warmup_steps + decay_steps`` must not exceed ``total_steps``.
    init_value: the value at count 0 of the warmup (>= 0).
    end_value: the value at and after ``total_steps`` (>= 0).
    decay_shape: ``'linear'``, ``'cosine'`` or ``'1-sqrt'``.

  Returns:
    A schedule ``count -> value``.

  References:
    Hu et al., `MiniCPM <https://arxiv.org/abs/2404.06395>`_, 2024 (WSD)
    Hägele et al., `Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations <https://arxiv.org/abs/2405.18392>`_, 2024 (the 1-sqrt cool-down)

  Example:
    >>> from optfree.schedules import warmup_stable_decay_schedule
    >>> schedule = warmup_stable_decay_schedule(
    ...     1.0, total_steps=8, warmup_steps=2, decay_steps=4,
    ...     decay_shape='1-sqrt')
    >>> [round(float(schedule(t)), 4) for t in range(10)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.2929, 0.134, 0.0, 0.0]
  """
  _check_numbers(peak_value=peak_value, init_value=init_value,
                 end_value=end_value)
  check_non_negative("peak_value", peak_value)
  total_steps = _check_count("total_steps", total_steps, 1)
  warmup_steps = _check_count("warmup_steps", warmup_steps, 0)
  if decay_steps is None:
    decay_steps = total_steps // 5
  decay_steps = _check_count("decay_steps", decay_steps, 0)
  if warmup_steps + decay_steps > total_steps:
    raise ValueError(
        "warmup_steps + decay_steps must not exceed total_steps, got"
        f" warmup_steps={warmup_steps!r} + decay_steps={decay_steps!r} >"
        f" total_steps={total_steps!r}"
    )
  check_non_negative("init_value", init_value)
  check_non_negative("end_value", end_value)
  check_choice("decay_shape", decay_shape, _DECAY_SHAPES)
  decay_start = total_steps - decay_steps

  def schedule(count):
    count = jnp.asarray(count)
    warmup = init_value + (peak_value - init_value) * (
        _as_float(count) / _as_float(max(warmup_steps, 1))
    )
    # With decay_steps == 0 the drop to end_value is a step at total_steps.
    if _fits(count, decay_start):
      progress = _as_float(_clip(count - decay_start, 0, decay_steps))
    else:  # the decay never starts
      progress = jnp.zeros(jnp.shape(count), _float_dtype())
    progress = progress / _as_float(max(decay_steps, 1))
    if decay_shape == "linear":
      remaining = 1 - progress
    elif decay_shape == "cosine":
      remaining = (1 + jnp.cos(jnp.pi * progress)) / 2
    else:
      remaining = 1 - jnp.sqrt(progress)
    remaining = jnp.where(_less(count, total_steps), remaining, 0.0)
    decay = end_value + (peak_value - end_value) * remaining
    return _as_float(jnp.where(_less(count, warmup_steps), warmup, decay))

  return schedule


def per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
  r"""Turns an epoch-indexed schedule into an update-indexed one.

  .. math::
    \eta_t = \mathrm{schedule}(\lfloor t / \mathrm{steps\_per\_epoch} \rfloor)

  This is a torch scheduler stepped once per epoch (after the epoch's last
  ``optimizer.step()``) while the optimizer steps once per batch.

  Args:
    schedule: a schedule of the epoch count.
    steps_per_epoch: updates per epoch (integer >= 1).

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `How to adjust learning rate <https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate>`_

  Example:
    >>> from optfree.schedules import per_epoch, step_schedule
    >>> schedule = per_epoch(step_schedule(1.0, step_size=1, gamma=0.5), 3)
    >>> [float(schedule(t)) for t in range(7)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
  """
  if not callable(schedule):
    raise ValueError(f"schedule must be callable, got {schedule!r}")
  steps_per_epoch = _check_count("steps_per_epoch", steps_per_epoch, 1)
  return lambda count: schedule(_floor_div(jnp.asarray(count), steps_per_epoch))


@_torch_names
def sequential_schedule(
    schedules: Sequence[Schedule], milestones: Sequence[int]
) -> Schedule:
  r"""Runs schedules one after another (torch ``SequentialLR``).

  .. math::
    \eta_t = \mathrm{schedules}[i](t - m_{i-1}) \quad
    \text{for } m_{i-1} \le t < m_i \quad (m_{-1} = 0)

  Each schedule starts again from count 0 at its milestone, as torch restarts
  each scheduler there. As in torch, a schedule whose milestone equals the
  next one never runs, and milestones at or below 0 start their schedule at
  count 0 (the schedules before it never run). Unlike
  ``optax.join_schedules``, milestones beyond the count's integer dtype are
  allowed (they are never reached).

  Args:
    schedules: the schedules, in order (at least one).
    milestones: non-decreasing counts (integers) at which the next schedule
      takes over; one fewer than ``schedules``. (torch finds the current
      schedule by bisection, which assumes this order.)

  Returns:
    A schedule ``count -> value``.

  References:
    PyTorch, `SequentialLR <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.SequentialLR.html>`_

  Example:
    >>> from optfree.schedules import (cosine_annealing_schedule,
    ...     linear_factor_schedule, sequential_schedule)
    >>> schedule = sequential_schedule(
    ...     [linear_factor_schedule(1.0, start_factor=0.5, total_steps=2),
    ...      cosine_annealing_schedule(1.0, t_max=2)],
    ...     milestones=[2])
    >>> [round(float(schedule(t)), 4) for t in range(5)]
    [0.5, 0.75, 1.0, 0.5, 0.0]
  """
  schedules = tuple(schedules)
  milestones = tuple(milestones)
  if not schedules:
    raise ValueError(f"schedules must hold at least one schedule, got {schedules!r}")
  for index, part in enumerate(schedules):
    if not callable(part):
      raise ValueError(f"schedules[{index}] must be callable, got {part!r}")
  if len(milestones) != len(schedules) - 1:
    raise ValueError(
        "milestones must hold one fewer entry than schedules, got"
        f" milestones={milestones!r} for {len(schedules)} schedules"
    )
  milestones = _check_milestones("milestones", milestones)
  if any(b < a for a, b in zip(milestones, milestones[1:])):
    raise ValueError(
        "milestones must be non-decreasing (torch's SequentialLR bisects"
        f" them), got {milestones!r}"
    )

  def schedule(count):
    count = jnp.asarray(count)
    value = schedules[0](count)
    for milestone, following in zip(milestones, schedules[1:]):
      start = max(milestone, 0)
      if not _fits(count, start):
        break  # no count of this dtype reaches it, nor the ones after it
      value = jnp.where(count >= start, following(count - start), value)
    return _as_float(value)

  return schedule
