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

MaskOrFn = Optional[Union[Any, Callable[[optax.Params], Any]]]


class ScaleByAdaBoundState(NamedTuple):
  """State of :func:`scale_by_adabound`.

  Attributes:
    count: number of updates already applied (int32, saturating).
    mu: first moment, in ``mu_dtype`` (default: the params' dtype).
    nu: second moment, in the params' dtype.
    nu_max: running maximum of ``nu`` for AMSBound, ``None`` for AdaBound.
  """

  count: chex.Array
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
  if callable(learning_rate):
    initial = learning_rate(0)
    if not isinstance(initial, jax.core.Tracer) and not float(initial) > 0:
      raise ValueError(
          "learning_rate schedule must be positive at count 0, because the"
          " bounds follow final_lr * learning_rate(t) / learning_rate(0); got"
          f" learning_rate(0)={initial!r}"
      )


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
) -> optax.GradientTransformation:
  r"""Scales updates by AdaBound's bounded, bias-corrected Adam step.

  With :math:`t` the 1-based step, :math:`\alpha_t` the learning rate of this
  update and :math:`\alpha_0` the learning rate of the first update:

  .. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \\
    \hat v_t &= v_t \text{ (AdaBound) or }
      \max(\hat v_{t-1}, v_t) \text{ (AMSBound)}, \\
    \eta^\ast_t &= \alpha^\ast \alpha_t / \alpha_0, \qquad
    \eta_l(t) = \eta^\ast_t \left(1 - \tfrac{1}{\gamma t + 1}\right), \qquad
    \eta_u(t) = \eta^\ast_t \left(1 + \tfrac{1}{\gamma t}\right), \\
    u_t &= \operatorname{clip}\!\left(
      \frac{\alpha_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)}
           {\sqrt{\hat v_t} + \epsilon},\ \eta_l(t),\ \eta_u(t)\right) m_t,

  where :math:`\alpha^\ast` is ``final_lr``. The output :math:`u_t` is the
  positive step, learning rate included: subtract it from the params (chain
  ``optax.scale(-1.0)``, as :func:`adabound` does).

  The bounds follow a learning-rate schedule through
  :math:`\alpha_t / \alpha_0`, as the reference does under a torch scheduler.
  With a constant ``learning_rate`` the ratio is 1, also when the value is
  injected by ``optax.inject_hyperparams``: to make the bounds follow an
  injected learning-rate schedule ``s``, inject ``final_lr`` as
  ``lambda count: final_lr * s(count) / s(0)`` too.

  Args:
    learning_rate: Adam's learning rate :math:`\alpha_t`, a float or an optax
      schedule (then ``learning_rate(0)`` must be positive).
    final_lr: the SGD learning rate :math:`\alpha^\ast` that both bounds
      converge to.
    b1: decay rate of the first moment, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
    gamma: convergence speed of the bounds, positive.
    eps: added to :math:`\sqrt{\hat v_t}`, non-negative.
    amsbound: use the running maximum of the second moment (AMSBound).
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.

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
  if mu_dtype is not None:
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype)

  def init_fn(params):
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype), params)
    nu = jax.tree.map(jnp.zeros_like, params)
    nu_max = jax.tree.map(jnp.zeros_like, params) if amsbound else None
    return ScaleByAdaBoundState(
        count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, nu_max=nu_max
    )

  def update_fn(updates, state, params=None):
    del params
    count_inc = optax.safe_increment(state.count)
    # Scalars in the highest enabled float precision, as the reference's Python
    # floats; each leaf is cast back to its own dtype below.
    float_dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    step = count_inc.astype(float_dtype)
    if callable(learning_rate):
      lr = jnp.asarray(learning_rate(state.count), float_dtype)
      final = final_lr * lr / jnp.asarray(learning_rate(0), float_dtype)
    else:
      lr = jnp.asarray(learning_rate, float_dtype)
      final = jnp.asarray(final_lr, float_dtype)
    step_size = lr * jnp.sqrt(1 - b2**step) / (1 - b1**step)
    lower = final * (1 - 1 / (gamma * step + 1))
    upper = final * (1 + 1 / (gamma * step))

    def leaf_update(g, m, v, v_max):
      m_new = b1 * m + (1 - b1) * g
      v_new = b2 * v + (1 - b2) * g * g
      v_hat = v_new if v_max is None else jnp.maximum(v_max, v_new)
      step_leaf = jnp.clip(step_size / (jnp.sqrt(v_hat) + eps), lower, upper)
      return (
          (step_leaf * m_new).astype(g.dtype),
          m_new.astype(m.dtype),
          v_new.astype(v.dtype),
          None if v_max is None else v_hat.astype(v_max.dtype),
      )

    if amsbound:
      out = jax.tree.map(
          leaf_update, updates, state.mu, state.nu, state.nu_max
      )
    else:
      out = jax.tree.map(
          lambda g, m, v: leaf_update(g, m, v, None),
          updates, state.mu, state.nu,
      )
    pick = lambda i: jax.tree.map(  # noqa: E731
        lambda _, leaf: leaf[i], updates, out
    )
    new_state = ScaleByAdaBoundState(
        count=count_inc, mu=pick(1), nu=pick(2),
        nu_max=pick(3) if amsbound else None,
    )
    return pick(0), new_state

  return optax.GradientTransformation(init_fn, update_fn)


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
    learning_rate: Adam's learning rate, a float or an optax schedule; the
      bounds scale with ``learning_rate(t) / learning_rate(0)``.
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
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask),
      scale_by_adabound(
          learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
          amsbound=amsbound, mu_dtype=mu_dtype,
      ),
      optax.scale(-1.0),
  )


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
  return optax.chain(
      scale_by_adabound(
          learning_rate, final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
          amsbound=amsbound, mu_dtype=mu_dtype,
      ),
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale(-1.0),
  )
