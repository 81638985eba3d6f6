"""AdaBound, AMSBound and AdaBoundW: Adam with dynamic bounds on the step size.

Numbers follow the reference PyTorch code of Luo et al. (PyPI ``adabound``
0.0.5 for AdaBound/AMSBound, the ``AdaBoundW`` class of the Luolc/AdaBound
repository for the decoupled variant); the golden trajectories in
``tests/reference/`` are produced from it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from optfree import _checks
from optfree import _public
from optfree import _tree
from optfree import _xla_cpu
from optfree import rounding as _rounding


class ScaleByAdaBoundState(NamedTuple):
  r"""State of :func:`scale_by_adabound`.

  Attributes:
    count: number of updates already applied (int32, saturating).
    base_lr: the learning rate of the first update, :math:`\alpha_0` (0-d,
      float32 or, under x64, float64), fixed at ``init`` as torch's
      ``base_lrs``; the bounds scale by :math:`\alpha_t / \alpha_0`.
    mu: first moment, in ``mu_dtype`` (default: the params' dtype).
    nu: second moment, in the params' dtype.
    nu_max: running maximum of ``nu`` for AMSBound, ``None`` for AdaBound.
  """

  count: chex.Array
  base_lr: chex.Array
  mu: optax.Updates
  nu: optax.Updates
  nu_max: Optional[optax.Updates]


class _Bounds(NamedTuple):
  """AdaBound's scalars for one update (see :func:`_bounds`)."""

  step_size: chex.Array
  lower: chex.Array
  upper: chex.Array


def _bounds(
    *,
    learning_rate: chex.Numeric,
    base_lr: chex.Numeric,
    final_lr: chex.Numeric,
    gamma: chex.Numeric,
    b1: chex.Numeric,
    b2: chex.Numeric,
    t: chex.Numeric,
) -> _Bounds:
  r"""The bias-corrected step size and its bounds for the update at step t.

  .. math::

    \eta^\ast_t = \alpha^\ast \alpha_t / \alpha_0
      \ (\alpha^\ast \text{ if } \alpha_0 = 0), \qquad
    \eta_l(t) = \eta^\ast_t \left(1 - \tfrac{1}{\gamma t + 1}\right), \qquad
    \eta_u(t) = \eta^\ast_t \left(1 + \tfrac{1}{\gamma t}\right),

  and the step size :math:`\alpha_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`,
  which :func:`scale_by_adabound` divides by :math:`\sqrt{\hat v_t} +
  \epsilon` and clips into :math:`[\eta_l(t), \eta_u(t)]`.

  Args:
    learning_rate: :math:`\alpha_t`, the learning rate of this update.
    base_lr: :math:`\alpha_0`, the learning rate of the first update.
    final_lr: :math:`\alpha^\ast`, the rate both bounds converge to.
    gamma: :math:`\gamma`, the convergence speed of the bounds.
    b1: :math:`\beta_1`.
    b2: :math:`\beta_2`.
    t: the 1-based step, as a float.

  Returns:
    The step size and the lower and upper bounds, as 0-d arrays.
  """
  # Without a base (a learning rate starting at 0) there is nothing to scale
  # by: the bounds keep final_lr as given (the reference divides by zero).
  has_base = base_lr > 0
  final = final_lr * jnp.where(
      has_base, learning_rate / jnp.where(has_base, base_lr, 1), 1)
  return _Bounds(
      step_size=learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t),
      lower=final * (1 - 1 / (gamma * t + 1)),
      upper=final * (1 + 1 / (gamma * t)),
  )


