"""AdaBound, AMSBound and AdaBoundW: Adam with dynamic bounds on the step size.

Numbers follow the reference PyTorch code of Luo et al. (PyPI ``adabound``
0.0.5 for AdaBound/AMSBound, the ``AdaBoundW`` class of the Luolc/AdaBound
repository for the decoupled variant); the golden trajectories in
``tests/reference/`` are produced from it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import chex
import jax
import jax.numpy as jnp
import optax

from optfree import _checks
from optfree import _public
from optfree import rounding as _rounding

MaskOrFn = Optional[Union[Any, Callable[[optax.Params], Any]]]


class ScaleByAdaBoundState(NamedTuple):
  """State of :func:`scale_by_adabound`.

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


def _check_adabound_args(learning_rate, final_lr, b1, b2, gamma, eps) -> None:
  _checks.check_non_negative("learning_rate", learning_rate)
  _checks.check_non_negative("final_lr", final_lr)
  _checks.check_interval("b1", b1, 0.0, 1.0, high_closed=False)
  _checks.check_interval("b2", b2, 0.0, 1.0, high_closed=False)
  # gamma = 0 would divide by zero in the upper bound.
  _checks.check_positive("gamma", gamma)
  _checks.check_non_negative("eps", eps)


def scale_by_adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: chex.Numeric = 0.9,
    b2: chex.Numeric = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    rounding: str = "nearest",
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

  Args:
    learning_rate: Adam's learning rate :math:`\alpha_t`, a float or an optax
      schedule.
    final_lr: the SGD learning rate :math:`\alpha^\ast` that both bounds
      converge to.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
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
  _check_adabound_args(learning_rate, final_lr, b1, b2, gamma, eps)
  _checks.check_float_dtype("mu_dtype", mu_dtype)
  _rounding.check_rounding(rounding, seed)
  if mu_dtype is not None:
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype)

  def current_lr(count, float_dtype):
    value = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, float_dtype)

  def init_fn(params):
    _rounding.check_dtypes("scale_by_adabound", rounding, params, mu_dtype)
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype), params)
    nu = jax.tree.map(jnp.zeros_like, params)
    nu_max = jax.tree.map(jnp.zeros_like, params) if amsbound else None
    count = jnp.zeros([], jnp.int32)
    # Under inject_hyperparams, init sees the learning rate injected at count
    # 0 and update the current one: storing it is what lets the bounds follow
    # an injected schedule, as torch's base_lrs do under a scheduler.
    base_lr = current_lr(count, jax.dtypes.canonicalize_dtype(jnp.float64))
    return ScaleByAdaBoundState(
        count=count, base_lr=base_lr, mu=mu, nu=nu, nu_max=nu_max
    )

  def update_fn(updates, state, params=None):
    _checks.check_trees_match(
        "scale_by_adabound", state.mu, gradient=updates, params=params)
    count_inc = optax.safe_increment(state.count)
    # Scalars in the highest enabled float precision, as the reference's Python
    # floats; each leaf narrows them to its own compute dtype.
    float_dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    t = count_inc.astype(float_dtype)
    lr = current_lr(state.count, float_dtype)
    base_lr = state.base_lr.astype(float_dtype)
    # Without a base (a learning rate starting at 0) there is nothing to scale
    # by: the bounds keep final_lr as given (the reference divides by zero).
    has_base = base_lr > 0
    final = final_lr * jnp.where(
        has_base, lr / jnp.where(has_base, base_lr, 1), 1)
    step_size = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
    lower = final * (1 - 1 / (gamma * t + 1))
    upper = final * (1 + 1 / (gamma * t))
    # An exact 1 that XLA cannot fold away. XLA:CPU compiles an elementwise
    # loop with no scalar operand (the bare maximum of AMSBound's nu_max)
    # with a slower emitter: 2-3x the time of the same loop with one, when
    # the buffers sit in cache (measured at 1M float32 params). Multiplying
    # by this 1 changes no value and gives the loop its scalar operand.
    exact_one = (jax.lax.optimization_barrier(jnp.ones((), float_dtype))
                 if amsbound else None)

    write = _rounding.write(rounding, seed, state.count)

    def leaf_update(g, m, v, v_max, leaf):
      # Computed in float32 at least (bfloat16 leaves; float32 leaves under
      # x64 stay float32), each output rounded once. The update reads the new
      # moments as stored, so each old moment has one reader, its own
      # in-place update, and a donated step needs no copy of it.
      dtype = jnp.promote_types(jnp.result_type(g, m, v), jnp.float32)
      up = lambda x: x.astype(dtype)  # noqa: E731
      m_new = write(b1 * up(m) + (1 - b1) * up(g), m.dtype, leaf, _rounding.MU)
      v_new = write(b2 * up(v) + (1 - b2) * up(g) * up(g), v.dtype, leaf,
                    _rounding.NU)
      # The running maximum of two stored values is one of them: exact.
      v_hat = v_new if v_max is None else jnp.maximum(
          up(v_max), up(v_new) * up(exact_one)).astype(v_max.dtype)
      leaf_step_size, leaf_lower, leaf_upper = (
          up(x) for x in (step_size, lower, upper))
      step_leaf = jnp.clip(
          leaf_step_size / (jnp.sqrt(up(v_hat)) + eps), leaf_lower, leaf_upper)
      return (
          (step_leaf * up(m_new)).astype(
              g.dtype if rounding == "nearest" else dtype),
          m_new,
          v_new,
          None if v_max is None else v_hat,
      )

    leaves = jax.tree.unflatten(
        jax.tree.structure(updates), range(len(jax.tree.leaves(updates))))
    if amsbound:
      out = jax.tree.map(
          leaf_update, updates, state.mu, state.nu, state.nu_max, leaves
      )
    else:
      out = jax.tree.map(
          lambda g, m, v, leaf: leaf_update(g, m, v, None, leaf),
          updates, state.mu, state.nu, leaves,
      )
    pick = lambda i: jax.tree.map(  # noqa: E731
        lambda _, leaf: leaf[i], updates, out
    )
    new_state = ScaleByAdaBoundState(
        count=count_inc, base_lr=state.base_lr, mu=pick(1), nu=pick(2),
        nu_max=pick(3) if amsbound else None,
    )
    return pick(0), new_state

  return _public.public_transformation(
      "scale_by_adabound", optax.GradientTransformation(init_fn, update_fn),
      needs_params=False)


