r"""Schedule-Free SGD, AdamW, RAdam and a Schedule-Free wrapper for optax.

Schedule-Free learning (Defazio et al., 2024) replaces a decaying learning-rate
schedule by interpolation and averaging over three sequences:

.. math::

  y_t = (1 - \beta_1) z_t + \beta_1 x_t, \qquad
  z_{t+1} = z_t - \gamma_t d_t, \qquad
  x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},

where :math:`d_t` is the base direction computed from the gradient at
:math:`y_t`, and :math:`c_{t+1} = w_{t+1} / \sum_{i \le t+1} w_i` with
:math:`w_t = t^r \gamma_{\max,t}^{p}` (``r``, ``weight_lr_power`` = p).

The params a user holds are :math:`y` (where gradients are taken); :math:`z`
lives in the state; :math:`x`, the point to evaluate, is derived by
:func:`eval_params`. Each update uses the lerp form of the reference
implementation (PyPI ``schedulefree`` 1.4.1), which never forms :math:`x` and
never divides by :math:`\beta_1`,

.. math::

  y_{t+1} = y_t + c_{t+1} (z_t - y_t)
            + \gamma_t (\beta_1 (1 - c_{t+1}) - 1) d_t
          = y_t + c_{t+1} (z_{t+1} - y_t)
            - \gamma_t (1 - \beta_1)(1 - c_{t+1}) d_t,

in its second, equal form: written on :math:`z_{t+1}`, nothing reads
:math:`z_t` once :math:`z_{t+1}` is written, so XLA updates both buffers in
place instead of copying them first.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optfree import _checks
from optfree import _public
from optfree import _tree
from optfree import _xla_cpu
from optfree import rounding as _rounding



class ScheduleFreeState(NamedTuple):
  r"""State of every Schedule-Free transformation.

  Attributes:
    count: number of updates applied (int32; saturates instead of wrapping).
    lr_max: running maximum of the learning rate used by the z-step.
    weight_sum: running sum of the averaging weights :math:`w_t`, kept as a
      Kahan-compensated pair with ``weight_sum_compensation`` so that
      :math:`c_t = w_t / \sum w` stays right far past :math:`2^{24}` steps
      in float32.
    weight_sum_compensation: the rounding error not yet added to
      ``weight_sum``.
    b1: the :math:`\beta_1` of the last update, read by :func:`eval_params`
      (so it stays right when ``b1`` is injected or scheduled).
    z: the base sequence, a pytree like the params (dtype ``state_dtype``).
    base_state: state of the z-step: ``optax.EmptyState()`` for SGD,
      ``optax.ScaleByRmsState`` (the second moment ``nu``) for AdamW and
      RAdam, the wrapped optimizer's state for :func:`schedule_free`.

  The scalars are 0-d arrays in float32 or wider (float64 when a param is
  float64), never in the params' dtype.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
  lr_max: jax.Array
  weight_sum: jax.Array
  weight_sum_compensation: jax.Array
  b1: jax.Array
  z: optax.Params
  base_state: optax.OptState


def _scalar_dtype(params: optax.Params) -> jnp.dtype:
  floating = [
      jnp.asarray(leaf).dtype
      for leaf in jax.tree.leaves(params)
      if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
  ]
  return jnp.result_type(jnp.float32, *floating)


def _copy_tree(params: optax.Params, dtype: Any) -> optax.Params:
  # A distinct copy, so that both params and state can be donated to jit.
  return jax.tree.map(
      lambda p: jnp.array(p, dtype=dtype or jnp.asarray(p).dtype, copy=True),
      params,
  )


def _zeros_tree(params: optax.Params, dtype: Any) -> optax.Params:
  # zeros_like keeps each param's sharding, so the state stays sharded too.
  return jax.tree.map(
      lambda p: jnp.zeros_like(p, dtype=dtype or jnp.asarray(p).dtype), params
  )


def _init_state(
    params: optax.Params, b1: Any, z: optax.Params, base_state: optax.OptState
) -> ScheduleFreeState:
  dtype = _scalar_dtype(params)
  return ScheduleFreeState(
      count=jnp.zeros([], jnp.int32),
      lr_max=jnp.zeros([], dtype),
      weight_sum=jnp.zeros([], dtype),
      weight_sum_compensation=jnp.zeros([], dtype),
      b1=jnp.asarray(b1, dtype),
      z=z,
      base_state=base_state,
  )


def _check_trees(
    name: str,
    grads: optax.Updates,
    state: ScheduleFreeState,
    params: Optional[optax.Params],
) -> None:
  """Raises ValueError unless grads and params match the state's z.

  (Missing params are reported by the public wrapper, before this runs.)
  """
  _checks.check_trees_match(name, state.z, gradient=grads, params=params)