def _scale_by_adabound(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    final_lr: chex.Numeric,
    *,
    b1: optax.ScalarOrSchedule,
    b2: optax.ScalarOrSchedule,
    gamma: chex.Numeric,
    eps: chex.Numeric,
    amsbound: bool,
    mu_dtype: Optional[jax.typing.DTypeLike],
    rounding: _rounding.Rounding,
    seed: int,
) -> optax.GradientTransformation:
  """:func:`scale_by_adabound`, validated and named ``name`` in messages."""
  for argument, value in (("final_lr", final_lr), ("gamma", gamma),
                          ("eps", eps)):
    _checks.check_number(argument, value,
                         schedulable_via=f"optfree.{name}")
  _checks.check_non_negative("learning_rate", learning_rate)
  _checks.check_non_negative("final_lr", final_lr)
  _checks.check_interval("b1", b1, 0.0, 1.0, high_closed=False)
  _checks.check_interval("b2", b2, 0.0, 1.0, high_closed=False)
  # gamma = 0 would divide by zero in the upper bound.
  _checks.check_positive("gamma", gamma)
  _checks.check_non_negative("eps", eps)
  _checks.check_float_dtype("mu_dtype", mu_dtype)
  _rounding.check_rounding(rounding, seed)
  if mu_dtype is not None:
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype)
  # Scalars in the highest enabled float precision, as the reference's Python
  # floats; each leaf narrows them to its own compute dtype.
  float_dtype = jax.dtypes.canonicalize_dtype(jnp.float64)

  def init_fn(params):
    _rounding.check_dtypes(name, rounding, params, mu_dtype)
    zeros = lambda dtype=None: jax.tree.map(  # noqa: E731
        lambda p: jnp.zeros_like(p, dtype=dtype), params)
    count = jnp.zeros([], jnp.int32)
    # Under inject_hyperparams, init sees the learning rate injected at count
    # 0 and update the current one: storing it is what lets the bounds follow
    # an injected schedule, as torch's base_lrs do under a scheduler.
    base_lr = jnp.asarray(_tree.value_at(learning_rate, count), float_dtype)
    return ScaleByAdaBoundState(
        count=count, base_lr=base_lr, mu=zeros(mu_dtype), nu=zeros(),
        nu_max=zeros() if amsbound else None)

  def update_fn(updates, state, params=None):
    _checks.check_trees_match(
        name, state.mu, gradient=updates, params=params)
    count = optax.safe_increment(state.count)
    b1_t = _tree.value_at(b1, state.count)
    b2_t = _tree.value_at(b2, state.count)
    scalars = _bounds(
        learning_rate=jnp.asarray(
            _tree.value_at(learning_rate, state.count), float_dtype),
        base_lr=state.base_lr.astype(float_dtype), final_lr=final_lr,
        gamma=gamma, b1=b1_t, b2=b2_t, t=count.astype(float_dtype))
    write = _rounding.write(rounding, seed, state.count)

    def leaf_update(index, g, m, v, v_max=None):
      # Computed in float32 at least (bfloat16 leaves; float32 leaves under
      # x64 stay float32), each output rounded once. The update reads the new
      # moments as stored, so each old moment has one reader, its own
      # in-place update, and a donated step needs no copy of it.
      dtype = jnp.promote_types(jnp.result_type(g, m, v), jnp.float32)
      up = lambda x: x.astype(dtype)  # noqa: E731
      m = write(b1_t * up(m) + (1 - b1_t) * up(g), m.dtype, index,
                _rounding.MU)
      v = write(b2_t * up(v) + (1 - b2_t) * up(g) * up(g), v.dtype, index,
                _rounding.NU)
      v_hat = v
      if v_max is not None:
        # The running maximum of two stored values is one of them: exact.
        v_hat = v_max = jnp.maximum(
            up(v_max), _xla_cpu.with_scalar_operand(up(v))).astype(v_max.dtype)
      rate = jnp.clip(up(scalars.step_size) / (jnp.sqrt(up(v_hat)) + eps),
                      up(scalars.lower), up(scalars.upper))
      update = (rate * up(m)).astype(
          g.dtype if rounding == "nearest" else dtype)
      return (update, m, v) if v_max is None else (update, m, v, v_max)

    moments = (state.mu, state.nu) + ((state.nu_max,) if amsbound else ())
    updates, mu, nu, *nu_max = _tree.map_leaves(
        leaf_update, updates, *moments, num_outputs=1 + len(moments))
    return updates, ScaleByAdaBoundState(
        count=count, base_lr=state.base_lr, mu=mu, nu=nu,
        nu_max=nu_max[0] if amsbound else None)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""Scales updates by AdaBound's bounded, bias-corrected Adam step.

  With :math:`t` the 1-based step, :math:`\alpha_t` the learning rate of this
  update and :math:`\alpha_0` the learning rate of the first update (stored
  in the state at ``init`` as ``base_lr``):

  .. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \\
    \hat v_t &= v_t \text{ (AdaBound) or }
      \max(\hat v_{t-1}, v_t) \text{ (AMSBound)}, \\
    \eta^\ast_t &= \alpha^\ast \alpha_t / \alpha_0
      \ (\alpha^\ast \text{ if } \alpha_0 = 0), \qquad
    \eta_l(t) = \eta^\ast_t \left(1 - \tfrac{1}{\gamma t + 1}\right), \qquad
    \eta_u(t) = \eta^\ast_t \left(1 + \tfrac{1}{\gamma t}\right), \\
    u_t &= \operatorname{clip}\!\left(
      \frac{\alpha_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)}
           {\sqrt{\hat v_t} + \epsilon},\ \eta_l(t),\ \eta_u(t)\right) m_t,

  where :math:`\alpha^\ast` is ``final_lr``. The output :math:`u_t` is the
  positive step, learning rate included: subtract it from the params (chain
  ``optax.scale(-1.0)``, as :func:`adabound` does).

  The bounds follow the learning rate through :math:`\alpha_t / \alpha_0`, as
  the reference does under a torch scheduler (its ``base_lrs``). This holds
  both for a schedule passed as ``learning_rate`` and for one injected with
  ``optax.inject_hyperparams`` (``init`` then receives the learning rate of
  count 0 and stores it); ``final_lr`` stays a constant, as in the reference.
  A learning rate changed by hand in an injected state moves the bounds too,
  as changing ``param_group['lr']`` does in torch. For a schedule with warmup,
  :math:`\alpha_0` is its first value, whereas torch's base is the rate the
  optimizer was built with (usually the peak).

  If :math:`\alpha_0 = 0` (a constant ``learning_rate=0``, or a schedule that
  starts at 0) there is no base to scale by, so the bounds use ``final_lr`` as
  given for the whole run (the reference raises ``ZeroDivisionError``; for a
  constant rate this is the limit as it goes to 0). A constant
  ``learning_rate=0`` therefore does not freeze the params: the step is lifted
  to the lower bound, which depends on ``final_lr`` alone.

  ``b1`` and ``b2`` may be schedules too (e.g.
  :func:`optfree.onecycle_momentum_schedule`): each update uses their values
  at its count in the moments and the bias corrections alike, as
  ``optax.inject_hyperparams`` does, and torch does under a momentum
  scheduler.

  Args:
    learning_rate: Adam's learning rate :math:`\alpha_t`, a float or an optax
      schedule.
    final_lr: the SGD learning rate :math:`\alpha^\ast` that both bounds
      converge to, a number (a schedule raises ``ValueError``, as for
      ``gamma`` and ``eps``: inject one with ``optax.inject_hyperparams``).
    b1: decay rate of the first moment, in [0, 1), or a schedule.
    b2: decay rate of the second moment, in [0, 1), or a schedule.
    gamma: convergence speed of the bounds, positive.
    eps: added to :math:`\sqrt{\hat v_t}`, non-negative.
    amsbound: use the running maximum of the second moment (AMSBound).
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.
    rounding: ``"nearest"`` or ``"stochastic"``: bfloat16 and float16
      writes of the moments are rounded stochastically (unbiased), and the
      step comes out in float32 (at least) for the params' write to round; see
      :func:`optfree.stochastic_rounding`.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation`` whose state is
    :class:`ScaleByAdaBoundState`.

  References:
    Luo, Xiong, Liu and Sun, `Adaptive Gradient Methods with Dynamic Bound of
    Learning Rate <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optfree
    >>> tx = optax.chain(optfree.scale_by_adabound(0.1), optax.scale(-1.0))
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(2 * params, state)
    >>> params = optax.apply_updates(params, updates)
    >>> print([round(x, 3) for x in params.tolist()])
    [0.9, -1.9]
  """
  return _public.public_transformation(
      "scale_by_adabound",
      _scale_by_adabound(
          "scale_by_adabound", learning_rate, final_lr, b1=b1, b2=b2,
          gamma=gamma, eps=eps, amsbound=amsbound, mu_dtype=mu_dtype,
          rounding=rounding, seed=seed),
      needs_params=False)


def _add_decayed_weights_widened(
    weight_decay: optax.ScalarOrSchedule, mask: _tree.MaskOrFn
) -> optax.GradientTransformation:
  """``optax.add_decayed_weights`` on float32 copies of narrower leaves.

  The L2 term reaches the moments unrounded, as every other term of the
  step: the sum ``g + weight_decay * p`` of bfloat16 leaves is not rounded
  to bfloat16 (nor stored by XLA:CPU in a param-sized temporary that both
  moments' loops read). The state is optax's.
  """
  inner = optax.add_decayed_weights(weight_decay, mask)

  def update_fn(updates, state, params=None):
    return inner.update(_tree.widen(updates), state, _tree.widen(params))

  return optax.GradientTransformation(inner.init, update_fn)


def adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: _tree.MaskOrFn = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""AdaBound: Adam whose per-element step size is clipped into bounds that
  converge to SGD's learning rate.

  Weight decay :math:`\lambda` is an L2 penalty added to the gradient before
  the moments, as in the reference ``AdaBound``:

  .. math::

    g_t \leftarrow g_t + \lambda \theta_{t-1}, \qquad
    \theta_t = \theta_{t-1} - u_t,

  with :math:`u_t` the bounded step of :func:`scale_by_adabound` (see there
  for the moments, the bounds and how they follow a learning-rate schedule).

  Args:
    learning_rate: Adam's learning rate, a float or an optax schedule
      (passed directly or injected); the bounds scale with
      ``learning_rate(t) / learning_rate(0)``.
    final_lr: the SGD learning rate both bounds converge to, a number (a
      schedule raises ``ValueError``, as for ``gamma`` and ``eps``: inject
      one with ``optax.inject_hyperparams``).
    b1: decay rate of the first moment, in [0, 1), or a schedule.
    b2: decay rate of the second moment, in [0, 1), or a schedule.
    gamma: convergence speed of the bounds, positive.
    eps: added to the root of the second moment, non-negative.
    weight_decay: L2 penalty coefficient, non-negative (or a schedule).
    amsbound: use the running maximum of the second moment (AMSBound).
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.
    mask: a pytree of bools (or a callable returning one) choosing the leaves
      that get weight decay, as in ``optax.adamw``.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of the params and the moments are rounded
      stochastically (unbiased), so that steps below half an ulp still move
      them; updates of bfloat16 and float16 params then come out in float32,
      on which ``optax.apply_updates`` lands exactly (see
      :func:`optfree.stochastic_rounding`).
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation``.

  References:
    Luo, Xiong, Liu and Sun, `Adaptive Gradient Methods with Dynamic Bound of
    Learning Rate <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optfree
    >>> loss = lambda p: jnp.sum((p - 3.0) ** 2)
    >>> tx = optfree.adabound(learning_rate=0.1, final_lr=0.1)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(100):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print([round(x, 2) for x in params.tolist()])
    [3.0, 3.0]
  """
  name = "amsbound" if amsbound else "adabound"
  _checks.check_non_negative("weight_decay", weight_decay)
  inner = optax.chain(
      _add_decayed_weights_widened(weight_decay, mask),
      _scale_by_adabound(
          name, learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
          amsbound=amsbound, mu_dtype=mu_dtype, rounding=rounding, seed=seed),
      *_rounding.params_write(rounding, seed, optax.scale(-1.0)),
  )

  def update_fn(updates, state, params=None):
    # The L2 term would broadcast a mismatched gradient against the params
    # before scale_by_adabound could see it: check the raw inputs first.
    _checks.check_trees_match(
        name, state[1].mu, gradient=updates, params=params)
    steps, state = inner.update(updates, state, params)
    if rounding == "stochastic":
      return steps, state
    # Rounded once, from the float32 step to the gradients' dtype.
    return jax.tree.map(lambda u, g: u.astype(g.dtype), steps, updates), state

  return _public.public_transformation(
      name, optax.GradientTransformation(inner.init, update_fn), mask=mask)


def amsbound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: _tree.MaskOrFn = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""AMSBound: :func:`adabound` with the running maximum of the second moment.

  .. math::

    \hat v_t = \max(\hat v_{t-1}, v_t), \qquad
    \theta_t = \theta_{t-1} - \operatorname{clip}\!\left(
      \frac{\alpha_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)}
           {\sqrt{\hat v_t} + \epsilon},\ \eta_l(t),\ \eta_u(t)\right) m_t

  Everything else (bounds, L2 weight decay, schedules) is as in
  :func:`adabound`, which this calls with ``amsbound=True``.

  Args:
    learning_rate: Adam's learning rate, a float or an optax schedule.
    final_lr: the SGD learning rate both bounds converge to, a number (a
      schedule raises ``ValueError``, as for ``gamma`` and ``eps``: inject
      one with ``optax.inject_hyperparams``).
    b1: decay rate of the first moment, in [0, 1), or a schedule.
    b2: decay rate of the second moment, in [0, 1), or a schedule.
    gamma: convergence speed of the bounds, positive.
    eps: added to the root of the second moment, non-negative.
    weight_decay: L2 penalty coefficient, non-negative (or a schedule).
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.
    mask: a pytree of bools (or a callable returning one) choosing the leaves
      that get weight decay.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of the params and the moments are rounded
      stochastically (unbiased), so that steps below half an ulp still move
      them; updates of bfloat16 and float16 params then come out in float32,
      on which ``optax.apply_updates`` lands exactly (see
      :func:`optfree.stochastic_rounding`).
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation``.

  References:
    Luo, Xiong, Liu and Sun, `Adaptive Gradient Methods with Dynamic Bound of
    Learning Rate <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019.

  Example:
    >>> import jax.numpy as jnp
    >>> import optfree
    >>> state = optfree.amsbound().init({"w": jnp.zeros(3)})
    >>> print(state[1].nu_max["w"].shape)
    (3,)
  """
  return adabound(
      learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
      weight_decay=weight_decay, amsbound=True, mu_dtype=mu_dtype, mask=mask,
      rounding=rounding, seed=seed,
  )


