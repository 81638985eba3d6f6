"""Lion: sign of an interpolated momentum, one buffer per parameter.

The state is ``optax.scale_by_lion``'s (so checkpoints of ``optax.lion``
and :func:`lion` are interchangeable). What this module adds: validation at
construction, the reference's default ``weight_decay=0.0``, keyword-only
hyperparameters, ``b1`` and ``b2`` schedules, stochastic rounding, and a
state and output whose dtypes never drift (the momentum stays in its dtype
across updates even when gradients and params differ in dtype; updates come
out in the gradients' dtype).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from optfree import _checks
from optfree import _public
from optfree import _tree
from optfree import rounding as _rounding


def _interpolation(
    grad: jax.Array,
    momentum: jax.Array,
    new_momentum: jax.Array,
    *,
    b1: Any,
    b2: Any,
) -> jax.Array:
  r"""Lion's :math:`c = \beta_1 m + (1 - \beta_1) g`, whose sign is the update.

  For static :math:`\beta_1 < 1` and :math:`\beta_2 > 0`, it is computed
  from the new momentum :math:`m' = \beta_2 m + (1 - \beta_2) g` as
  it was written (rounded to its dtype) instead:
  :math:`c = g + (\beta_1 / \beta_2)(m' - g)`. Then the old :math:`m` has a
  single reader, its own in-place update, and a donated step needs no copy
  of it. The identity is exact up to rounding, so the sign can differ from
  the plain form's only where :math:`c` is within rounding of 0: with
  bfloat16 momentum, :math:`m'` is rounded to 8 bits before :math:`c` is
  formed, which flips about 6e-5 of the signs of random data against exact
  arithmetic (the plain form computed in float32: 3e-5; lion-pytorch's
  bfloat16 ops: 3e-4). With :math:`\beta_1 = 1` (:math:`c = m`, exactly 0
  before the first step) or :math:`\beta_2 = 0` (a division by zero), and for
  traced or scheduled values, the plain form is used everywhere.

  Args:
    grad: :math:`g`, in the compute dtype.
    momentum: the old momentum :math:`m`, in the compute dtype.
    new_momentum: :math:`m'` as written, in the compute dtype.
    b1: :math:`\beta_1`, a number or a traced value.
    b2: :math:`\beta_2`, a number or a traced value.

  On every platform: without it XLA:CPU copies the old momentum, which both
  the new momentum and the update read, into a param-sized temporary (Lion
  went from 1.03x to 3.0x ``optax.lion``, ``python benchmarks/step_time.py
  --sizes 8M --leaves 64 --dtypes float32``, 7e8fa26; remeasured 1.46x in
  float32 and 1.19x in bfloat16), and XLA:TPU compiles the bfloat16 step
  into 10 kernels instead of 5, reading 25 param-sized buffers instead of 15
  (1.12x the floor's HBM traffic; ``benchmarks/compiled_step.py``).

  Returns:
    :math:`c`, in the compute dtype.
  """
  def plain(grad, momentum, new_momentum):
    del new_momentum
    return b1 * momentum + (1 - b1) * grad

  def from_new_momentum(grad, momentum, new_momentum):
    del momentum
    return grad + (b1 / b2) * (new_momentum - grad)

  static = isinstance(b1, (int, float)) and isinstance(b2, (int, float))
  if not (static and b1 < 1 and b2 > 0):
    return plain(grad, momentum, new_momentum)
  return from_new_momentum(grad, momentum, new_momentum)


def scale_by_lion(
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.99,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""Scales updates to the sign of Lion's interpolated momentum.

  .. math::

    u_t = \operatorname{sign}\big(\beta_1 m_{t-1} + (1 - \beta_1) g_t\big),
    \qquad m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t.

  Args:
    b1: interpolation weight of the momentum in the update, in [0, 1], or a
      schedule (a function of the update count, as
      :func:`optfree.onecycle_momentum_schedule`).
    b2: decay rate of the momentum, in [0, 1), or a schedule.
    mu_dtype: dtype of the momentum (e.g. ``jnp.bfloat16`` to halve its
      memory); ``None`` keeps the params' dtype. Either way the momentum keeps
      this dtype across updates.
    rounding: ``"nearest"`` or ``"stochastic"``: a bfloat16 or float16
      momentum is rounded stochastically (unbiased), see
      :func:`optfree.stochastic_rounding`.
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation`` whose state is optax's
    ``ScaleByLionState`` (the momentum ``mu`` and a step counter).

  References:
    Chen et al., `Symbolic Discovery of Optimization Algorithms
    <https://arxiv.org/abs/2302.06675>`_, NeurIPS 2023.

  Example:
    >>> import jax.numpy as jnp
    >>> import optfree
    >>> tx = optfree.scale_by_lion()
    >>> grads = jnp.array([0.3, -2.0, 0.0])
    >>> updates, state = tx.update(grads, tx.init(grads))
    >>> print(updates.tolist())
    [1.0, -1.0, 0.0]
  """
  _checks.check_interval("b1", b1, 0.0, 1.0)
  _checks.check_interval("b2", b2, 0.0, 1.0, high_closed=False)
  _checks.check_float_dtype("mu_dtype", mu_dtype)
  _rounding.check_rounding(rounding, seed)

  def init_fn(params):
    _rounding.check_dtypes("scale_by_lion", rounding, params, mu_dtype)
    return optax.scale_by_lion(mu_dtype=mu_dtype).init(params)

  def update_fn(updates, state, params=None):
    # An elementwise update would broadcast a mismatched leaf silently.
    _checks.check_trees_match(
        "scale_by_lion", state.mu, gradient=updates, params=params)
    b1_t = _tree.value_at(b1, state.count)
    b2_t = _tree.value_at(b2, state.count)
    write = _rounding.write(rounding, seed, state.count)

    def leaf_update(index, g, m):
      # One rounding per output: bfloat16 leaves are computed in float32.
      # The momentum keeps its dtype (scan, donation and checkpoints rely on
      # it), where optax would promote it to the gradients' dtype.
      dtype = jnp.promote_types(jnp.result_type(g, m), jnp.float32)
      g_, m_ = g.astype(dtype), m.astype(dtype)
      m_new = write(b2_t * m_ + (1 - b2_t) * g_, m.dtype, index, _rounding.MU)
      # b1 m + (1 - b1) g, from the new momentum (no copy of m).
      c = _interpolation(
          g_, m_, m_new.astype(dtype), b1=b1_t, b2=b2_t)
      return jnp.sign(c).astype(g.dtype), m_new

    signs, mu = _tree.map_leaves(leaf_update, updates, state.mu, num_outputs=2)
    return signs, optax.ScaleByLionState(
        count=optax.safe_increment(state.count), mu=mu)

  return _public.public_transformation(
      "scale_by_lion", optax.GradientTransformation(init_fn, update_fn),
      needs_params=False)


def lion(
    learning_rate: optax.ScalarOrSchedule = 1e-4,
    *,
    b1: optax.ScalarOrSchedule = 0.9,
    b2: optax.ScalarOrSchedule = 0.99,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    mask: _tree.MaskOrFn = None,
    rounding: _rounding.Rounding = "nearest",
    seed: int = 0,
) -> optax.GradientTransformation:
  r"""The Lion optimizer (EvoLved Sign Momentum).

  .. math::

    c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \\
    \theta_t &= \theta_{t-1} - \alpha_t \big(\operatorname{sign}(c_t)
      + \lambda \theta_{t-1}\big), \\
    m_t &= \beta_2 m_{t-1} + (1 - \beta_2) g_t.

  The same numbers as lion-pytorch's ``Lion`` and ``optax.lion``: decoupled
  weight decay multiplied by the learning rate. The default ``weight_decay``
  is 0.0, as in the paper's code and lion-pytorch; ``optax.lion`` defaults to
  1e-3.

  Advice from the paper: the sign makes every coordinate move by the full
  learning rate, so use a learning rate 3-10x smaller than AdamW's and a weight
  decay 3-10x larger (keeping ``learning_rate * weight_decay`` similar). Lion
  gains most at large batch sizes and is weaker than AdamW at small ones.

  Args:
    learning_rate: :math:`\alpha_t`, a float or an optax schedule.
    b1: interpolation weight of the momentum in the update, in [0, 1], or a
      schedule (e.g. :func:`optfree.onecycle_momentum_schedule`, cycling
      against the learning rate).
    b2: decay rate of the momentum, in [0, 1), or a schedule.
    weight_decay: :math:`\lambda`, non-negative (or a schedule).
    mu_dtype: dtype of the momentum; ``None`` keeps the params' dtype.
    mask: a pytree of bools (or a callable returning one) choosing the leaves
      that get weight decay, as in ``optax.adamw``.
    rounding: ``"nearest"`` (the reference's numbers) or ``"stochastic"``:
      bfloat16 and float16 writes of the params and the momentum are rounded
      stochastically (unbiased), so that steps below half an ulp still move
      them; the weight decay and learning rate are then applied in float32,
      and updates of bfloat16 and float16 params come out in float32, on
      which ``optax.apply_updates`` lands exactly (see
      :func:`optfree.stochastic_rounding`).
    seed: an integer in [0, 2**32) that the rounding bits are derived from,
      with the step count.

  Returns:
    An ``optax.GradientTransformation``.

  References:
    Chen et al., `Symbolic Discovery of Optimization Algorithms
    <https://arxiv.org/abs/2302.06675>`_, NeurIPS 2023.

  Example:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optfree
    >>> loss = lambda p: jnp.sum(p ** 2)
    >>> tx = optfree.lion(learning_rate=0.25)
    >>> params = jnp.array([1.0, -2.0])
    >>> state = tx.init(params)
    >>> for _ in range(4):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(params.tolist())
    [0.0, -1.0]
  """
  _checks.check_non_negative("learning_rate", learning_rate)
  _checks.check_non_negative("weight_decay", weight_decay)
  # The sign is exact in any dtype: with stochastic rounding, decay, learning
  # rate and the params' write run in float32 and round once.
  tx = optax.chain(
      scale_by_lion(
          b1=b1, b2=b2, mu_dtype=mu_dtype, rounding=rounding, seed=seed),
      *_rounding.params_write(
          rounding, seed,
          optax.add_decayed_weights(weight_decay, mask),
          optax.scale_by_learning_rate(learning_rate)),
  )
  return _public.public_transformation("lion", tx, mask=mask)
