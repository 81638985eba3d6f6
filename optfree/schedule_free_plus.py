r"""ScheduleFree+: learning-rate-free and schedule-free (AdamC + Polyak step).

ScheduleFree+ (Defazio, 2026) runs Schedule-Free averaging over an Adam
z-step whose step size is a Polyak step computed online from the loss value,
so that neither a learning rate nor a schedule has to be chosen. With
:math:`k` the number of updates already applied, :math:`g_k` the gradient and
:math:`f_k` the loss at the params :math:`y_k`:

.. math::

  \beta_k &= 1 - (1 - \beta)^{1 - p_k} (1 - \beta_{\max})^{p_k}, \quad
    p_k = \min(k / K, 1) \quad (\beta_k = \beta \text{ when } K = 0), \\
  \hat G_k &= \big(\rho \hat G_{k-1}
    + (1 - \rho) \sqrt{\pi / 2}\, \|g_k\|_1\big) / (1 - \rho^{k+1}), \\
  \gamma_k &= \max(\eta_k, \epsilon) \cdot
    \max\big(0, f_k + \beta_k \langle g_k, z_k - x_k \rangle\big)
    / \hat G_k, \\
  z_{k+1} &= z_k - \gamma_k^2 \lambda y_k
    - \gamma_k \frac{\hat m_{k+1}}{\sqrt{\hat v_{k+1}} + \epsilon}, \\
  x_{k+1} &= (1 - c_{k+1}) x_k + c_{k+1} z_{k+1}, \quad
  y_{k+1} = \beta_k x_{k+1} + (1 - \beta_k) z_{k+1},

(the reference averages on from the bias-corrected :math:`\hat G`, so the
correction compounds: with :math:`\rho > 0` the first steps are much
smaller, 47x at step 4 and 23x at step 80 for :math:`\rho = 0.9`), where
:math:`\hat m, \hat v` are Adam's bias-corrected moments of
:math:`g` (``b1``, ``b2``), :math:`\beta` is ``sf_b1`` annealed to
:math:`\beta_{\max}` = ``sf_b1_max`` over :math:`K` = ``sf_b1_anneal_steps``,
:math:`\rho` is ``polyak_b``, :math:`\eta_k` the learning rate (a multiplier,
0.3 by default, times the optional linear warmup), :math:`\lambda` the weight
decay (AdamC: scaled by :math:`\gamma_k^2`, applied at :math:`y`), and
:math:`c_{k+1} = 1` for the first ``c_warmup`` steps, then
:math:`w_{k+1} / \sum w` with :math:`w_{k+1} = (k+1)^r \gamma_{\max}^p`
(:math:`\gamma_{\max}` the running maximum of :math:`\gamma`, from
:math:`\epsilon`).

The reference keeps x, y, z and both moments. Here the params are :math:`y`
and :math:`x = (y - (1 - \beta_{k-1}) z) / \beta_{k-1}` follows from them,
so the state holds :math:`z, m, v` and scalars, and
:math:`z_k - x_k = (z_k - y_k) / \beta_{k-1}`. The step's only global
quantities are two sums over every leaf, :math:`\|g_k\|_1` and
:math:`\langle g_k, z_k - y_k \rangle`: the only cross-device reductions of
a sharded step.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from optfree import _checks
from optfree import _public
from optfree import _tree
from optfree import rounding as _rounding
from optfree.schedule_free import ScheduleFreeState
from optfree.schedule_free import _check_trees
from optfree.schedule_free import _copy_tree
from optfree.schedule_free import _decay_per_leaf
from optfree.schedule_free import _init_state
from optfree.schedule_free import _kahan_add
from optfree.schedule_free import _scalar_dtype
from optfree.schedule_free import _warmup_factor
from optfree.schedule_free import _zeros_tree
from optfree.schedule_free import _is_static_zero


class ScheduleFreePlusState(NamedTuple):
  r"""The z-step's part of ScheduleFree+'s :class:`ScheduleFreeState`.

  Attributes:
    grad_l1_ema: the bias-corrected exponential average :math:`\hat G_k`
      of :math:`\sqrt{\pi/2} \|g\|_1`, which the next step averages on
      from (as the reference does, so the correction compounds).
    step_size: the step size :math:`\gamma_k` of the last update (the
      reference's ``scheduled_lr``), for logging.
    mu: Adam's first moment, like the params (dtype ``state_dtype``).
    nu: Adam's second moment, like the params (dtype ``state_dtype``).
  """

  grad_l1_ema: jax.Array
  step_size: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def _log_one_minus(value: Any) -> Any:
  # A number in Python (float64), as the reference; a traced one in JAX.
  if isinstance(value, (int, float)):
    return math.log(1 - value)
  return jnp.log1p(-value)


def _sf_b1_at(count: jax.Array, sf_b1: Any, sf_b1_max: Any,
              anneal_steps: Any, dtype: Any) -> jax.Array:
  """The Schedule-Free interpolation of update ``count`` (log-space anneal)."""
  if _is_static_zero(anneal_steps):
    return jnp.asarray(sf_b1, dtype)
  anneal_steps = jnp.asarray(anneal_steps, dtype)
  progress = jnp.where(
      anneal_steps > 0,
      jnp.minimum(count.astype(dtype) / jnp.maximum(anneal_steps, 1), 1), 0)
  return 1 - jnp.exp(_log_one_minus(sf_b1) * (1 - progress)
                     + _log_one_minus(sf_b1_max) * progress)


def _check_value(value: Any) -> jax.Array:
  """The loss, checked where it is concrete (outside jit)."""
  if value is None:
    raise ValueError(
        "schedule_free_plus: update() needs the loss at the params: call "
        "update(grads, state, params, value=loss). The Polyak step size is "
        "computed from it (under pmap, pmean both the grads and value).")
  value = jnp.asarray(value)
  if value.shape != ():
    raise ValueError(
        "schedule_free_plus: value must be the scalar loss at the params, got "
        f"an array of shape {value.shape}.")
  if not isinstance(value, jax.core.Tracer):
    number = float(value)
    if not math.isfinite(number):
      raise ValueError(
          f"schedule_free_plus: value must be finite, got {number} (under "
          "jit the step's updates come out non-finite instead; "
          "optax.apply_if_finite skips a step whose gradients are not "
          "finite).")
    if number < 0:
      raise ValueError(
          f"schedule_free_plus: value must be >= 0, got {number}. The Polyak "
          "step treats the loss's minimum as 0: pass loss - floor for a loss "
          "that can be negative.")
  return value


@_checks.reference_names(**_checks.REFERENCE_NAMES["schedule_free_plus"])
def schedule_free_plus(
    learning_rate: optax.ScalarOrSchedule = 0.3,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    sf_b1: float = 0.9,
    sf_b1_max: float = 0.965,
    sf_b1_anneal_steps: int = 0,
    eps: float = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    polyak_b: float = 0.0,
    c_warmup: int = 200,
    warmup_steps: int = 0,
    mask: _tree.MaskOrFn = None,
    state_dtype: Any = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""ScheduleFree+, as ``AdamCScheduleFreePlusPaper`` of schedule_free.

  Learning-rate-free and schedule-free: the step size is a Polyak step from
  the loss (see the module docstring for the update), so ``update`` takes
  the loss at the params, ``update(grads, state, params, value=loss)``, as
  ``optax.polyak_sgd`` does. Evaluate the model at :func:`eval_params`.
  The state holds three param-sized buffers (:math:`z, m, v`).

  The Polyak step assumes the loss can reach about 0 (it uses
  :math:`f - f^\star` with :math:`f^\star = 0`): pass ``loss - floor`` for a
  loss with a known floor. With a gradient of zero L1 norm the step size is 0
  (the reference divides by zero). ``value`` is checked (finite, >= 0) where
  it is concrete; under ``jit`` a non-finite value makes the updates
  non-finite, visibly. ``optax.apply_if_finite`` skips such a step when the
  gradients are non-finite too, as ``jax.value_and_grad`` gives them for a
  non-finite loss (it checks the gradients, not ``value``).
  Under ``pmap``, ``pmean`` both the gradients and ``value``.

  Defaults: the reference's, except ``learning_rate=0.3`` (1.0 there) and
  ``c_warmup=200`` (0 there), chosen on validation data of the quality
  benchmark's two tasks (``benchmarks/schedule_free_plus_search.py``): at
  the reference's defaults the MNIST-1D CNN diverges within 200 steps, and
  ``c_warmup=200`` was the best of the settings tried on both tasks. Pass
  ``learning_rate=1.0, c_warmup=0`` for the reference's.

  Args:
    learning_rate: a multiplier of the Polyak step, a float or an optax
      schedule of the update count (e.g. a warmup); floored at ``eps`` as in
      the reference.
    b1: decay of Adam's first moment, in [0, 1).
    b2: decay of Adam's second moment, in [0, 1).
    sf_b1: Schedule-Free interpolation between :math:`z` and :math:`x`, in
      (0, 1).
    sf_b1_max: the interpolation reached after annealing, in (0, 1).
    sf_b1_anneal_steps: steps to anneal ``sf_b1`` to ``sf_b1_max``
      (log-space in :math:`1 - \beta`); 0 means no annealing.
    eps: added to Adam's denominator; also the floor of the learning rate
      and the start of the running maximum step size.
    weight_decay: AdamC weight decay, scaled by the step size squared and
      applied at :math:`y` (values like 20 or 50, not AdamW's 0.1); a number
      or a schedule of the update count.
    r: power of the step count in the averaging weight.
    weight_lr_power: power of the maximal step size in the averaging weight.
    polyak_b: decay of the average of the gradient's L1 norm, in [0, 1);
      0 uses each step's own norm.
    c_warmup: number of first steps with :math:`c = 1` (:math:`x` follows
      :math:`z`); the reference recommends 1-2x a learning-rate warmup.
    warmup_steps: a linear warmup :math:`\min((k+1)/W, 1)` of the
      learning rate (optfree's addition; 0 means none, as the reference).
    mask: a pytree of bools like the params (or a prefix), or a callable
      returning one, selecting the leaves that get weight decay.
    state_dtype: dtype of :math:`z, m, v`; ``None`` keeps each param's.
    rounding: ``"nearest"`` or ``"stochastic"``: bfloat16 and float16
      writes of :math:`y, z, m, v` are rounded stochastically.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`ScheduleFreeState` with a :class:`ScheduleFreePlusState` as its
    ``base_state``.

  References:
    Defazio, `ScheduleFree+: Scaling Learning-Rate-Free & Schedule-Free
    Learning to Large Language Models <https://arxiv.org/abs/2605.19095>`_,
    2026; reference ``AdamCScheduleFreePlusPaper`` in
    facebookresearch/schedule_free.

    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, NeurIPS 2024.

    Defazio, `Why Gradients Rapidly Increase Near the End of Training
    <https://arxiv.org/abs/2506.02285>`_, 2025 (AdamC).

  Example:
    >>> import jax, jax.numpy as jnp, optax, optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> params = jnp.zeros(2)
    >>> opt = optfree.schedule_free_plus()
    >>> state = opt.init(params)
    >>> for _ in range(100):
    ...   value, grads = jax.value_and_grad(loss)(params)
    ...   updates, state = opt.update(grads, state, params, value=value)
    ...   params = optax.apply_updates(params, updates)
    >>> print(jnp.round(optfree.eval_params(state, params), 2))
    [3. 3.]
  """
  numbers = dict(b1=b1, b2=b2, sf_b1=sf_b1, sf_b1_max=sf_b1_max,
                 sf_b1_anneal_steps=sf_b1_anneal_steps, eps=eps, r=r,
                 weight_lr_power=weight_lr_power, polyak_b=polyak_b,
                 c_warmup=c_warmup, warmup_steps=warmup_steps)
  for name, value in numbers.items():
    _checks.check_number(name, value,
                         schedulable_via="optfree.schedule_free_plus")
  _checks.check_non_negative("learning_rate", learning_rate)
  for name, value in dict(b1=b1, b2=b2, polyak_b=polyak_b).items():
    _checks.check_interval(name, value, 0.0, 1.0, high_closed=False)
  for name, value in dict(sf_b1=sf_b1, sf_b1_max=sf_b1_max).items():
    _checks.check_interval(name, value, 0.0, 1.0, low_closed=False,
                           high_closed=False)
  for name, value in dict(eps=eps, weight_decay=weight_decay, r=r,
                          weight_lr_power=weight_lr_power).items():
    _checks.check_non_negative(name, value)
  for name, value in dict(sf_b1_anneal_steps=sf_b1_anneal_steps,
                          c_warmup=c_warmup,
                          warmup_steps=warmup_steps).items():
    _checks.check_int(name, value)
  _checks.check_float_dtype("state_dtype", state_dtype)
  _rounding.check_rounding(rounding, seed)
  name = "schedule_free_plus"

  def init_fn(params):
    _rounding.check_dtypes(name, rounding, params, state_dtype)
    dtype = _scalar_dtype(params)
    base_state = ScheduleFreePlusState(
        grad_l1_ema=jnp.zeros([], dtype),
        step_size=jnp.zeros([], dtype),
        mu=_zeros_tree(params, state_dtype),
        nu=_zeros_tree(params, state_dtype))
    state = _init_state(
        params, sf_b1, _copy_tree(params, state_dtype), base_state)
    # The reference's running maximum step size starts at eps.
    return state._replace(lr_max=jnp.asarray(eps, dtype))

  def update_fn(grads, state, params=None, *, value=None, **extra_args):
    del extra_args
    _check_trees(name, grads, state, params)
    value = _check_value(value)
    k = state.count
    dtype = state.lr_max.dtype
    step = optax.safe_increment(k).astype(dtype)
    sf_b1_k = _sf_b1_at(k, sf_b1, sf_b1_max, sf_b1_anneal_steps, dtype)

    # The two global sums, in the scalar dtype (float32 at least).
    wide = lambda x: x.astype(jnp.promote_types(x.dtype, dtype))  # noqa: E731
    grad_l1 = sum(jnp.sum(jnp.abs(wide(g))) for g in jax.tree.leaves(grads))
    # <g, z - x> with z - x = (z - y) / b1 of the last update.
    inner = sum(jnp.sum(wide(g) * (wide(z) - wide(y)))
                for g, z, y in zip(jax.tree.leaves(grads),
                                   jax.tree.leaves(state.z),
                                   jax.tree.leaves(params)))
    ip_term = sf_b1_k * inner / state.b1
    base = state.base_state
    # The reference keeps the bias-corrected average as its running average,
    # so the correction compounds: with polyak_b > 0 the first steps shrink
    # (by 47x at step 4 and still 23x at step 80 for 0.9), a warmup that the
    # published results were obtained with.
    grad_l1_ema_corr = (
        polyak_b * base.grad_l1_ema
        + (1 - polyak_b) * grad_l1 * math.sqrt(math.pi / 2)) / (
            1 - jnp.asarray(polyak_b, dtype) ** step)
    numerator = jnp.maximum(0, value.astype(dtype) + ip_term)
    # A zero gradient has no Polyak step (the reference divides by zero).
    # (A NaN average is not "zero": it reaches the updates, visibly.)
    moving = grad_l1_ema_corr != 0
    polyak_lr = jnp.where(
        moving, numerator / jnp.where(moving, grad_l1_ema_corr, 1), 0)
    lr = jnp.asarray(_tree.value_at(learning_rate, k), dtype) * (
        _warmup_factor(warmup_steps, step))
    step_size = jnp.maximum(lr, eps) * polyak_lr

    lr_max = jnp.maximum(state.lr_max, step_size)
    weight = step ** jnp.asarray(r, dtype) * lr_max ** jnp.asarray(
        weight_lr_power, dtype)
    averaging = k >= c_warmup
    weight_sum, compensation = _kahan_add(
        state.weight_sum, state.weight_sum_compensation,
        jnp.where(averaging, weight, 0))
    # c = 1 during c_warmup; 0 while every weight is 0 (eps = 0).
    positive = weight_sum > 0
    c = jnp.where(averaging, jnp.where(
        positive, weight / jnp.where(positive, weight_sum, 1), 0), 1)

    bias_correction1 = 1 - jnp.asarray(b1, dtype) ** step
    bias_correction2 = 1 - jnp.asarray(b2, dtype) ** step
    decay = step_size * step_size
    z_step_weight = 1 - sf_b1_k * (1 - c)
    x_weight = sf_b1_k * (1 - c) * (1 - state.b1) / state.b1
    write = _rounding.write(rounding, seed, k)
    to_update = _rounding.params_update(rounding, seed, k)

    def leaf_update(leaf, g, y, z, m, v, weight_decay_leaf):
      compute = jnp.promote_types(jnp.result_type(g, y, z, m, v), dtype)
      g, y_, z_old = (x.astype(compute) for x in (g, y, z))
      m = write(b1 * m.astype(compute) + (1 - b1) * g, m.dtype, leaf,
                _rounding.MU)
      v = write(b2 * v.astype(compute) + (1 - b2) * g * g, v.dtype, leaf,
                _rounding.NU)
      direction = (m.astype(compute) / bias_correction1) / (
          jnp.sqrt(v.astype(compute) / bias_correction2) + eps)
      new_z = z_old
      if weight_decay_leaf is not None:
        new_z = new_z - decay * weight_decay_leaf * y_
      new_z = write(new_z - step_size * direction, z.dtype, leaf,
                    _rounding.Z)
      # y_new - y from the differences z_new - y and y - z (x - y is
      # (1 - b1_prev) / b1_prev (y - z)): exactly 0 when z_new = z = y,
      # and no x is formed. y - z, not the sum's z - y: XLA would keep one
      # z - y for both passes in a param-sized buffer (XLA:TPU in float32).
      update = (z_step_weight * (new_z.astype(compute) - y_)
                + x_weight * (y_ - z_old))
      return to_update(update, y, leaf), new_z, m, v

    updates, z, mu, nu = _tree.map_leaves(
        leaf_update, grads, params, state.z, base.mu, base.nu,
        _decay_per_leaf(_tree.value_at(weight_decay, k), mask, params),
        num_outputs=4)
    new_state = ScheduleFreeState(
        count=optax.safe_increment(k),
        lr_max=lr_max,
        weight_sum=weight_sum,
        weight_sum_compensation=compensation,
        b1=sf_b1_k,
        z=z,
        base_state=ScheduleFreePlusState(
            grad_l1_ema=grad_l1_ema_corr, step_size=step_size, mu=mu, nu=nu))
    return updates, new_state

  return _public.public_transformation(
      name, optax.GradientTransformationExtraArgs(init_fn, update_fn),
      mask=mask)