def adaboundw(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: _tree.MaskOrFn = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""AdaBoundW: AdaBound with decoupled weight decay.

  The moments see the raw gradient; the decay is subtracted after the bounded
  step :math:`u_t` of :func:`scale_by_adabound`:

  .. math::

    \theta_t = \theta_{t-1} - u_t - \lambda \theta_{t-1}.

  As in the reference ``AdaBoundW`` class, :math:`\lambda \theta_{t-1}` is
  **not** multiplied by the learning rate (unlike ``optax.adamw`` and
  ``torch.optim.AdamW``), so ``weight_decay`` is the fraction of the weights
  removed per step and does not follow a learning-rate schedule: typical
  values are therefore far smaller than AdamW's (e.g. 1e-4 to 1e-6 for
  ``learning_rate=1e-3``).

  Args:
    learning_rate: Adam's learning rate, a float or an optax schedule.
    final_lr: the SGD learning rate both bounds converge to, a number (a
      schedule raises ``ValueError``, as for ``gamma`` and ``eps``: inject
      one with ``optax.inject_hyperparams``).
    b1: decay rate of the first moment, in [0, 1), or a schedule.
    b2: decay rate of the second moment, in [0, 1), or a schedule.
    gamma: convergence speed of the bounds, positive.
    eps: added to the root of the second moment, non-negative.
    weight_decay: fraction :math:`\lambda` of the weights removed per step,
      non-negative (or a schedule).
    amsbound: use the running maximum of the second moment (AMSBound).
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.
    mask: a pytree of bools (or a callable returning one) choosing the leaves
      that get weight decay.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of the params and the moments are rounded
      stochastically (unbiased), so that steps below half an ulp still move
      them; updates of bfloat16 and float16 params then come out in float32,
      on which ``optax.apply_updates`` lands exactly (see
      :func:`optfree.stochastic_rounding`).
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation``.

  References:
    Luo, Xiong, Liu and Sun, `Adaptive Gradient Methods with Dynamic Bound of
    Learning Rate <https://openreview.net/forum?id=Bkg3g2R9FX>`_, ICLR 2019;
    the ``AdaBoundW`` class of https://github.com/Luolc/AdaBound.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optfree
    >>> tx = optfree.adaboundw(learning_rate=0.1, weight_decay=0.5)
    >>> params = jnp.array([2.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.zeros(1), state, params)
    >>> print(optax.apply_updates(params, updates).tolist())  # only the decay
    [1.0]
  """
  _checks.check_non_negative("weight_decay", weight_decay)
  tx = optax.chain(
      _scale_by_adabound(
          "adaboundw", learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma,
          eps=eps, amsbound=amsbound, mu_dtype=mu_dtype, rounding=rounding,
          seed=seed),
      *_rounding.params_write(
          rounding, seed,
          optax.add_decayed_weights(weight_decay, mask), optax.scale(-1.0)),
  )
  return _public.public_transformation("adaboundw", tx, mask=mask)