def _add_decayed_weights_widened(
    weight_decay: optax.ScalarOrSchedule, mask: MaskOrFn
) -> optax.GradientTransformation:
  """``optax.add_decayed_weights`` computed in float32 or wider, unrounded.

  With bfloat16 leaves, a rounded ``g + weight_decay * p`` is read by the
  loops of both moments, and XLA:CPU stores it in a param-sized temporary;
  kept in float32 it is recomputed inside each loop (scale_by_adabound
  computes in float32 anyway). The state is optax's.
  """
  inner = optax.add_decayed_weights(weight_decay, mask)
  widen = lambda tree: jax.tree.map(  # noqa: E731
      lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32)), tree)

  def update_fn(updates, state, params=None):
    return inner.update(
        widen(updates), state, None if params is None else widen(params))

  return optax.GradientTransformation(inner.init, update_fn)


def _params_write(
    last: optax.GradientTransformation, rounding: str, seed: int
) -> optax.GradientTransformation:
  # With stochastic rounding the last stage runs in float32 and rounds the
  # params' write (its state adds a step count, no buffer).
  if rounding == "nearest":
    return last
  return _rounding.stochastic_rounding(last, seed=seed)


def adabound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: chex.Numeric = 0.9,
    b2: chex.Numeric = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: MaskOrFn = None,
    rounding: str = "nearest",
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
    final_lr: the SGD learning rate both bounds converge to.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
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
  _checks.check_non_negative("weight_decay", weight_decay)
  _rounding.check_rounding(rounding, seed)
  inner = optax.chain(
      _add_decayed_weights_widened(weight_decay, mask),
      scale_by_adabound(
          learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
          amsbound=amsbound, mu_dtype=mu_dtype, rounding=rounding, seed=seed,
      ),
      _params_write(optax.scale(-1.0), rounding, seed),
  )

  def update_fn(updates, state, params=None):
    # The L2 term would broadcast a mismatched gradient against the params
    # before scale_by_adabound could see it: check the raw inputs first.
    _checks.check_trees_match(
        "amsbound" if amsbound else "adabound", state[1].mu,
        gradient=updates, params=params)
    steps, state = inner.update(updates, state, params)
    if rounding == "stochastic":
      return steps, state
    # Rounded once, from the float32 step to the gradients' dtype.
    return jax.tree.map(lambda u, g: u.astype(g.dtype), steps, updates), state

  return _public.public_transformation(
      "amsbound" if amsbound else "adabound",
      optax.GradientTransformation(inner.init, update_fn), mask=mask)


def amsbound(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    final_lr: chex.Numeric = 0.1,
    *,
    b1: chex.Numeric = 0.9,
    b2: chex.Numeric = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: MaskOrFn = None,
    rounding: str = "nearest",
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
    final_lr: the SGD learning rate both bounds converge to.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
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
    b1: chex.Numeric = 0.9,
    b2: chex.Numeric = 0.999,
    gamma: chex.Numeric = 1e-3,
    eps: chex.Numeric = 1e-8,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    amsbound: bool = False,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: MaskOrFn = None,
    rounding: str = "nearest",
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
    final_lr: the SGD learning rate both bounds converge to.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
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
  _rounding.check_rounding(rounding, seed)
  scale = scale_by_adabound(
      learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
      amsbound=amsbound, mu_dtype=mu_dtype, rounding=rounding, seed=seed,
  )
  if rounding == "stochastic":
    tx = optax.chain(scale, _rounding.stochastic_rounding(optax.chain(
        optax.add_decayed_weights(weight_decay, mask), optax.scale(-1.0)),
        seed=seed))
  else:
    tx = optax.chain(
        scale,
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale(-1.0),
    )
  return _public.public_transformation("adaboundw", tx, mask=mask)