def _kahan_add(
    total: jax.Array, compensation: jax.Array, value: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Adds ``value`` to a Kahan-compensated running sum."""
  corrected = value - compensation
  new_total = total + corrected
  return new_total, (new_total - total) - corrected


def _averaging_step(
    state: ScheduleFreeState,
    lr: Any,
    b1: Any,
    r: Any,
    weight_lr_power: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
  """Advances the scalar state by one update.

  Args:
    state: the state before the update.
    lr: this update's learning rate (warmup and rectification included).
    b1: this update's interpolation coefficient.
    r: power of the step count in the averaging weight.
    weight_lr_power: power of ``lr_max`` in the averaging weight.

  Returns:
    ``(lr, b1, c, scalars)``: ``lr`` and ``b1`` as 0-d arrays of the state's
    scalar dtype, the averaging coefficient ``c`` and the next scalar fields
    of the state.
  """
  dtype = state.lr_max.dtype
  lr = jnp.asarray(lr, dtype)
  b1 = jnp.asarray(b1, dtype)
  count = optax.safe_increment(state.count)
  lr_max = jnp.maximum(state.lr_max, lr)
  weight = count.astype(dtype) ** jnp.asarray(r, dtype) * lr_max ** jnp.asarray(
      weight_lr_power, dtype
  )
  weight_sum, compensation = _kahan_add(
      state.weight_sum, state.weight_sum_compensation, weight
  )
  # The reference sets c = 0 while every weight is 0 (zero learning rate).
  positive = weight_sum > 0
  c = jnp.where(positive, weight / jnp.where(positive, weight_sum, 1), 0)
  scalars = dict(
      count=count,
      lr_max=lr_max,
      weight_sum=weight_sum,
      weight_sum_compensation=compensation,
      b1=b1,
  )
  return lr, b1, c, scalars


def _is_static_zero(value: Any) -> bool:
  return isinstance(value, (int, float)) and value == 0


def _decay_per_leaf(
    weight_decay: Any, mask: _tree.MaskOrFn, params: optax.Params
) -> list[Any]:
  """The weight decay of each param leaf (None where there is none)."""
  count = len(jax.tree.leaves(params))
  if _is_static_zero(weight_decay):
    return _tree.PerLeaf([None] * count)
  if mask is None:
    return _tree.PerLeaf([weight_decay] * count)
  mask_tree = mask(params) if callable(mask) else mask
  # A mask may be a prefix of the params tree, as in optax.masked.
  flags = jax.tree.leaves(
      jax.tree.map(lambda m, p: jax.tree.map(lambda _: m, p), mask_tree, params)
  )
  return _tree.PerLeaf(weight_decay if bool(flag) else None for flag in flags)


# The hyperparameters that may be schedules of the update count; every other
# one must be a number (a schedule there goes through inject_hyperparams).
_SCHEDULABLE = ("learning_rate", "weight_decay")


def _validate(factory: str, **values: Any) -> None:
  checks = dict(
      learning_rate=_checks.check_non_negative,
      b1=lambda n, v: _checks.check_interval(
          n, v, 0.0, 1.0, low_closed=False, high_closed=False
      ),
      b2=lambda n, v: _checks.check_interval(n, v, 0.0, 1.0, high_closed=False),
      eps=_checks.check_non_negative,
      warmup_steps=_checks.check_int,
      r=_checks.check_non_negative,
      weight_lr_power=_checks.check_non_negative,
      weight_decay=_checks.check_non_negative,
      weight_decay_at_y=_checks.check_non_negative,
  )
  for name, value in values.items():
    if name not in _SCHEDULABLE:
      _checks.check_number(name, value, schedulable_via=f"optfree.{factory}")
    checks[name](name, value)


def _one_minus(value: Any, dtype: Any) -> jax.Array:
  """``1 - value``, before rounding to ``dtype`` when ``value`` is a number.

  In float32, ``1 - float32(0.999)`` is off by 1.3e-5 relative; the
  reference computes such scalars in Python (float64).
  """
  if isinstance(value, (int, float)):
    return jnp.asarray(1 - value, dtype)
  return 1 - jnp.asarray(value, dtype)


# B_2k / (2k)! for the Bernoulli series u / (e^u - 1) = 1 - u/2 + sum ...
_BERNOULLI_SERIES = tuple(
    b / math.factorial(2 * k)
    for k, b in enumerate(
        (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6,
         -3617 / 510),
        start=1,
    )
)


def _radam_rho(
    step: jax.Array, one_minus_b2: jax.Array, log_b2: jax.Array
) -> jax.Array:
  r"""RAdam's :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)`.

  The textbook form subtracts two numbers near :math:`2 / (1 - \beta_2)`
  to get one near :math:`t`: in float32 with :math:`\beta_2 = 0.999` that
  loses 0.5% of the rectification in the first steps. With
  :math:`L = -\log \beta_2`, :math:`q = 1 - \beta_2`, :math:`u = t L`:

  .. math::

    \rho_t = \Big(\frac{2 (L - q)}{q L} - 1\Big)
             + \frac{2}{L}\Big(1 - \frac{u}{e^u - 1}\Big),

  where both brackets are evaluated by series where they would cancel.
  """
  q = one_minus_b2
  big_l = -log_b2
  # (L - q) / q^2 = sum_{n >= 2} q^(n-2) / n; the series for small q.
  series = sum(q**i / (i + 2) for i in range(20))
  direct = (big_l - q) / jnp.where(q < 0.15, 1, q * q)
  excess = jnp.where(q < 0.15, series, direct)
  offset = 2 * q * excess / big_l - 1
  u = step * big_l
  u_series = u / 2 - sum(
      coefficient * u ** (2 * k)
      for k, coefficient in enumerate(_BERNOULLI_SERIES, start=1)
  )
  u_direct = 1 - u / jnp.expm1(jnp.where(u < 0.5, 1, u))
  rho = offset + 2 / big_l * jnp.where(u < 0.5, u_series, u_direct)
  # b2 <= 0.6 has rho_inf <= 4, so rho_t never exceeds 4: the plain form
  # is exact enough there and stays finite at b2 = 0.
  b2_power = jnp.exp(step * log_b2)
  plain = 2 / q - 1 - 2 * step * b2_power / -jnp.expm1(step * log_b2)
  return jnp.where(q < 0.4, rho, plain)


class _Normalizer(NamedTuple):
  r"""The per-step scalars of the normalized direction of AdamW and RAdam.

  The direction is :math:`g / (\sqrt{\nu / b} + \epsilon)` after
  :math:`\nu \leftarrow \beta_2 \nu + (1 - \beta_2) g^2`; RAdam takes
  :math:`g` itself on the steps where ``adaptive`` is false.
  """

  b2: jax.Array
  one_minus_b2: jax.Array
  bias_correction: jax.Array
  eps: jax.Array
  adaptive: Optional[jax.Array] = None


def _warmup_factor(warmup_steps: Any, step: jax.Array) -> Any:
  """The reference's (k + 1) / warmup_steps, capped at 1 after warmup."""
  if _is_static_zero(warmup_steps):
    return 1
  return jnp.minimum(step / jnp.asarray(warmup_steps, step.dtype), 1)


def _adam_scalars(
    *, b2: Any, eps: Any, step: jax.Array, bias_correction: str
) -> tuple[_Normalizer, Any]:
  r"""The normalizer of Schedule-Free AdamW and its factor on the z-step.

  ``"denominator"`` (schedulefree): :math:`\nu` is bias-corrected inside the
  square root. ``"step_size"`` (the AlgoPerf submission): the z-step is
  scaled by :math:`\sqrt{1 - \beta_2^{k+1}}` instead.
  """
  dtype = step.dtype
  one_minus_b2 = _one_minus(b2, dtype)
  bias_correction2 = -jnp.expm1(step * jnp.log1p(-one_minus_b2))
  normalizer = _Normalizer(
      b2=jnp.asarray(b2, dtype), one_minus_b2=one_minus_b2,
      bias_correction=bias_correction2, eps=jnp.asarray(eps, dtype))
  if bias_correction == "denominator":
    return normalizer, 1
  return normalizer._replace(bias_correction=jnp.ones([], dtype)), jnp.sqrt(
      bias_correction2)


def _radam_scalars(
    *, b2: Any, eps: Any, step: jax.Array, silent_sgd_phase: Any
) -> tuple[_Normalizer, jax.Array]:
  r"""The normalizer of Schedule-Free RAdam and its rectification factor.

  SGD steps (or none, silently) until the variance of the adaptive step is
  tractable (:math:`\rho_t > 4`), then rectified Adam steps.
  """
  normalizer, _ = _adam_scalars(b2=b2, eps=eps, step=step,
                                bias_correction="denominator")
  one_minus_b2 = normalizer.one_minus_b2
  rho_inf = 2 / one_minus_b2 - 1
  rho_t = _radam_rho(step, one_minus_b2, jnp.log1p(-one_minus_b2))
  adaptive = rho_t > 4
  rectification = jnp.sqrt(jnp.maximum(
      (rho_t - 4) * (rho_t - 2) * rho_inf
      / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0))
  sgd_factor = jnp.where(silent_sgd_phase, 0.0, 1.0).astype(step.dtype)
  return normalizer._replace(adaptive=adaptive), jnp.where(
      adaptive, rectification, sgd_factor)


def _schedule_free_elementwise(
    name: str,
    *,
    learning_rate: optax.ScalarOrSchedule,
    b1: Any,
    normalized: bool,
    scalars: Callable[[jax.Array], tuple[Optional[_Normalizer], Any, Any]],
    r: Any,
    weight_lr_power: Any,
    weight_decay: Any,
    weight_decay_at: str,
    mask: _tree.MaskOrFn,
    state_dtype: Any,
    rounding: str,
    seed: int,
) -> optax.GradientTransformation:
  """Schedule-Free over a z-step direction ``g`` or ``g`` normalized.

  ``scalars(step)`` gives the step's normalizer (``None`` for SGD, whose
  ``normalized`` is false: no second moment is kept), the
  factor on the learning rate that the averaging weight sees (warmup,
  rectification) and the further factor of the z-step alone (AlgoPerf's bias
  correction). The whole step is one elementwise function per leaf of g, y,
  z (and nu) that writes the update, z (and nu); every scalar is computed
  once per step outside it.
  """
  _checks.check_float_dtype("state_dtype", state_dtype)

  def init_fn(params):
    _rounding.check_dtypes(name, rounding, params, state_dtype)
    base_state = (
        optax.ScaleByRmsState(nu=_zeros_tree(params, state_dtype))
        if normalized else optax.EmptyState())
    return _init_state(params, b1, _copy_tree(params, state_dtype), base_state)

  def update_fn(grads, state, params=None):
    _check_trees(name, grads, state, params)
    k = state.count
    dtype = state.lr_max.dtype
    normalizer, lr_factor, z_step_factor = scalars(
        optax.safe_increment(k).astype(dtype))
    lr = jnp.asarray(_tree.value_at(learning_rate, k), dtype) * lr_factor
    lr, b1_, c, scalar_state = _averaging_step(
        state, lr, b1, r, weight_lr_power)
    z_lr = lr * z_step_factor
    write = _rounding.write(rounding, seed, k)
    to_update = _rounding.params_update(rounding, seed, k)
    # The reference's y + c (z - y) + lr (b1 (1 - c) - 1) d, rewritten on
    # z_new = z - lr d: then nothing reads the old z after z_new is written,
    # and XLA updates y and z in place without copying either.
    y_step = z_lr * (b1_ - 1) * (1 - c)

    def direction(g, y, z, nu, decay):
      d = g
      if normalizer is not None:
        normalized = g / (jnp.sqrt(nu / normalizer.bias_correction)
                          + normalizer.eps)
        d = normalized if normalizer.adaptive is None else jnp.where(
            normalizer.adaptive, normalized, g)
      if decay is None:
        return d
      if weight_decay_at == "x":
        # x from y and z, with the b1 that formed y.
        y = (y - (1 - state.b1) * z) / state.b1
      return d + jnp.asarray(decay, dtype) * y

    def leaf_update(leaf, g, y, z, nu, decay):
      if normalizer is not None:
        nu = write(normalizer.b2 * nu + normalizer.one_minus_b2 * g * g,
                   nu.dtype, leaf, _rounding.NU)
      new_z = write(z - z_lr * direction(g, y, z, nu, decay), z.dtype, leaf,
                    _rounding.Z)
      # XLA:CPU emits one loop per output: a direction shared by z_new and
      # the update would be stored in a param-sized temporary. Recomputing it
      # from inputs made distinct by _xla_cpu.unshared keeps it in registers.
      # The state keeps nu itself: a copy would be written by a loop of its
      # own.
      g_for_y, nu_for_y = (_xla_cpu.unshared(new_z, g, nu)
                           if normalizer is not None else (g, nu))
      update = c * (new_z - y) + y_step * direction(
          g_for_y, y, z, nu_for_y, decay)
      return to_update(update, y, leaf), new_z, nu

    nu = state.base_state.nu if normalized else None
    updates, z, nu = _tree.map_leaves(
        leaf_update, grads, params, state.z, nu,
        _decay_per_leaf(_tree.value_at(weight_decay, k), mask, params),
        num_outputs=3)
    base_state = (optax.ScaleByRmsState(nu=nu) if normalized
                  else state.base_state)
    return updates, ScheduleFreeState(
        z=z, base_state=base_state, **scalar_state)

  return _public.public_transformation(
      name, optax.GradientTransformation(init_fn, update_fn), mask=mask)


@_checks.reference_names(**_checks.REFERENCE_NAMES["schedule_free_sgd"])
def schedule_free_sgd(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    *,
    b1: float = 0.9,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: _tree.MaskOrFn = None,
    state_dtype: Any = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""Schedule-Free SGD, as ``schedulefree.SGDScheduleFree``.

  With :math:`k` the number of updates already applied, :math:`\gamma_k` the
  learning rate times the warmup factor :math:`\min((k+1)/W, 1)`, and
  :math:`\lambda` the weight decay (applied at :math:`y`, where masked in):

  .. math::

    d_k &= g_k + \lambda y_k, \\
    \gamma_{\max} &= \max_{i \le k} \gamma_i, \quad
    w_{k+1} = (k+1)^r \gamma_{\max}^{p}, \quad
    c_{k+1} = w_{k+1} / \textstyle\sum_{i \le k+1} w_i, \\
    z_{k+1} &= z_k - \gamma_k d_k, \\
    y_{k+1} &= y_k + c_{k+1} (z_{k+1} - y_k)
               - \gamma_k (1 - \beta_1)(1 - c_{k+1}) d_k

  (the reference's lerp form, rewritten on :math:`z_{k+1}`; see the module
  docstring). The update returned is :math:`y_{k+1} - y_k`, so
  ``optax.apply_updates`` yields :math:`y_{k+1}`. Evaluate the model at
  :func:`eval_params`. The state holds one param-sized buffer (:math:`z`).

  Args:
    learning_rate: a non-negative float or an optax schedule of the update
      count (the averaging weight then uses its running maximum).
    b1: interpolation between :math:`z` and :math:`x`, in (0, 1) (the
      reference's ``momentum``).
    warmup_steps: length of the linear warmup; 0 means none.
    r: power of the step count in the averaging weight.
    weight_lr_power: power of the maximal learning rate in the averaging
      weight (0 weighs every step alike).
    weight_decay: L2 penalty coefficient, applied at :math:`y`; a number or
      a schedule of the update count.
    mask: a pytree of bools like the params (or a prefix of it), or a callable
      returning one, selecting the leaves that get weight decay.
    state_dtype: dtype of :math:`z`; ``None`` keeps each param's dtype.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of :math:`y` and :math:`z` are rounded
      stochastically (unbiased), so that steps below half an ulp still move
      them; see :func:`optfree.stochastic_rounding` and the low-precision
      guide.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count (nothing to thread through the training loop).

  Returns:
    An ``optax.GradientTransformation`` whose state is a
    :class:`ScheduleFreeState`.

  References:
    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> opt = optfree.schedule_free_sgd(0.1, warmup_steps=5)
    >>> state = opt.init(params)
    >>> for _ in range(100):
    ...   updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(jnp.round(optfree.eval_params(state, params), 3))
    [3. 3.]
  """
  _validate(
      "schedule_free_sgd",
      learning_rate=learning_rate,
      b1=b1,
      warmup_steps=warmup_steps,
      r=r,
      weight_lr_power=weight_lr_power,
      weight_decay=weight_decay,
  )
  _rounding.check_rounding(rounding, seed)
  return _schedule_free_elementwise(
      "schedule_free_sgd", learning_rate=learning_rate, b1=b1,
      normalized=False, scalars=lambda step: (None, _warmup_factor(warmup_steps, step), 1),
      r=r, weight_lr_power=weight_lr_power, weight_decay=weight_decay,
      weight_decay_at="y", mask=mask, state_dtype=state_dtype,
      rounding=rounding, seed=seed)


@_checks.reference_names(**_checks.REFERENCE_NAMES["schedule_free_adamw"])
def schedule_free_adamw(
    learning_rate: optax.ScalarOrSchedule = 0.0025,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    weight_decay_at: Literal["y", "x"] = "y",
    bias_correction: Literal["denominator", "step_size"] = "denominator",
    mask: _tree.MaskOrFn = None,
    state_dtype: Any = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""Schedule-Free AdamW, as ``schedulefree.AdamWScheduleFree``.

  As :func:`schedule_free_sgd` with the z-step direction normalized by the
  bias-corrected second moment (no first moment: the averaging plays its
  role), the weight decay added after normalization, at :math:`y`:

  .. math::

    \nu_{k+1} &= \beta_2 \nu_k + (1 - \beta_2) g_k^2, \\
    d_k &= \frac{g_k}{\sqrt{\nu_{k+1} / (1 - \beta_2^{k+1})} + \epsilon}
           + \lambda y_k, \\
    z_{k+1} &= z_k - \gamma_k d_k, \\
    y_{k+1} &= y_k + c_{k+1} (z_{k+1} - y_k)
               - \gamma_k (1 - \beta_1)(1 - c_{k+1}) d_k,

  with :math:`\gamma_k`, :math:`c_{k+1}` as in :func:`schedule_free_sgd`
  (one learning-rate evaluation per step, shared by both). The state holds two
  param-sized buffers (:math:`z`, :math:`\nu`).

  The Schedule-Free AdamW that won AlgoPerf v0.5's self-tuning track
  (mlcommons/submissions_algorithms, ``submissions/self_tuning/
  schedule_free_adamw``, class ``AdamWScheduleFree``) differs in two places,
  each an option here: ``weight_decay_at="x"`` decays at
  :math:`x_k = (y_k - (1 - \beta_1) z_k) / \beta_1` instead of
  :math:`y_k`, and ``bias_correction="step_size"`` moves the bias correction
  from the denominator to the z-step,

  .. math::

    d_k = \frac{g_k}{\sqrt{\nu_{k+1}} + \epsilon} + \lambda x_k, \quad
    z_{k+1} = z_k - \gamma_k \sqrt{1 - \beta_2^{k+1}}\, d_k

  (the averaging weight still uses :math:`\gamma_k`). Its recipe, with the
  submission's ``HPARAMS`` and ``step_hint`` the workload's step budget::

    optfree.schedule_free_adamw(
        0.0025, b1=0.9, b2=0.9955159689799007, eps=1e-8,
        weight_decay=0.08121616522670176, r=0.75, weight_lr_power=2.0,
        warmup_steps=int(0.02 * step_hint * 0.75),
        weight_decay_at="x", bias_correction="step_size")

  It still differs from the submission in the second moment, which the
  submission keeps in bfloat16 (``state_dtype=jnp.bfloat16`` here would
  make :math:`z` bfloat16 too), in the learning rate's floor at ``eps``
  (equal while the learning rate is at least ``eps``), and in its reset of
  params and learning rate when evaluations stall, which is outside the
  optimizer.

  Args:
    learning_rate: a non-negative float or an optax schedule of the update
      count (the averaging weight then uses its running maximum).
    b1: interpolation between :math:`z` and :math:`x`, in (0, 1).
    b2: decay of the second-moment average, in [0, 1).
    eps: added to the denominator outside the square root.
    warmup_steps: length of the linear warmup; 0 means none.
    r: power of the step count in the averaging weight.
    weight_lr_power: power of the maximal learning rate in the averaging
      weight.
    weight_decay: decoupled weight decay coefficient, applied at
      ``weight_decay_at``; a number or a schedule of the update count.
    weight_decay_at: ``"y"`` (schedulefree) or ``"x"`` (AlgoPerf).
    bias_correction: ``"denominator"`` (schedulefree) or ``"step_size"``
      (AlgoPerf).
    mask: a pytree of bools like the params (or a prefix of it), or a callable
      returning one, selecting the leaves that get weight decay.
    state_dtype: dtype of :math:`z` and :math:`\nu`; ``None`` keeps each
      param's dtype.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of :math:`y`, :math:`z` and :math:`\nu`
      are rounded stochastically (unbiased), so that steps below half an ulp
      still move them; see :func:`optfree.stochastic_rounding` and the
      low-precision guide.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count (nothing to thread through the training loop).

  Returns:
    An ``optax.GradientTransformation`` whose state is a
    :class:`ScheduleFreeState`.

  References:
    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.

    Kasimbeg et al., `Accelerating Neural Network Training: An Analysis of
    the AlgoPerf Competition <https://arxiv.org/abs/2502.15015>`_, ICLR 2025.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> opt = optfree.schedule_free_adamw(0.5, warmup_steps=10)
    >>> state = opt.init(params)
    >>> for _ in range(200):
    ...   updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(jnp.round(optfree.eval_params(state, params), 2))
    [3. 3.]
  """
  _validate(
      "schedule_free_adamw",
      learning_rate=learning_rate,
      b1=b1,
      b2=b2,
      eps=eps,
      warmup_steps=warmup_steps,
      r=r,
      weight_lr_power=weight_lr_power,
      weight_decay=weight_decay,
  )
  _rounding.check_rounding(rounding, seed)
  _checks.check_choice("weight_decay_at", weight_decay_at, ("y", "x"))
  _checks.check_choice("bias_correction", bias_correction,
                       ("denominator", "step_size"))

  def scalars(step):
    normalizer, z_step_factor = _adam_scalars(
        b2=b2, eps=eps, step=step, bias_correction=bias_correction)
    return normalizer, _warmup_factor(warmup_steps, step), z_step_factor

  return _schedule_free_elementwise(
      "schedule_free_adamw", learning_rate=learning_rate, b1=b1,
      normalized=True, scalars=scalars, r=r, weight_lr_power=weight_lr_power,
      weight_decay=weight_decay, weight_decay_at=weight_decay_at, mask=mask,
      state_dtype=state_dtype, rounding=rounding, seed=seed)


@_checks.reference_names(**_checks.REFERENCE_NAMES["schedule_free_radam"])
def schedule_free_radam(
    learning_rate: optax.ScalarOrSchedule = 0.0025,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    silent_sgd_phase: bool = True,
    mask: _tree.MaskOrFn = None,
    state_dtype: Any = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""Schedule-Free RAdam, as ``schedulefree.RAdamScheduleFree``.

  As :func:`schedule_free_adamw` without warmup: the rectification of RAdam
  scales the learning rate instead. With :math:`t = k + 1`,
  :math:`\rho_\infty = 2 / (1 - \beta_2) - 1` and
  :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)`:

  .. math::

    \gamma_k = \begin{cases}
      \gamma \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                        {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}
        & \rho_t > 4 \text{ (Adam-normalized } d_k\text{)} \\
      0 \text{ if silent\_sgd\_phase else } \gamma
        & \rho_t \le 4 \text{ (} d_k = g_k + \lambda y_k \text{)}
    \end{cases}

  During a silent SGD phase only :math:`\nu` moves; :math:`y`, :math:`z` and
  the averaging weights stay put.

  Args:
    learning_rate: a non-negative float or an optax schedule of the update
      count (the averaging weight then uses its running maximum).
    b1: interpolation between :math:`z` and :math:`x`, in (0, 1).
    b2: decay of the second-moment average, in [0, 1).
    eps: added to the denominator outside the square root.
    r: power of the step count in the averaging weight.
    weight_lr_power: power of the maximal learning rate in the averaging
      weight.
    weight_decay: decoupled weight decay coefficient, applied at :math:`y`;
      a number or a schedule of the update count.
    silent_sgd_phase: whether to skip the SGD steps while
      :math:`\rho_t \le 4` (the first 4 steps for :math:`\beta_2 = 0.999`).
    mask: a pytree of bools like the params (or a prefix of it), or a callable
      returning one, selecting the leaves that get weight decay.
    state_dtype: dtype of :math:`z` and :math:`\nu`; ``None`` keeps each
      param's dtype.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of :math:`y`, :math:`z` and :math:`\nu`
      are rounded stochastically (unbiased), so that steps below half an ulp
      still move them; see :func:`optfree.stochastic_rounding` and the
      low-precision guide.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count (nothing to thread through the training loop).

  Returns:
    An ``optax.GradientTransformation`` whose state is a
    :class:`ScheduleFreeState`.

  References:
    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.

    Liu et al., `On the Variance of the Adaptive Learning Rate and Beyond
    <https://arxiv.org/abs/1908.03265>`_, ICLR 2020.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> opt = optfree.schedule_free_radam(0.5)
    >>> state = opt.init(params)
    >>> for _ in range(200):
    ...   updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(jnp.round(optfree.eval_params(state, params), 2))
    [3. 3.]
  """
  _validate(
      "schedule_free_radam",
      learning_rate=learning_rate,
      b1=b1,
      b2=b2,
      eps=eps,
      r=r,
      weight_lr_power=weight_lr_power,
      weight_decay=weight_decay,
  )
  _rounding.check_rounding(rounding, seed)

  def scalars(step):
    normalizer, rectification = _radam_scalars(
        b2=b2, eps=eps, step=step, silent_sgd_phase=silent_sgd_phase)
    return normalizer, rectification, 1

  return _schedule_free_elementwise(
      "schedule_free_radam", learning_rate=learning_rate, b1=b1,
      normalized=True, scalars=scalars, r=r, weight_lr_power=weight_lr_power,
      weight_decay=weight_decay, weight_decay_at="y", mask=mask,
      state_dtype=state_dtype, rounding=rounding, seed=seed)


@_checks.reference_names(**_checks.REFERENCE_NAMES["schedule_free"])
def schedule_free(
    base_optimizer: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    *,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    r: float = 0.0,
    weight_decay_at_y: float = 0.0,
    state_dtype: Any = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Makes an optax optimizer Schedule-Free (``ScheduleFreeWrapperReference``).

  The base optimizer computes the z-step: it sees :math:`z` as its params (so
  a base with weight decay, e.g. ``optax.adamw``, decays :math:`z`) and its
  update :math:`u_k` is the step of :math:`z`. Turn off the base's own
  momentum (``optax.sgd(lr)``, ``optax.adam(lr, b1=0.0)``): the averaging
  replaces it. With :math:`\lambda_y` = ``weight_decay_at_y``:

  .. math::

    \tilde z_k &= z_k - \gamma_k \lambda_y y_k, \quad
    z_{k+1} = \tilde z_k + u_k, \quad
    u_k = \text{base}(g_k, \text{params}=\tilde z_k), \\
    y_{k+1} &= y_k + c_{k+1} (z_{k+1} - y_k)
               + (1 - \beta_1)(1 - c_{k+1}) (z_{k+1} - z_k),

  with :math:`c_{k+1}` as in :func:`schedule_free_sgd`, computed from
  ``learning_rate`` (pass the same value or schedule the base uses).

  Args:
    base_optimizer: an optax transformation whose output is the z-step
      (learning rate included), without momentum.
    learning_rate: the base's learning rate (float or schedule of the update
      count), used for the averaging weight and ``weight_decay_at_y``.
    b1: interpolation between :math:`z` and :math:`x`, in (0, 1).
    weight_lr_power: power of the maximal learning rate in the averaging
      weight.
    r: power of the step count in the averaging weight.
    weight_decay_at_y: weight decay computed at :math:`y`, applied to
      :math:`z`.
    state_dtype: dtype of :math:`z` (the base sees and initialises from it);
      ``None`` keeps each param's dtype.
    rounding: ``"nearest"`` or ``"stochastic"``: bfloat16 and float16
      writes of :math:`y` and :math:`z` are rounded stochastically (computed
      in float32 first). The base optimizer's own state is written as the
      base writes it (e.g. ``optax.adam``'s moments to the nearest value in
      their dtype; its ``mu_dtype`` or a float32 ``state_dtype`` avoid
      bfloat16 or float16 there).
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (extra arguments are passed to
    the base) whose state is a :class:`ScheduleFreeState`.

  References:
    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> opt = optfree.schedule_free(optax.adam(0.5, b1=0.0), 0.5)
    >>> state = opt.init(params)
    >>> for _ in range(200):
    ...   updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(jnp.round(optfree.eval_params(state, params), 2))
    [3. 3.]
  """
  _validate(
      "schedule_free",
      learning_rate=learning_rate,
      b1=b1,
      r=r,
      weight_lr_power=weight_lr_power,
      weight_decay_at_y=weight_decay_at_y,
  )
  _checks.check_float_dtype("state_dtype", state_dtype)
  _rounding.check_rounding(rounding, seed)
  base_optimizer = optax.with_extra_args_support(base_optimizer)
  # Stochastic rounding computes z + u in float32 before rounding it.
  widen = ((lambda x: x) if rounding == "nearest" else
           (lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32))))

  def init_fn(params):
    _rounding.check_dtypes("schedule_free", rounding, params, state_dtype)
    z = _copy_tree(params, state_dtype)
    return _init_state(params, b1, z, base_optimizer.init(z))

  def update_fn(grads, state, params=None, **extra_args):
    _check_trees("schedule_free", grads, state, params)
    k = state.count
    lr, b1_, c, scalars = _averaging_step(
        state, _tree.value_at(learning_rate, k), b1, r, weight_lr_power
    )
    decay = None
    if _is_static_zero(weight_decay_at_y):
      base_params = state.z
    else:
      decay = lr * jnp.asarray(weight_decay_at_y, lr.dtype)
      base_params = jax.tree.map(
          lambda z, y: (z - decay * y).astype(z.dtype), state.z, params
      )
    base_updates, base_state = base_optimizer.update(
        grads, state.base_state, base_params, **extra_args
    )
    # y + c (z - y) + (1 - b1 (1 - c)) (z_new - z), rewritten on z_new as in
    # the elementwise optimizers, with z_new - z = u - decay y.
    z_step_weight = (1 - b1_) * (1 - c)
    write = _rounding.write(rounding, seed, k)
    to_update = _rounding.params_update(rounding, seed, k)

    def leaf_update(leaf, y, base_z, u, z):
      if rounding == "stochastic" and decay is not None:
        # z - decay y is rounded for the base to read, not for z's write:
        # rounded to nearest, a decay below half an ulp would never act.
        base_z = widen(z) - decay * y
      new_z = write(widen(base_z) + widen(u), z.dtype, leaf, _rounding.Z)
      z_step = u if decay is None else u - decay * y
      update = c * (new_z - y) + z_step_weight * z_step
      return to_update(update, y, leaf), new_z

    updates, z = _tree.map_leaves(
        leaf_update, params, base_params, base_updates, state.z,
        num_outputs=2)
    return updates, ScheduleFreeState(z=z, base_state=base_state, **scalars)

  return _public.public_transformation(
      "schedule_free", optax.GradientTransformationExtraArgs(init_fn, update_fn))


def _find_schedule_free_states(tree: Any) -> list[ScheduleFreeState]:
  is_state = lambda node: isinstance(node, ScheduleFreeState)
  return [
      node for node in jax.tree.leaves(tree, is_leaf=is_state) if is_state(node)
  ]


def _find_restored_dicts(tree: Any) -> list[str]:
  """Key paths of the dicts in ``tree`` that have ScheduleFreeState's fields.

  A checkpoint restored without a target (orbax) holds such dicts where the
  optimizer had a ScheduleFreeState.
  """
  fields = set(ScheduleFreeState._fields)
  is_dict_state = lambda node: isinstance(node, dict) and set(node) == fields
  return [
      jax.tree_util.keystr(path)
      for path, node in jax.tree_util.tree_flatten_with_path(
          tree, is_leaf=is_dict_state)[0]
      if is_dict_state(node)
  ]


def _is_masked(node: Any) -> bool:
  return isinstance(node, optax.MaskedNode)


def _the_schedule_free_state(
    opt_state: optax.OptState, params: optax.Params
) -> tuple[ScheduleFreeState, bool]:
  """The one ScheduleFreeState in ``opt_state``, checked against ``params``.

  Returns it, and whether its z is ``params`` raveled into one vector (as
  ``optax.flatten`` keeps it). Raises the errors :func:`eval_params`
  documents, each saying what to do.
  """
  states = _find_schedule_free_states(opt_state)
  if not states and _find_schedule_free_states(params):
    raise ValueError(
        "eval_params: the ScheduleFreeState is in the second argument: call "
        "eval_params(opt_state, params).")
  if not states and _find_restored_dicts(opt_state):
    raise ValueError(
        "eval_params: opt_state holds a ScheduleFreeState as a plain dict "
        f"(at opt_state{_find_restored_dicts(opt_state)[0]}), not as a "
        "ScheduleFreeState. " + _public.RESTORE_HINT)
  if not states:
    raise ValueError(
        "eval_params: opt_state contains no ScheduleFreeState; pass the state "
        "of an optimizer built with optfree.schedule_free* (possibly nested in "
        "chain, named_chain, inject_hyperparams, MultiSteps or masked).")
  if len(states) > 1:
    raise ValueError(
        f"eval_params: opt_state contains {len(states)} ScheduleFreeStates; "
        "it is ambiguous which one defines x. Call eval_params on the part of "
        "the state (and the params) that one of them optimizes.")
  (state,) = states
  # Compared by key path with the entries of wrappers such as flax.nnx's
  # Variable dropped, so that a params tree wrapped differently from z
  # (nnx's Param vs OptVariable, or bare arrays) still pairs leaf by leaf.
  mismatch = _checks.describe_shapes_mismatch(
      "params", _checks.shapes_by_path(params, unwrap=True),
      _checks.shapes_by_path(state.z, _is_masked, unwrap=True))
  z_leaves = jax.tree.leaves(state.z, is_leaf=_is_masked)
  one_vector = (len(z_leaves) == 1 and not _is_masked(z_leaves[0])
                and jnp.ndim(z_leaves[0]) == 1)
  if mismatch and one_vector and jnp.size(z_leaves[0]) == sum(
      jnp.size(y) for y in jax.tree.leaves(params)):
    return state, True
  if mismatch:
    hint = ""
    if one_vector and len(jax.tree.leaves(params)) > 1:
      # optax.flatten's z under optax.partition or masked: which leaves it
      # holds is in the labels, which the state does not keep.
      hint = (
          f"\nz is one vector of {jnp.size(z_leaves[0])} elements, as "
          "optax.flatten keeps it: if that optimizer runs on a group of the "
          "params (optax.partition, optax.masked), pass eval_params only "
          "that group's params, in the same order.")
    raise ValueError(
        "eval_params: params do not match the ScheduleFreeState's z (the "
        "params the optimizer was initialised from):\n" + "\n".join(mismatch)
        + hint)
  return state, False


def eval_params(
    opt_state: optax.OptState, params: optax.Params
) -> optax.Params:
  r"""The point to evaluate the model at: the average :math:`x`.

  From :math:`y = (1 - \beta_1) z + \beta_1 x`:

  .. math::

    x = (y - (1 - \beta_1) z) / \beta_1,

  computed per leaf with the :math:`\beta_1` of the last update. The
  :class:`ScheduleFreeState` is found anywhere in a nested optax state
  (``optax.chain``, ``optax.named_chain``, ``optax.inject_hyperparams``,
  ``optax.MultiSteps``, ``optax.masked``; leaves that a mask left out of the
  Schedule-Free optimizer are returned as they are), also under
  ``optax.flatten``, whose state keeps :math:`z` as one vector.

  Args:
    opt_state: the optimizer state, containing exactly one
      :class:`ScheduleFreeState`.
    params: the params the optimizer updates (the :math:`y` sequence).

  Returns:
    The :math:`x` sequence, a pytree like ``params`` with their dtypes.

  Raises:
    ValueError: when ``opt_state`` contains no :class:`ScheduleFreeState`,
      more than one, or one whose :math:`z` does not match ``params`` (other
      key paths or shapes, each named in the message); also when it holds a
      ScheduleFreeState as a plain dict (a checkpoint restored without a
      target), saying how to restore it.
    TypeError: when a params leaf paired with :math:`z` is not
      floating-point.

  Example:
    >>> import jax.numpy as jnp, optax, optfree
    >>> opt = optax.chain(optax.clip(1.0), optfree.schedule_free_sgd(0.5))
    >>> params = jnp.array([1.0, 2.0])
    >>> state = opt.init(params)
    >>> for grad in (jnp.array([1.0, -1.0]), jnp.array([1.0, 1.0])):
    ...   updates, state = opt.update(grad, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> x = optfree.eval_params(state, params)
    >>> print(jnp.round(params, 4), jnp.round(x, 4))
    [0.225 2.225] [0.25 2.25]
  """
  state, flattened = _the_schedule_free_state(opt_state, params)

  def x_leaf(y, z):
    if _is_masked(z):  # a leaf the optimizer never saw
      return y
    return ((y - (1 - state.b1) * z) / state.b1).astype(jnp.asarray(y).dtype)

  y_leaves, treedef = jax.tree.flatten(params)
  z_leaves = jax.tree.leaves(state.z, is_leaf=_is_masked)
  if flattened:
    _checks.check_float_leaves("eval_params", params)
    # optax.flatten's layout: z is every param leaf raveled and concatenated.
    x = x_leaf(jnp.concatenate([jnp.ravel(y) for y in y_leaves]), z_leaves[0])
    pieces = jnp.split(x, np.cumsum([jnp.size(y) for y in y_leaves])[:-1])
    return treedef.unflatten([
        piece.reshape(jnp.shape(y)).astype(jnp.asarray(y).dtype)
        for piece, y in zip(pieces, y_leaves)])
  # Leaves a mask kept out of the optimizer are returned as they are.
  _checks.check_float_leaves("eval_params", treedef.unflatten(
      [None if _is_masked(z) else y for y, z in zip(y_leaves, z_leaves)]))
  return treedef.unflatten([x_leaf(y, z) for y, z in zip(y_leaves, z_leaves)])
